// The pipeline's commands: the built-in dataset (data synth, data baselines), prep, train, eval,
// score, weights-diff and config.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/device.h"
#include "core/eval/evaluate.h"
#include "core/eval/index_store.h"
#include "core/eval/metrics.h"
#include "core/model/encoders.h"
#include "core/train/trainer.h"
#include "data/error.h"
#include "data/files.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/prep.h"
#include "data/synth.h"
#include "dist/launch.h"
#include "dist/watchdog.h"
#include "launch/commands.h"
#include "launch/measure.h"
#include "launch/provenance.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;

// The process group watched by the collective watchdog (dist/watchdog.h): a collective still
// waiting after dist.timeout_s ends the job (exit 75), the report in the log.
std::unique_ptr<dist::WatchedCommunicator> watch(dist::Communicator& comm, const Config& config,
                                                 Logger& log, std::string activity) {
  dist::WatchdogOptions options;
  options.timeout_seconds = config.dist.timeout_s;
  options.report = [&log](const std::string& line) { log.error("{}", line); };
  options.end_process = [](int exit_code) {
    // launch/mpirun.sh watches for this mark: mpirun itself may never end a job whose other
    // host is cut off (it waits for that host's daemon), so the script ends mpirun then.
    if (const char* mark = std::getenv("SHOPCLIP_FAILURE_MARK")) {
      const std::string path = fmt::format("{}.{}", mark, ::getpid());
      if (std::FILE* file = std::fopen(path.c_str(), "w")) std::fclose(file);
    }
    std::_Exit(exit_code);
  };
  auto watched = std::make_unique<dist::WatchedCommunicator>(comm, options);
  watched->set_activity(std::move(activity));
  return watched;
}

// Names the training step (or what follows an epoch) in a watchdog report.
// provenance.json of a training run, written once the trainer has accepted the run directory
// (a refused run leaves the existing record alone). A resumed run's earlier records are kept as
// provenance.1.json, provenance.2.json, ...
class RecordProvenance : public TrainCallback {
 public:
  RecordProvenance(const Config& config, std::vector<std::string> command, dist::Communicator& comm)
      : config_(config), command_(std::move(command)), comm_(comm) {}
  void on_model_ready(Replicas&) override {
    const fs::path path = fs::path(config_.run.dir) / "provenance.json";
    if (comm_.is_main() && fs::exists(path)) {
      int earlier = 1;
      while (fs::exists(fs::path(config_.run.dir) / fmt::format("provenance.{}.json", earlier)))
        ++earlier;
      fs::rename(path, fs::path(config_.run.dir) / fmt::format("provenance.{}.json", earlier));
      if (fs::exists(fs::path(config_.run.dir) / "provenance.diff")) {
        fs::rename(fs::path(config_.run.dir) / "provenance.diff",
                   fs::path(config_.run.dir) / fmt::format("provenance.{}.diff", earlier));
      }
    }
    recorder_ = std::make_unique<ProvenanceRecorder>(path.string(), command_, config_,
                                                     training_inputs(config_), comm_);
  }
  void finish(int exit_status, const std::string& error = "") {
    if (recorder_) recorder_->finish(exit_status, error);
  }

 private:
  const Config& config_;
  std::vector<std::string> command_;
  dist::Communicator& comm_;
  std::unique_ptr<ProvenanceRecorder> recorder_;
};

class WatchActivity : public TrainCallback {
 public:
  explicit WatchActivity(dist::WatchedCommunicator& watched) : watched_(watched) {}
  void on_step_begin(std::int64_t step) override {
    watched_.set_activity(fmt::format("train step {}", step));
  }
  void on_epoch_end(int epoch, double) override {
    watched_.set_activity(fmt::format("the end of epoch {} (evaluation, checkpoints)", epoch + 1));
  }

 private:
  dist::WatchedCommunicator& watched_;
};

int run_synth(const data::SynthOptions& options, Logger& log) {
  const auto summaries = data::make_synthetic_dataset(
      options, [&](const std::string& message) { log.info("synth: {}", message); });
  log.info("wrote the '{}' dataset (seed {}) to {}", options.scale, options.seed, options.out_dir);
  return 0;
}

int run_baselines(const std::string& dir, const std::string& split, const std::string& out_path,
                  Logger& log) {
  // The test split's ground truth is kept apart from its query file.
  std::string queries_path = fmt::format("{}/{}_texts.jsonl", dir, split);
  if (fs::exists(fmt::format("{}/answers/{}_texts.jsonl", dir, split))) {
    queries_path = fmt::format("{}/answers/{}_texts.jsonl", dir, split);
  }
  data::BadRowLog bad;
  const auto queries =
      data::read_queries(queries_path, data::QuerySchema::kChineseClip, bad).queries;
  const auto query_attributes =
      data::read_synth_attributes(fmt::format("{}/meta/{}_query_attributes.jsonl", dir, split));
  const auto image_attributes =
      data::read_synth_attributes(fmt::format("{}/meta/{}_image_attributes.jsonl", dir, split));
  std::vector<std::int64_t> query_ids, pool_ids;
  for (const auto& q : queries)
    query_ids.push_back(q.id);
  for (const auto& entry : image_attributes)
    pool_ids.push_back(entry.first);
  std::sort(pool_ids.begin(), pool_ids.end());
  nlohmann::ordered_json results;
  log.info(
      "single-attribute rankings on {} ({} queries, {} images): ground-truth attribute "
      "matches first, random order within",
      split, queries.size(), pool_ids.size());
  for (const std::string attribute : {"category", "color", "pattern", "accent", "print"}) {
    const auto rankings = data::single_attribute_ranking(attribute, query_ids, query_attributes,
                                                         pool_ids, image_attributes, 10, 7);
    std::vector<data::Prediction> predictions;
    for (std::size_t q = 0; q < query_ids.size(); ++q)
      predictions.push_back({query_ids[q], rankings[q]});
    const auto scores = muge_recall(queries, predictions);
    log.info("  by {:<9} R@1 {:6.2f}  R@5 {:6.2f}  R@10 {:6.2f}  MeanRecall {:6.2f}", attribute,
             scores.r1, scores.r5, scores.r10, scores.mean_recall);
    results[attribute] = {{"r1", scores.r1},
                          {"r5", scores.r5},
                          {"r10", scores.r10},
                          {"mean_recall", scores.mean_recall}};
  }
  if (!out_path.empty()) data::write_file_atomic(out_path, results.dump(2) + "\n");
  return 0;
}

std::vector<std::string> splits_to_prepare(const Config& config, const std::string& only) {
  if (!only.empty()) return {only};
  std::vector<std::string> splits = {config.data.train_split, config.data.valid_split};
  if (fs::exists(data::images_file(config.data.root, config.data.test_split))) {
    splits.push_back(config.data.test_split);
  }
  return splits;
}

// Under a launcher every rank decodes its share of the shards; rank 0 then writes the manifest.
int run_prep(const Config& config, const std::string& only_split, dist::Communicator& group,
             Logger& log) {
  if (config.data.root.empty()) throw ConfigError("data.root is not set");
  const auto watched = watch(group, config, log, "prep");
  dist::Communicator& comm = *watched;
  for (const auto& split : splits_to_prepare(config, only_split)) {
    data::PrepOptions options;
    options.images_tsv = data::images_file(config.data.root, split);
    options.out_dir = config.prep_split_dir(split);
    options.split = split;
    options.params = data::prep_params(config.prep_resolution(split));
    options.images_per_shard = config.prep.images_per_shard;
    options.chunk_images = config.prep.chunk_images;
    options.threads = dist::threads_for_this_rank(config.prep.threads, comm.local_world_size());
    options.rank = comm.rank();
    options.world_size = comm.world_size();
    if (!fs::exists(options.images_tsv)) {
      throw data::DataError(
          fmt::format("split '{}': {} does not exist", split, options.images_tsv));
    }
    watched->set_activity(fmt::format("prep {}", split));
    log.info("prep {}: {} -> {} ({}x{} bicubic)", split, options.images_tsv, options.out_dir,
             options.params.resolution, options.params.resolution);
    ProgressBar bar(log, fmt::format("prep {}", split), 0, "img");
    const auto result = data::prepare_shards(options, [&](std::int64_t done, std::int64_t all) {
      bar.set_total(all);
      bar.update(done);
    });
    bar.finish();
    comm.barrier();  // every rank's shards are finished before the manifest lists them
    if (!comm.is_main()) {
      comm.barrier();
      continue;
    }
    data::BadRowLog log_all;
    const auto manifest = data::finalize_prep(options, log_all);
    data::list_bad_rows(
        log_all, options.out_dir + "/bad_rows.jsonl",
        [&](const std::string& line) { log.warn("{}", line); },
        [&](const std::string& line) { log.file_only(line); });
    log.info(
        "prep {}: {} images in {} shards ({} written, {} already done), {} bad rows, {:.1f} s, "
        "{:.0f} images/s, peak memory {:.0f} MiB",
        split, manifest.num_images, manifest.shards.size(), result.shards_written,
        result.shards_skipped, manifest.num_bad_rows, result.seconds,
        result.seconds > 0 ? result.images / result.seconds : 0.0, peak_rss_mib());
    comm.barrier();  // the manifest exists before any rank goes on
    log_all.check_share(config.data.max_bad_share);
  }
  return 0;
}

// The config of an evaluation: the checkpoint's model, the user's data/eval settings.
void evaluate_and_write(const Config& config, const std::string& split,
                        const std::string& checkpoint, DualEncoderAdapter& encoder,
                        dist::Communicator& comm, Logger& log, const std::string& index_dir);

// `shopclip eval`: the run's config (or --config), its best checkpoint (or --checkpoint), one
// split.
int run_eval(const std::string& config_path, const std::string& run_dir_arg,
             const std::string& checkpoint_arg, const std::string& split_arg,
             const std::string& index_dir, const std::vector<std::string>& overrides,
             dist::Communicator& group, Logger& log, const std::vector<std::string>& command_line) {
  std::string run_dir = run_dir_arg;
  std::string config_file = config_path;
  if (config_file.empty() && !run_dir.empty()) config_file = run_dir + "/config.yaml";
  std::vector<std::string> all_overrides = overrides;
  if (!run_dir.empty()) all_overrides.insert(all_overrides.begin(), "run.dir=" + run_dir);
  Config config = Config::load(config_file, all_overrides);
  run_dir = config.run.dir;
  const std::string split = split_arg.empty() ? config.data.valid_split : split_arg;
  const auto watched = watch(group, config, log, "eval " + split);
  dist::Communicator& comm = *watched;
  const std::string checkpoint =
      checkpoint_arg.empty() ? run_dir + "/checkpoints/best.pt" : checkpoint_arg;
  LoadedModel loaded = load_model(checkpoint);
  config.model = loaded.config.model;  // the architecture is the checkpoint's
  loaded.model->to(training_device(config.run.device, comm.local_rank()));
  torch::set_num_threads(dist::threads_for_this_rank(config.run.threads, comm.local_world_size()));
  // Evaluation sees the model only through the Encoder seam (core/model/encoder.h).
  DualEncoderAdapter encoder(loaded.model, data::Tokenizer(loaded.vocab),
                             config.model.text.context_length);

  // <run>/eval/provenance_<split>.json: the run's own provenance.json belongs to its training.
  ProvenanceRecorder provenance(fmt::format("{}/eval/provenance_{}.json", run_dir, split),
                                command_line, config, evaluation_inputs(config, split, checkpoint),
                                comm);
  try {
    evaluate_and_write(config, split, checkpoint, encoder, comm, log, index_dir);
  } catch (const std::exception& e) {
    provenance.finish(1, e.what());
    throw;
  }
  provenance.finish(0);
  return 0;
}

void evaluate_and_write(const Config& config, const std::string& split,
                        const std::string& checkpoint, DualEncoderAdapter& encoder,
                        dist::Communicator& comm, Logger& log, const std::string& index_dir) {
  const std::string& run_dir = config.run.dir;
  data::BadRowLog bad_rows;
  add_prep_bad_rows(config, split, bad_rows);
  SplitData data_split = open_split(config, split, bad_rows);
  if (comm.is_main()) {
    report_bad_rows(bad_rows, config, fmt::format("{}/eval/{}.bad_rows.jsonl", run_dir, split),
                    log);
  } else {
    bad_rows.check_share(config.data.max_bad_share);
  }
  std::optional<SavedIndex> saved;
  if (!index_dir.empty()) {
    saved = read_saved_index(index_dir);
    check_index_model(saved->manifest, index_dir,
                      fmt::format("{:016x}", data::xxh64_file(checkpoint)), encoder.dim());
  }
  log.info("eval {}: {} queries over {} images, checkpoint {}, index {}{}", split,
           data_split.queries.queries.size(), data_split.images->size(), checkpoint,
           saved ? saved->manifest.factory : config.eval.index,
           saved ? fmt::format(" (saved in {})", index_dir) : std::string());
  const EvalResult result =
      evaluate_split(encoder, data_split, config, comm, saved ? &*saved : nullptr);
  if (!comm.is_main()) return;
  write_eval_outputs(run_dir, data_split, result);
  log.info(
      "eval {}: encoded in {:.2f} s, searched in {:.3f} s; predictions in {}/predictions/{}.jsonl",
      split, result.encode_seconds, result.search_seconds, run_dir, split);
  if (result.completed_queries > 0) {
    log.info(
        "eval {}: index {} found fewer than {} images for {} queries; completed them with the "
        "exact ranking of the rest",
        split, config.eval.index, config.eval.top_k, result.completed_queries);
  }
  if (result.scores) {
    const auto& s = *result.scores;
    log.info("eval {}: R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} MeanRecall {:.2f}", split, s.r1, s.r5,
             s.r10, s.mean_recall);
    std::cout << official_result_json(s) << std::endl;
  } else {
    log.info("eval {}: no ground truth in this split; wrote the submission only", split);
  }
}

int run_score(const std::string& reference, const std::string& predictions, bool tianchi) {
  const auto schema = tianchi ? data::QuerySchema::kTianchi : data::QuerySchema::kChineseClip;
  try {
    data::BadRowLog bad;
    const auto ref = data::read_queries(reference, schema, bad);
    if (!bad.bad_rows().empty()) {
      const auto& first = bad.bad_rows().front();
      throw data::DataError(
          fmt::format("reference {}:{}: {}", first.file, first.line, first.reason));
    }
    const auto pred = data::read_predictions(predictions, schema);
    std::cout << official_result_json(muge_recall(ref.queries, pred)) << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cout << official_error_json(e.what()) << std::endl;
    return 1;
  }
}

// `--inject-failure RANK:STEP`.
void parse_failure_injection(const std::string& value, FaultInjection::Plan& plan) {
  const auto colon = value.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument(value);
    plan.fail_rank = std::stoi(value.substr(0, colon));
    plan.fail_at_step = std::stoll(value.substr(colon + 1));
  } catch (const std::exception&) {
    throw CLI::ValidationError("--inject-failure", "expected RANK:STEP, got " + value);
  }
}

// `--inject-divergence RANK:STEP[:TENSOR]`.
void parse_divergence_injection(const std::string& value, FaultInjection::Plan& plan) {
  const auto first = value.find(':');
  const auto second = first == std::string::npos ? first : value.find(':', first + 1);
  try {
    if (first == std::string::npos) throw std::invalid_argument(value);
    plan.diverge_rank = std::stoi(value.substr(0, first));
    plan.diverge_at_step = std::stoll(value.substr(
        first + 1, second == std::string::npos ? std::string::npos : second - first - 1));
    if (plan.diverge_at_step < 0) throw std::invalid_argument(value);
    if (second != std::string::npos) plan.diverge_tensor = value.substr(second + 1);
  } catch (const std::exception&) {
    throw CLI::ValidationError("--inject-divergence",
                               "expected RANK:STEP or RANK:STEP:TENSOR, got " + value);
  }
}

void register_data_commands(CommandRegistry& commands) {
  CLI::App* data = commands.group("data", "built-in dataset and dataset tools");
  auto synth = std::make_shared<data::SynthOptions>();
  CLI::App* synth_cmd = commands.add(
      "synth", "make the built-in dataset from Fashion-MNIST", Processes::kOne,
      [synth](CommandContext& context) { return run_synth(*synth, context.log); }, data);
  synth_cmd->add_option("--scale", synth->scale, "tiny | demo | muge")->required();
  synth_cmd->add_option("--out", synth->out_dir, "output folder")->required();
  synth_cmd->add_option("--seed", synth->seed,
                        "random seed (the output depends only on it and the scale)");
  synth_cmd->add_option("--threads", synth->threads, "worker threads; 0 = all cores");
  synth_cmd->add_option("--image-size", synth->image_size,
                        "JPEG side in pixels; 0 = the scale's default");
  synth_cmd->add_option("--fashion-mnist", synth->fashion_mnist_dir,
                        "folder of the Fashion-MNIST .gz files");

  struct BaselineOptions {
    std::string dir, split = "valid", out;
  };
  auto baseline = std::make_shared<BaselineOptions>();
  CLI::App* baseline_cmd = commands.add(
      "baselines", "score rankings that use a single ground-truth attribute (built-in dataset)",
      Processes::kOne,
      [baseline](CommandContext& context) {
        return run_baselines(baseline->dir, baseline->split, baseline->out, context.log);
      },
      data);
  baseline_cmd->add_option("--data", baseline->dir, "dataset folder made by `data synth`")
      ->required();
  baseline_cmd->add_option("--split", baseline->split, "split to score");
  baseline_cmd->add_option("--out", baseline->out, "write the scores as JSON here");
}

void register_train_command(CommandRegistry& commands) {
  struct Options {
    ConfigOptions config;
    TrainOptions train;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = commands.add(
      "train", "train a dual encoder", Processes::kMany, [options](CommandContext& context) {
        const Config config = Config::load(options->config.path, options->config.overrides);
        const auto watched = watch(context.comm, config, context.log, "training set-up");
        Trainer trainer(config, *watched, options->train, context.log);
        trainer.add_callback(std::make_shared<WatchActivity>(*watched));
        auto provenance =
            std::make_shared<RecordProvenance>(config, context.command_line, *watched);
        trainer.add_callback(provenance);
        try {
          trainer.run();
        } catch (const std::exception& e) {
          provenance->finish(1, e.what());
          throw;
        }
        provenance->finish(0);
        return 0;
      });
  add_config_options(command, options->config);
  TrainOptions& train_options = options->train;
  command->add_flag("--resume", train_options.resume,
                    "continue from <run.dir>/checkpoints/last.pt");
  command->add_flag("--resume-if-present", train_options.resume_if_present,
                    "continue from last.pt when the run directory has one, else start the run "
                    "(what a requeued Slurm job passes)");
  command->add_option("--stop-after-steps", train_options.stop_after_steps,
                      "pause after N steps, saving a checkpoint that --resume continues exactly");
  command
      ->add_option_function<std::string>(
          "--inject-failure",
          [options](const std::string& value) {
            parse_failure_injection(value, options->train.faults);
          },
          "testing: rank RANK throws an error before step STEP (the failure-handling tests)")
      ->type_name("RANK:STEP");
  command
      ->add_option_function<std::string>(
          "--inject-divergence",
          [options](const std::string& value) {
            parse_divergence_injection(value, options->train.faults);
          },
          "testing: rank RANK adds 0.25 to TENSOR (default: every parameter and buffer) after step "
          "STEP, or with STEP 0 before the start-up broadcast (the replica tests)")
      ->type_name("RANK:STEP[:TENSOR]");
}

// score, weights-diff, config: one-process tools around the pipeline's files.
void register_tool_commands(CommandRegistry& commands) {
  struct ScoreCommandOptions {
    std::string reference, predictions;
    bool tianchi = false;
  };
  auto score = std::make_shared<ScoreCommandOptions>();
  CLI::App* score_cmd =
      commands.add("score", "score a prediction file as MUGE's official scorer", Processes::kOne,
                   [score](CommandContext&) {
                     return run_score(score->reference, score->predictions, score->tianchi);
                   });
  score_cmd->add_option("--ref", score->reference, "reference queries with ground truth (jsonl)")
      ->required();
  score_cmd->add_option("--pred", score->predictions, "predictions (jsonl, 10 ids per query)")
      ->required();
  score_cmd->add_flag("--tianchi", score->tianchi, "files use query_id/item_ids");

  struct DiffCommandOptions {
    std::string a, b;
    double tolerance = 0;
    bool relative = false;
  };
  auto diff = std::make_shared<DiffCommandOptions>();
  CLI::App* diff_cmd = commands.add(
      "weights-diff", "largest weight difference of two checkpoints", Processes::kOne,
      [diff](CommandContext&) {
        const WeightDifference difference = weight_difference(diff->a, diff->b);
        std::cout << fmt::format(
                         "max abs weight difference {:.3g} (at {}); max relative {:.3g} (at {})",
                         difference.absolute, difference.worst_absolute, difference.relative,
                         difference.worst_relative)
                  << std::endl;
        return (diff->relative ? difference.relative : difference.absolute) <= diff->tolerance ? 0
                                                                                               : 1;
      });
  diff_cmd->add_option("a", diff->a, "first checkpoint")->required();
  diff_cmd->add_option("b", diff->b, "second checkpoint")->required();
  diff_cmd->add_option("--tolerance", diff->tolerance, "exit 1 when the difference exceeds this");
  diff_cmd->add_flag("--relative", diff->relative,
                     "apply --tolerance to the relative difference (each tensor's largest "
                     "difference over its largest value in a)");

  struct ConfigCommandOptions {
    ConfigOptions config;
    bool describe = false;
  };
  auto config = std::make_shared<ConfigCommandOptions>();
  CLI::App* config_cmd = commands.add(
      "config", "print the resolved config, or describe all fields", Processes::kOne,
      [config](CommandContext&) {
        std::cout << (config->describe
                          ? describe_config()
                          : Config::load(config->config.path, config->config.overrides).to_yaml());
        return 0;
      });
  add_config_options(config_cmd, config->config);
  config_cmd->add_flag("--describe", config->describe,
                       "list every field with type, default and description");
}

}  // namespace

void register_pipeline_commands(CommandRegistry& commands) {
  register_data_commands(commands);

  struct PrepCommandOptions {
    ConfigOptions config;
    std::string split;
  };
  auto prep = std::make_shared<PrepCommandOptions>();
  CLI::App* prep_cmd =
      commands.add("prep", "decode, resize and store images in HDF5 shards", Processes::kMany,
                   [prep](CommandContext& context) {
                     const Config config = Config::load(prep->config.path, prep->config.overrides);
                     return run_prep(config, prep->split, context.comm, context.log);
                   });
  add_config_options(prep_cmd, prep->config);
  prep_cmd->add_option("--split", prep->split, "only this split (default: train, valid and test)");

  register_train_command(commands);

  struct EvalCommandOptions {
    ConfigOptions config;
    std::string run, checkpoint, split, index_dir;
  };
  auto eval = std::make_shared<EvalCommandOptions>();
  CLI::App* eval_cmd =
      commands.add("eval", "evaluate a checkpoint and write predictions", Processes::kMany,
                   [eval](CommandContext& context) {
                     return run_eval(eval->config.path, eval->run, eval->checkpoint, eval->split,
                                     eval->index_dir, eval->config.overrides, context.comm,
                                     context.log, context.command_line);
                   });
  add_config_options(eval_cmd, eval->config);
  eval_cmd->add_option("--run", eval->run, "run directory (its config.yaml and best checkpoint)");
  eval_cmd->add_option("--checkpoint", eval->checkpoint, "checkpoint to use instead of the best");
  eval_cmd->add_option("--split", eval->split, "split to evaluate (default data.valid_split)");
  eval_cmd->add_option("--index-dir", eval->index_dir,
                       "search this saved index of the split's pool (`shopclip index build`) "
                       "instead of encoding the pool");

  register_tool_commands(commands);
}

}  // namespace shopclip
