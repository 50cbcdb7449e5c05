#include "core/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_set>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/device.h"
#include "core/eval/evaluate.h"
#include "core/train/loss.h"
#include "core/train/optim.h"
#include "core/train/step.h"
#include "data/error.h"
#include "data/loader.h"
#include "data/parallel.h"
#include "data/safetensors.h"
#include "data/tokenizer.h"
#include "dist/gradients.h"
#include "dist/launch.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

class MetricsWriter {
 public:
  // An empty path writes nothing (ranks other than 0).
  explicit MetricsWriter(const std::string& path) {
    if (path.empty()) return;
    out_.open(path, std::ios::app);
    if (!out_) throw std::runtime_error(fmt::format("cannot append to '{}'", path));
  }
  void write(const json& row) {
    if (!out_.is_open()) return;
    out_ << row.dump() << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// For a batch of pairs, ignore[i][j] marks text j as relevant to image i (so neither is the
// other's negative): the pairs share a query, share an image, or the ground truth says so.
torch::Tensor relevance_mask(const std::vector<data::TrainPair>& pairs,
                             const std::unordered_set<std::int64_t>& relevant,
                             std::int64_t images) {
  const auto n = static_cast<std::int64_t>(pairs.size());
  auto mask = torch::zeros({n, n}, torch::kBool);
  auto* m = mask.data_ptr<bool>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      m[i * n + j] = pairs[i].query == pairs[j].query || pairs[i].image_row == pairs[j].image_row ||
                     relevant.count(pairs[j].query * images + pairs[i].image_row) > 0;
    }
  }
  return mask;
}

data::Vocab make_vocab(const Config& config, const std::vector<std::string>& train_texts,
                       Logger& log) {
  if (!config.model.text.vocab.empty()) {
    auto vocab = data::Vocab::load(config.model.text.vocab);
    log.info("vocabulary: {} tokens from {}", vocab.size(), config.model.text.vocab);
    return vocab;
  }
  auto vocab = data::Vocab::build(train_texts, config.model.text.min_count);
  log.info("vocabulary: {} tokens built from {} training texts (min_count {})", vocab.size(),
           train_texts.size(), config.model.text.min_count);
  return vocab;
}

// The --inject-divergence test hook: makes this rank's copy differ from the others'.
void perturb_for_test(const std::vector<torch::Tensor>& tensors,
                      const std::vector<std::string>& names, const std::string& only, int rank,
                      Logger& log) {
  torch::NoGradGuard no_grad;
  bool found = false;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].is_floating_point() || (!only.empty() && names[i] != only)) continue;
    tensors[i].add_(0.25);
    found = true;
  }
  if (!found) {
    throw std::invalid_argument(
        fmt::format("--inject-divergence: no floating-point tensor named '{}'", only));
  }
  log.warn("injected divergence: rank {} added 0.25 to {} (--inject-divergence)", rank,
           only.empty() ? "every parameter and buffer" : "'" + only + "'");
}

void remove_if_exists(const std::string& path) {
  std::error_code ignored;
  fs::remove(path, ignored);
}

}  // namespace

bool record_evaluation(TrainState& state, double mean_recall, int epoch) {
  if (mean_recall > state.best_score) {
    state.best_score = mean_recall;
    state.best_epoch = epoch;
    state.evals_since_best = 0;
    return true;
  }
  ++state.evals_since_best;
  return false;
}

bool patience_exhausted(const TrainState& state, int patience) {
  return patience > 0 && state.evals_since_best >= patience;
}

TrainSummary train(const Config& config, dist::Communicator& comm, const TrainOptions& options,
                   Logger& log) {
  if (config.train.batch_size % comm.world_size() != 0) {
    throw std::invalid_argument(
        fmt::format("train.batch_size {} (the global batch) must be divisible by the {} processes",
                    config.train.batch_size, comm.world_size()));
  }
  // Rank 0 writes every file of the run; all ranks read the same inputs.
  const bool main_rank = comm.is_main();
  const auto process_start = Clock::now();
  const std::string run_dir = config.run.dir;
  const std::string checkpoint_dir = run_dir + "/checkpoints";
  const std::string last_path = checkpoint_dir + "/last.pt";
  const std::string best_path = checkpoint_dir + "/best.pt";
  if (main_rank) {
    fs::create_directories(checkpoint_dir);
    log.open_file(run_dir + "/log.txt");
  }
  if (options.resume && !fs::exists(last_path)) {
    throw std::invalid_argument(fmt::format("--resume: no checkpoint at {}", last_path));
  }
  if (!options.resume && fs::exists(last_path)) {
    throw std::invalid_argument(fmt::format(
        "run directory {} already holds a training run; pass --resume to continue it or choose "
        "another run.dir",
        run_dir));
  }
  if (main_rank) data::write_file_atomic(run_dir + "/config.yaml", config.to_yaml());
  const int threads = dist::threads_for_this_rank(config.run.threads, comm.local_world_size());
  torch::set_num_threads(threads);
  torch::manual_seed(static_cast<std::uint64_t>(config.run.seed));
  log.info("run directory {}; {} process(es) ({} backend), {} CPU threads each", run_dir,
           comm.world_size(), comm.backend(), threads);

  // ---- data -------------------------------------------------------------------------------
  data::BadRowLog bad_rows;
  const auto& train_split = config.data.train_split;
  add_prep_bad_rows(config, train_split, bad_rows);
  add_prep_bad_rows(config, config.data.valid_split, bad_rows);
  const data::PrepParams params{config.model.image.resolution, "bicubic", "RGB"};
  data::ImageStore train_images(config.prep_split_dir(train_split), params);
  data::QuerySchema schema;
  const std::string train_queries_path =
      data::find_queries_file(config.data.root, train_split, &schema);
  data::QueryReadOptions read_options;
  read_options.image_exists = [&](std::int64_t id) { return train_images.row_of(id).has_value(); };
  const data::QuerySet train_queries =
      data::read_queries(train_queries_path, schema, bad_rows, read_options);
  SplitData valid = open_split(config, config.data.valid_split, bad_rows);
  if (main_rank) {
    report_bad_rows(bad_rows, config, run_dir + "/bad_rows.jsonl", log);
  } else {
    bad_rows.check_share(config.data.max_bad_share);  // every rank stops on the same input
  }
  if (!valid.has_ground_truth) {
    throw data::DataError(
        fmt::format("split '{}' has no ground truth to select models with", valid.name));
  }

  // ---- vocabulary, tokens, pairs ----------------------------------------------------------
  std::vector<std::string> train_texts;
  for (const auto& query : train_queries.queries)
    train_texts.push_back(query.text);
  TrainState state;
  data::Vocab vocab;
  if (options.resume) {
    auto header = read_checkpoint_header(last_path);
    // The architecture must be the checkpoint's; training settings may change on resume.
    Config stored, requested;
    stored.model = header.config.model;
    requested.model = config.model;
    if (stored.to_yaml() != requested.to_yaml()) {
      throw std::invalid_argument(fmt::format(
          "--resume: the model section of the config differs from the one in {}", last_path));
    }
    // Steps count global batches: the data position and the schedule are only meaningful with
    // the same global batch. The number of processes sharing it may change.
    if (header.config.train.batch_size != config.train.batch_size) {
      throw std::invalid_argument(fmt::format(
          "--resume: train.batch_size {} differs from the {} the run in {} was trained with; "
          "keep the global batch (the number of processes may change)",
          config.train.batch_size, header.config.train.batch_size, last_path));
    }
    state = header.state;
    vocab = std::move(header.vocab);
  } else {
    vocab = make_vocab(config, train_texts, log);
  }
  if (main_rank) vocab.save(run_dir + "/vocab.txt");
  const data::Tokenizer tokenizer(vocab);
  const int context = config.model.text.context_length;
  auto tokens = tokenize_all(tokenizer, train_texts, context);

  std::vector<data::TrainPair> pairs;
  std::unordered_set<std::int64_t> relevant;
  const std::int64_t num_images = train_images.size();
  for (std::size_t q = 0; q < train_queries.queries.size(); ++q) {
    for (auto image_id : train_queries.queries[q].image_ids) {
      const std::int64_t row = *train_images.row_of(image_id);
      pairs.push_back({static_cast<std::int64_t>(q), row});
      relevant.insert(static_cast<std::int64_t>(q) * num_images + row);
    }
  }
  const double image_gib = static_cast<double>(train_images.size()) * train_images.resolution() *
                           train_images.resolution() * 3 / (1024.0 * 1024.0 * 1024.0);
  if (image_gib <= config.train.image_cache_gib) {
    train_images.load_all();
    log.info("train: {} images held in memory ({:.2f} GiB)", train_images.size(), image_gib);
  } else {
    log.info(
        "train: {} images ({:.2f} GiB) read from the shards at every step "
        "(train.image_cache_gib = {})",
        train_images.size(), image_gib, config.train.image_cache_gib);
  }
  const int local_batch = config.train.batch_size / comm.world_size();
  data::PairLoader loader(train_images, tokens, pairs, local_batch, comm.rank(), comm.world_size(),
                          static_cast<std::uint64_t>(config.run.seed), config.train.max_shift);
  const std::int64_t steps_per_epoch = loader.steps_per_epoch();
  if (steps_per_epoch == 0) {
    throw std::invalid_argument(fmt::format("train.batch_size {} exceeds the {} training pairs",
                                            config.train.batch_size, pairs.size()));
  }
  log.info("train: {} queries, {} images, {} pairs -> {} steps per epoch of {} pairs",
           train_queries.queries.size(), train_images.size(), pairs.size(), steps_per_epoch,
           config.train.batch_size);
  log.info("valid: {} queries over {} images", valid.queries.queries.size(), valid.images->size());

  // ---- model and optimiser ----------------------------------------------------------------
  // With CUDA, tensors of the model and the step move between ranks over NCCL (device_comm);
  // everything on the CPU side (schedule, stop decisions, evaluation embeddings) over `comm`.
  const torch::Device device = training_device(config.run.device, comm.local_rank());
  const auto nccl = dist::make_device_communicator(comm, device);
  dist::Communicator& device_comm = nccl ? *nccl : comm;
  DualEncoder model(config.model, vocab.size(), vocab.pad_id(), &device_comm);
  if (!options.resume && config.model.chinese_clip.enabled() &&
      !config.model.chinese_clip.weights.empty()) {
    const auto& weights = config.model.chinese_clip.weights;
    auto clip = model->chinese_clip();
    load_chinese_clip_state(clip, data::read_safetensors(weights).tensors, weights);
    log.info("model: Chinese-CLIP weights from {}", weights);
  }
  model->freeze(config.train.freeze);
  model->to(device);
  auto optimizer = make_adamw(model, config.train);
  if (options.resume) {
    load_model_weights(last_path, *model);
    load_optimizer_state(last_path, *optimizer);
    log.info("resumed from {}: epoch {} step {} (best valid MeanRecall {:.2f} at epoch {})",
             last_path, state.epochs_done, state.step, state.best_score, state.best_epoch);
  } else {
    state.schedule_steps = steps_per_epoch * config.train.epochs;
  }
  // Parameters and buffers by name, for the start-up broadcast and the replica checks.
  std::vector<torch::Tensor> replicated;
  std::vector<std::string> replicated_names;
  for (const auto& item : model->named_parameters()) {
    replicated.push_back(item.value());
    replicated_names.push_back(item.key());
  }
  for (const auto& item : model->named_buffers()) {
    replicated.push_back(item.value());
    replicated_names.push_back(item.key());
  }
  const bool diverge_here = options.diverge_rank == comm.rank();
  if (diverge_here && options.diverge_at_step == 0) {
    perturb_for_test(replicated, replicated_names, options.diverge_tensor, comm.rank(), log);
  }
  if (comm.world_size() > 1) dist::broadcast_tensors(device_comm, replicated, 0);
  StepRunner runner(model, *optimizer, device_comm, config.train);
  log.info("model: {} image tower, {:.2f}M parameters, {:.1f} MFLOP forward per sample",
           config.model.image.type, count_parameters(*model) / 1e6,
           model_forward_flops(config.model) / 1e6);

  // A fresh run starts its metrics anew (a crash before the first checkpoint leaves old lines).
  if (main_rank && !options.resume) remove_if_exists(run_dir + "/metrics.jsonl");
  MetricsWriter metrics(main_rank ? run_dir + "/metrics.jsonl" : "");
  // A resumed process says where it picked up, so a resume that silently restarted from step 0
  // (and would end with the same weights, training being deterministic) can be told apart.
  const std::int64_t first_step = state.step;
  if (options.resume) {
    metrics.write({{"type", "resume"},
                   {"step", state.step},
                   {"epochs_done", state.epochs_done},
                   {"processes", comm.world_size()},
                   {"elapsed_s", state.elapsed_seconds}});
  }
  const double budget_seconds = config.train.max_minutes * 60.0;
  const double elapsed_before = state.elapsed_seconds;
  auto elapsed = [&] { return elapsed_before + seconds_between(process_start, Clock::now()); };
  // Decisions that depend on a clock are taken by rank 0 and shared, so every rank stops at the
  // same step (a rank left behind would wait forever in a collective).
  auto agree = [&](bool decision) {
    if (comm.world_size() == 1) return decision;
    auto flag = torch::tensor({decision ? 1 : 0}, torch::kInt32);
    comm.broadcast(flag, 0);
    return flag.item<int>() != 0;
  };

  // ---- loop -------------------------------------------------------------------------------
  TrainSummary summary;
  std::int64_t steps_this_process = 0;
  double step_seconds_total = 0, data_wait_total = 0, last_eval_seconds = 0;
  std::int64_t timed_steps = 0;
  bool stop = false;
  // Fits the LR schedule's end into the time budget, from the measured step (and eval) time.
  auto fit_schedule = [&] {
    if (budget_seconds <= 0 || timed_steps < 5) return;
    const double per_step = step_seconds_total / timed_steps;
    const double left = budget_seconds - elapsed();
    const double eval_period = double(steps_per_epoch) * config.train.eval_every;
    // Evaluations still due if `steps` more steps run: the periodic ones, one where the schedule
    // ends inside an epoch, and the final one of the best checkpoint.
    auto evaluations_for = [&](double steps) {
      return std::floor((state.step + steps) / eval_period) - std::floor(state.step / eval_period) +
             2;
    };
    double steps = left / per_step;
    for (int refine = 0; refine < 3; ++refine) {
      steps = std::max(0.0, (left - evaluations_for(steps) * last_eval_seconds) / per_step);
    }
    const std::int64_t affordable = state.step + static_cast<std::int64_t>(steps);
    auto schedule_end = torch::tensor({std::min(state.schedule_steps, affordable)}, torch::kInt64);
    comm.broadcast(schedule_end, 0);  // rank 0's clock decides
    if (schedule_end.item<std::int64_t>() < state.schedule_steps) {
      state.schedule_steps = std::max(state.step + 1, schedule_end.item<std::int64_t>());
      log.info(
          "time budget: the schedule now ends at step {} ({:.2f} s per step, {:.1f} s per "
          "evaluation)",
          state.schedule_steps, per_step, last_eval_seconds);
    }
  };

  // A resumed run may start inside an epoch (a pause or a time-budget stop).
  const int first_epoch = state.epochs_done;
  const std::int64_t start_step_in_epoch = state.step - state.epochs_done * steps_per_epoch;
  for (int epoch = first_epoch; epoch < config.train.epochs && !stop; ++epoch) {
    model->train();
    data::Prefetcher prefetcher(loader);
    const std::int64_t first = epoch == first_epoch ? start_step_in_epoch : 0;
    ProgressBar bar(log, fmt::format("epoch {}/{}", epoch + 1, config.train.epochs),
                    steps_per_epoch - first, "step");
    if (first < steps_per_epoch) prefetcher.request(epoch, first);
    double running_loss = 0;
    int running_count = 0;
    for (std::int64_t s = first; s < steps_per_epoch; ++s) {
      const auto step_start = Clock::now();
      data::Batch batch = prefetcher.get();
      data_wait_total += seconds_between(step_start, Clock::now());
      if (s + 1 < steps_per_epoch) prefetcher.request(epoch, s + 1);

      if (options.fail_at_step == state.step + 1 && options.fail_rank == comm.rank()) {
        throw std::runtime_error(fmt::format("injected failure before step {} (--inject-failure)",
                                             options.fail_at_step));
      }
      const double lr = learning_rate_at(config.train, state.step, state.schedule_steps);
      // Relevance over the global batch: every rank knows every rank's pairs.
      const auto ignore = relevance_mask(loader.global_pairs_for(epoch, s), relevant, num_images);
      const StepResult result =
          runner.step({batch.images.to(device), batch.tokens.to(device),
                       ignore.defined() ? ignore.to(device) : ignore, state.step},
                      lr);
      const double loss_value = result.loss;
      ++state.step;
      ++steps_this_process;
      if (diverge_here && options.diverge_at_step == state.step) {
        perturb_for_test(replicated, replicated_names, options.diverge_tensor, comm.rank(), log);
      }
      if (comm.world_size() > 1 && config.train.check_every > 0 &&
          state.step % config.train.check_every == 0) {
        try {
          dist::check_replicas_identical(device_comm, replicated, replicated_names);
        } catch (const dist::DistError& e) {
          throw dist::DistError(fmt::format("after step {}: {}", state.step, e.what()));
        }
      }

      if (!std::isfinite(loss_value)) {
        throw std::runtime_error(fmt::format(
            "loss became {} at step {}; lower train.lr or check the data", loss_value, state.step));
      }
      running_loss += loss_value;
      ++running_count;
      const double step_seconds = seconds_between(step_start, Clock::now());
      if (steps_this_process > 1) {  // the first step pays one-off allocation costs
        step_seconds_total += step_seconds;
        ++timed_steps;
      }
      const double samples_per_second =
          timed_steps ? config.train.batch_size * timed_steps / step_seconds_total : 0.0;
      if (state.step % config.train.log_every == 0) {
        metrics.write({{"type", "train"},
                       {"step", state.step},
                       {"epoch", epoch + double(s + 1) / steps_per_epoch},
                       {"loss", running_loss / running_count},
                       {"infonce", result.infonce},
                       {"triplet", result.triplet},
                       {"lr", lr},
                       {"logit_scale", model->logit_scale().item<double>()},
                       {"samples_per_s", samples_per_second},
                       {"elapsed_s", elapsed()}});
        running_loss = 0;
        running_count = 0;
      }
      bar.update(s + 1 - first, fmt::format("loss {:.4f} lr {:.2e} {:.0f} samples/s", loss_value,
                                            lr, samples_per_second));
      if (steps_this_process == 20) fit_schedule();
      const bool planned_end = state.step == steps_per_epoch * config.train.epochs;
      if (state.step >= state.schedule_steps && !planned_end) {
        stop = true;  // only a time budget shortens the schedule
        summary.stop_reason = "time budget (the schedule was fitted to it)";
      }
      if (budget_seconds > 0 && agree(elapsed() >= budget_seconds)) {
        stop = true;
        summary.stop_reason = "time budget reached";
      }
      if (options.stop_after_steps > 0 && steps_this_process >= options.stop_after_steps &&
          state.step < state.schedule_steps) {
        stop = true;
        summary.paused = true;
        summary.stop_reason =
            fmt::format("paused after {} steps (--resume continues)", steps_this_process);
      }
      if (stop) break;
    }
    prefetcher.reset();
    const bool epoch_complete = state.step == (epoch + 1) * steps_per_epoch;
    bar.finish(fmt::format(
        "{:.0f} samples/s",
        timed_steps ? config.train.batch_size * timed_steps / step_seconds_total : 0.0));
    if (epoch_complete) state.epochs_done = epoch + 1;

    // Evaluate (and keep the best) every eval_every epochs, at the end, and when stopping.
    const bool last_epoch = epoch + 1 == config.train.epochs;
    if (!summary.paused &&
        ((epoch_complete && (epoch + 1) % config.train.eval_every == 0) || last_epoch || stop)) {
      const auto eval_start = Clock::now();
      const EvalResult result = evaluate_split(model, tokenizer, valid, config, comm);
      last_eval_seconds = seconds_between(eval_start, Clock::now());
      const RecallScores& scores = *result.scores;
      log.info("epoch {} valid: R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} MeanRecall {:.2f} ({:.1f} s)",
               epoch + 1, scores.r1, scores.r5, scores.r10, scores.mean_recall, last_eval_seconds);
      json row = scores_json(scores);
      row.update({{"type", "eval"},
                  {"split", valid.name},
                  {"epoch", epoch + 1},
                  {"step", state.step},
                  {"elapsed_s", elapsed()}});
      metrics.write(row);
      if (record_evaluation(state, scores.mean_recall, epoch + 1)) {
        if (main_rank) save_checkpoint(best_path, config, vocab, *model, nullptr, state);
      } else if (patience_exhausted(state, config.train.patience)) {
        stop = true;
        summary.stop_reason = fmt::format(
            "early stopping: no better valid MeanRecall in {} evaluations", state.evals_since_best);
      }
    }
    state.elapsed_seconds = elapsed();
    if (main_rank) {
      save_checkpoint(last_path, config, vocab, *model, optimizer.get(), state);
      if (epoch_complete) {
        save_checkpoint(fmt::format("{}/epoch-{:04d}.pt", checkpoint_dir, epoch + 1), config, vocab,
                        *model, optimizer.get(), state);
        remove_if_exists(fmt::format("{}/epoch-{:04d}.pt", checkpoint_dir, epoch - 1));
      }
    }
    comm.barrier();  // checkpoints are complete before any rank reads them
    if (!stop) fit_schedule();
  }
  if (summary.stop_reason.empty()) summary.stop_reason = "all epochs done";
  summary.epochs_done = state.epochs_done;
  summary.steps = state.step;
  summary.best_epoch = state.best_epoch;
  summary.train_seconds = step_seconds_total;
  summary.samples_per_second =
      timed_steps ? config.train.batch_size * timed_steps / step_seconds_total : 0.0;
  if (summary.paused) {
    log.info("{}: step {} of {}, checkpoint {}", summary.stop_reason, state.step,
             state.schedule_steps, last_path);
    return summary;
  }

  // ---- final evaluation of the best checkpoint --------------------------------------------
  if (fs::exists(best_path)) load_model_weights(best_path, *model);
  const EvalResult final_result = evaluate_split(model, tokenizer, valid, config, comm);
  if (main_rank) write_eval_outputs(run_dir, valid, final_result);
  summary.valid = *final_result.scores;
  log.info(
      "done ({}): {} steps, best epoch {}, valid R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} "
      "MeanRecall {:.2f}; {:.0f} samples/s, data wait {:.1f}% and gradient communication "
      "wait {:.1f}% of step time",
      summary.stop_reason, summary.steps, summary.best_epoch, summary.valid.r1, summary.valid.r5,
      summary.valid.r10, summary.valid.mean_recall, summary.samples_per_second,
      step_seconds_total > 0 ? 100.0 * data_wait_total / step_seconds_total : 0.0,
      step_seconds_total > 0 ? 100.0 * runner.gradient_wait_seconds() / step_seconds_total : 0.0);

  json summary_json = {
      {"stop_reason", summary.stop_reason},
      {"epochs_done", summary.epochs_done},
      {"steps", summary.steps},
      {"first_step_this_process", first_step},
      {"steps_this_process", steps_this_process},
      {"best_epoch", summary.best_epoch},
      {"train_seconds_this_process", summary.train_seconds},
      {"wall_seconds_total", elapsed()},
      {"samples_per_second", summary.samples_per_second},
      {"data_wait_share", step_seconds_total > 0 ? data_wait_total / step_seconds_total : 0.0},
      {"threads", threads},
      {"processes", comm.world_size()},
      {"gradient_wait_share",
       step_seconds_total > 0 ? runner.gradient_wait_seconds() / step_seconds_total : 0.0},
      {"parameters", count_parameters(*model)},
      {"forward_flops_per_sample", model_forward_flops(config.model)},
      {"train",
       {{"queries", train_queries.queries.size()},
        {"images", train_images.size()},
        {"pairs", pairs.size()}}},
      {"bad_rows", bad_rows.bad_rows().size()},
      {"valid", scores_json(summary.valid)},
      {"valid_eval_seconds", final_result.encode_seconds + final_result.search_seconds}};
  if (main_rank) data::write_file_atomic(run_dir + "/summary.json", summary_json.dump(2) + "\n");
  return summary;
}

}  // namespace shopclip
