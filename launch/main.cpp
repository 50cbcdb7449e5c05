// shopclip: the command-line entry point. Subcommands stay thin: parse, build typed configs,
// call into core/ and data/, report. Any exception ends the process with a message and exit 1.

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/device.h"
#include "core/eval/evaluate.h"
#include "core/eval/metrics.h"
#include "core/log.h"
#include "core/train/trainer.h"
#include "data/error.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/prep.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "dist/launch.h"
#include "dist/mpi_communicator.h"
#include "launch/bench.h"
#include "launch/features.h"
#include "launch/inspect.h"

namespace {

namespace fs = std::filesystem;
using namespace shopclip;

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
int run_prep(const Config& config, const std::string& only_split, dist::Communicator& comm,
             Logger& log) {
  if (config.data.root.empty()) throw ConfigError("data.root is not set");
  for (const auto& split : splits_to_prepare(config, only_split)) {
    data::PrepOptions options;
    options.images_tsv = data::images_file(config.data.root, split);
    options.out_dir = config.prep_split_dir(split);
    options.split = split;
    options.params = {config.model.image.resolution, "bicubic", "RGB"};
    options.images_per_shard = config.prep.images_per_shard;
    options.chunk_images = config.prep.chunk_images;
    options.threads = dist::threads_for_this_rank(config.prep.threads, comm.local_world_size());
    options.rank = comm.rank();
    options.world_size = comm.world_size();
    if (!fs::exists(options.images_tsv)) {
      throw data::DataError(
          fmt::format("split '{}': {} does not exist", split, options.images_tsv));
    }
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
    const auto& bad = log_all.bad_rows();
    for (std::size_t i = 0; i < bad.size(); ++i) {
      const std::string line =
          fmt::format("bad row skipped: {}:{}: {}", bad[i].file, bad[i].line, bad[i].reason);
      if (i < 20) log.warn("{}", line);
    }
    if (bad.size() > 20)
      log.warn("... and {} more (see {}/bad_rows.jsonl)", bad.size() - 20, options.out_dir);
    struct rusage usage {};
    getrusage(RUSAGE_SELF, &usage);
    log.info(
        "prep {}: {} images in {} shards ({} written, {} already done), {} bad rows, {:.1f} s, "
        "{:.0f} images/s, peak memory {:.0f} MiB",
        split, manifest.num_images, manifest.shards.size(), result.shards_written,
        result.shards_skipped, manifest.num_bad_rows, result.seconds,
        result.seconds > 0 ? result.images / result.seconds : 0.0, usage.ru_maxrss / 1024.0);
    comm.barrier();  // the manifest exists before any rank goes on
    log_all.check_share(config.data.max_bad_share);
  }
  return 0;
}

// The config of an evaluation: the checkpoint's model, the user's data/eval settings.
int run_eval(const std::string& config_path, const std::string& run_dir_arg,
             const std::string& checkpoint_arg, const std::string& split_arg,
             const std::vector<std::string>& overrides, dist::Communicator& comm, Logger& log) {
  std::string run_dir = run_dir_arg;
  std::string config_file = config_path;
  if (config_file.empty() && !run_dir.empty()) config_file = run_dir + "/config.yaml";
  std::vector<std::string> all_overrides = overrides;
  if (!run_dir.empty()) all_overrides.insert(all_overrides.begin(), "run.dir=" + run_dir);
  Config config = Config::load(config_file, all_overrides);
  run_dir = config.run.dir;
  const std::string checkpoint =
      checkpoint_arg.empty() ? run_dir + "/checkpoints/best.pt" : checkpoint_arg;
  LoadedModel loaded = load_model(checkpoint);
  config.model = loaded.config.model;  // the architecture is the checkpoint's
  loaded.model->to(training_device(config.run.device, comm.local_rank()));
  torch::set_num_threads(dist::threads_for_this_rank(config.run.threads, comm.local_world_size()));
  const data::Tokenizer tokenizer(loaded.vocab);
  const std::string split = split_arg.empty() ? config.data.valid_split : split_arg;

  data::BadRowLog bad_rows;
  add_prep_bad_rows(config, split, bad_rows);
  SplitData data_split = open_split(config, split, bad_rows);
  if (comm.is_main()) {
    report_bad_rows(bad_rows, config, fmt::format("{}/eval/{}.bad_rows.jsonl", run_dir, split),
                    log);
  } else {
    bad_rows.check_share(config.data.max_bad_share);
  }
  log.info("eval {}: {} queries over {} images, checkpoint {}, index {}", split,
           data_split.queries.queries.size(), data_split.images->size(), checkpoint,
           config.eval.index);
  const EvalResult result = evaluate_split(loaded.model, tokenizer, data_split, config, comm);
  if (!comm.is_main()) return 0;
  write_eval_outputs(run_dir, data_split, result);
  log.info(
      "eval {}: encoded in {:.2f} s, searched in {:.3f} s; predictions in {}/predictions/{}.jsonl",
      split, result.encode_seconds, result.search_seconds, run_dir, split);
  if (result.scores) {
    const auto& s = *result.scores;
    log.info("eval {}: R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} MeanRecall {:.2f}", split, s.r1, s.r5,
             s.r10, s.mean_recall);
    std::cout << official_result_json(s) << std::endl;
  } else {
    log.info("eval {}: no ground truth in this split; wrote the submission only", split);
  }
  return 0;
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

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun or srun with several processes, MPI comes up first (it may rewrite argv); one
  // process never touches MPI.
  std::unique_ptr<dist::MpiRuntime> mpi;
  std::unique_ptr<dist::Communicator> comm;
  try {
    const dist::LaunchInfo launch = dist::detect_launch();
    if (launch.world_size > 1) mpi = std::make_unique<dist::MpiRuntime>(&argc, &argv);
    comm = dist::make_communicator(launch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shopclip: cannot set up the process group: %s\n", e.what());
    return 1;
  }
  Logger log(comm->rank(), comm->world_size());
  CLI::App app{"shopclip: train and evaluate e-commerce text-to-image retrieval models"};
  app.require_subcommand(1);

  // Options shared by config-driven subcommands.
  std::string config_path;
  std::vector<std::string> overrides;
  auto add_config_options = [&](CLI::App* command) {
    command->add_option("--config,-c", config_path, "YAML config file");
    command->add_option("--set", overrides, "override a config field: key.path=value (repeatable)")
        ->allow_extra_args(false);
  };

  // data synth / data baselines
  auto* data_cmd = app.add_subcommand("data", "built-in dataset and dataset tools");
  data_cmd->require_subcommand(1);
  data::SynthOptions synth;
  auto* synth_cmd =
      data_cmd->add_subcommand("synth", "make the built-in dataset from Fashion-MNIST");
  synth_cmd->add_option("--scale", synth.scale, "tiny | demo | muge")->required();
  synth_cmd->add_option("--out", synth.out_dir, "output folder")->required();
  synth_cmd->add_option("--seed", synth.seed,
                        "random seed (the output depends only on it and the scale)");
  synth_cmd->add_option("--threads", synth.threads, "worker threads; 0 = all cores");
  synth_cmd->add_option("--image-size", synth.image_size,
                        "JPEG side in pixels; 0 = the scale's default");
  synth_cmd->add_option("--fashion-mnist", synth.fashion_mnist_dir,
                        "folder of the Fashion-MNIST .gz files");
  std::string baseline_dir, baseline_split = "valid", baseline_out;
  auto* baseline_cmd = data_cmd->add_subcommand(
      "baselines", "score rankings that use a single ground-truth attribute (built-in dataset)");
  baseline_cmd->add_option("--data", baseline_dir, "dataset folder made by `data synth`")
      ->required();
  baseline_cmd->add_option("--split", baseline_split, "split to score");
  baseline_cmd->add_option("--out", baseline_out, "write the scores as JSON here");

  StatsCommandOptions stats_options;
  auto* stats_cmd = data_cmd->add_subcommand(
      "stats", "statistics of a dataset's splits: an HTML page with charts and a JSON file");
  add_stats_options(stats_cmd, stats_options);
  CheckCommandOptions check_options;
  auto* check_cmd = data_cmd->add_subcommand(
      "check", "find problems in a dataset (exit 0 clean, 1 warnings, 2 errors)");
  add_check_options(check_cmd, check_options);

  // prep
  auto* prep_cmd = app.add_subcommand("prep", "decode, resize and store images in HDF5 shards");
  add_config_options(prep_cmd);
  std::string prep_split;
  prep_cmd->add_option("--split", prep_split, "only this split (default: train, valid and test)");

  // train
  auto* train_cmd = app.add_subcommand("train", "train a dual encoder");
  add_config_options(train_cmd);
  TrainOptions train_options;
  train_cmd->add_flag("--resume", train_options.resume,
                      "continue from <run.dir>/checkpoints/last.pt");
  train_cmd->add_option("--stop-after-steps", train_options.stop_after_steps,
                        "pause after N steps, saving a checkpoint that --resume continues exactly");
  train_cmd
      ->add_option_function<std::string>(
          "--inject-failure",
          [&train_options](const std::string& value) {
            const auto colon = value.find(':');
            try {
              if (colon == std::string::npos) throw std::invalid_argument(value);
              train_options.fail_rank = std::stoi(value.substr(0, colon));
              train_options.fail_at_step = std::stoll(value.substr(colon + 1));
            } catch (const std::exception&) {
              throw CLI::ValidationError("--inject-failure", "expected RANK:STEP, got " + value);
            }
          },
          "testing: rank RANK throws an error before step STEP (the failure-handling tests)")
      ->type_name("RANK:STEP");
  train_cmd
      ->add_option_function<std::string>(
          "--inject-divergence",
          [&train_options](const std::string& value) {
            // RANK:STEP or RANK:STEP:TENSOR
            const auto first = value.find(':');
            const auto second = first == std::string::npos ? first : value.find(':', first + 1);
            try {
              if (first == std::string::npos) throw std::invalid_argument(value);
              train_options.diverge_rank = std::stoi(value.substr(0, first));
              train_options.diverge_at_step = std::stoll(value.substr(
                  first + 1, second == std::string::npos ? std::string::npos : second - first - 1));
              if (train_options.diverge_at_step < 0) throw std::invalid_argument(value);
              if (second != std::string::npos)
                train_options.diverge_tensor = value.substr(second + 1);
            } catch (const std::exception&) {
              throw CLI::ValidationError("--inject-divergence",
                                         "expected RANK:STEP or RANK:STEP:TENSOR, got " + value);
            }
          },
          "testing: rank RANK adds 0.25 to TENSOR (default: every parameter and buffer) after step "
          "STEP, or with STEP 0 before the start-up broadcast (the replica tests)")
      ->type_name("RANK:STEP[:TENSOR]");

  // eval
  auto* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint and write predictions");
  add_config_options(eval_cmd);
  std::string eval_run, eval_checkpoint, eval_split;
  eval_cmd->add_option("--run", eval_run, "run directory (its config.yaml and best checkpoint)");
  eval_cmd->add_option("--checkpoint", eval_checkpoint, "checkpoint to use instead of the best");
  eval_cmd->add_option("--split", eval_split, "split to evaluate (default data.valid_split)");

  // score
  auto* score_cmd =
      app.add_subcommand("score", "score a prediction file as MUGE's official scorer");
  std::string score_ref, score_pred;
  bool score_tianchi = false;
  score_cmd->add_option("--ref", score_ref, "reference queries with ground truth (jsonl)")
      ->required();
  score_cmd->add_option("--pred", score_pred, "predictions (jsonl, 10 ids per query)")->required();
  score_cmd->add_flag("--tianchi", score_tianchi, "files use query_id/item_ids");

  // weights-diff
  auto* diff_cmd =
      app.add_subcommand("weights-diff", "largest weight difference of two checkpoints");
  std::string diff_a, diff_b;
  double diff_tolerance = 0;
  bool diff_relative = false;
  diff_cmd->add_option("a", diff_a, "first checkpoint")->required();
  diff_cmd->add_option("b", diff_b, "second checkpoint")->required();
  diff_cmd->add_option("--tolerance", diff_tolerance, "exit 1 when the difference exceeds this");
  diff_cmd->add_flag("--relative", diff_relative,
                     "apply --tolerance to the relative difference (each tensor's largest "
                     "difference over its largest value in a)");

  // encode / search
  EncodeOptions encode_options;
  auto* encode_cmd = app.add_subcommand(
      "encode", "write image and text features (Chinese-CLIP's feature-file format)");
  add_encode_options(encode_cmd, encode_options);
  SearchOptions search_options;
  auto* search_cmd = app.add_subcommand(
      "search", "top-k predictions from feature files, scored when --ref is given");
  add_search_options(search_cmd, search_options);

  // report / compare
  ReportCommandOptions report_options;
  auto* report_cmd = app.add_subcommand(
      "report", "HTML page of a run on a split: metrics, curves, breakdowns, worst queries");
  add_report_options(report_cmd, report_options);
  CompareCommandOptions compare_options;
  auto* compare_cmd = app.add_subcommand(
      "compare", "paired comparison of two runs on a split (bootstrap CI, changed queries)");
  add_compare_options(compare_cmd, compare_options);

  // config
  auto* config_cmd =
      app.add_subcommand("config", "print the resolved config, or describe all fields");
  add_config_options(config_cmd);
  bool describe = false;
  config_cmd->add_flag("--describe", describe,
                       "list every field with type, default and description");

  // bench
  BenchOptions bench_options;
  auto* bench_cmd = app.add_subcommand("bench", "measure speed figures (JSON on stdout)");
  add_bench_options(bench_cmd, bench_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    const bool distributed =
        prep_cmd->parsed() || train_cmd->parsed() || eval_cmd->parsed() || bench_cmd->parsed();
    if (comm->world_size() > 1 && !distributed) {
      throw std::invalid_argument(
          "only prep, train, eval and bench run as several processes; start this command without "
          "mpirun or srun");
    }
    if (data_cmd->parsed()) {
      if (synth_cmd->parsed()) return run_synth(synth, log);
      if (stats_cmd->parsed()) return run_stats(stats_options, log);
      if (check_cmd->parsed()) return run_check(check_options, log);
      return run_baselines(baseline_dir, baseline_split, baseline_out, log);
    }
    if (bench_cmd->parsed()) return run_bench(bench_options, *comm, log);
    if (report_cmd->parsed()) return run_report(report_options, log);
    if (compare_cmd->parsed()) return run_compare(compare_options, log);
    if (encode_cmd->parsed()) return run_encode(encode_options, log);
    if (search_cmd->parsed()) return run_search(search_options, log);
    if (score_cmd->parsed()) return run_score(score_ref, score_pred, score_tianchi);
    if (diff_cmd->parsed()) {
      const WeightDifference difference = weight_difference(diff_a, diff_b);
      std::cout << fmt::format(
                       "max abs weight difference {:.3g} (at {}); max relative {:.3g} (at {})",
                       difference.absolute, difference.worst_absolute, difference.relative,
                       difference.worst_relative)
                << std::endl;
      return (diff_relative ? difference.relative : difference.absolute) <= diff_tolerance ? 0 : 1;
    }
    if (config_cmd->parsed()) {
      std::cout << (describe ? describe_config() : Config::load(config_path, overrides).to_yaml());
      return 0;
    }
    if (eval_cmd->parsed()) {
      return run_eval(config_path, eval_run, eval_checkpoint, eval_split, overrides, *comm, log);
    }
    const Config config = Config::load(config_path, overrides);
    if (prep_cmd->parsed()) return run_prep(config, prep_split, *comm, log);
    if (train_cmd->parsed()) {
      train(config, *comm, train_options, log);
      return 0;
    }
  } catch (const std::exception& e) {
    log.error("{}", e.what());
    // No rank may be left waiting in a collective for this one: end the whole job.
    if (comm->world_size() > 1) comm->abort(1);
    return 1;
  }
  return 0;
}
