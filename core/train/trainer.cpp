#include "core/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/device.h"
#include "core/eval/evaluate.h"
#include "core/train/mining.h"
#include "core/train/optim.h"
#include "data/error.h"
#include "data/files.h"
#include "data/muge.h"
#include "data/safetensors.h"
#include "dist/gradients.h"
#include "dist/launch.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void remove_if_exists(const std::string& path) {
  std::error_code ignored;
  fs::remove(path, ignored);
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

// --resume may change training settings but not the architecture, nor the global batch (steps
// count global batches: the data position and the schedule only mean something with the same
// global batch; the number of processes sharing it may change).
void check_resumable(const Config& stored_config, const Config& config, const std::string& path) {
  Config stored, requested;
  stored.model = stored_config.model;
  requested.model = config.model;
  if (stored.to_yaml() != requested.to_yaml()) {
    throw std::invalid_argument(
        fmt::format("--resume: the model section of the config differs from the one in {}", path));
  }
  if (stored_config.train.batch_size != config.train.batch_size) {
    throw std::invalid_argument(fmt::format(
        "--resume: train.batch_size {} differs from the {} the run in {} was trained with; "
        "keep the global batch (the number of processes may change)",
        config.train.batch_size, stored_config.train.batch_size, path));
  }
}

}  // namespace

bool record_evaluation(TrainState& state, double mean_recall, int epoch, bool ties_win) {
  if (mean_recall > state.best_score || (ties_win && mean_recall >= state.best_score)) {
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

Trainer::Trainer(Config config, dist::Communicator& comm, TrainOptions options, Logger& log,
                 SecondsClock clock)
    : config_(std::move(config)),
      comm_(comm),
      options_(std::move(options)),
      log_(log),
      clock_(clock ? std::move(clock) : steady_seconds()),
      started_at_(clock_()),
      main_rank_(comm.is_main()) {
  checkpoint_dir_ = config_.run.dir + "/checkpoints";
  last_path_ = checkpoint_dir_ + "/last.pt";
  best_path_ = checkpoint_dir_ + "/best.pt";
  last_checkpoint_at_ = started_at_;
}

Trainer::~Trainer() = default;

void Trainer::add_callback(std::shared_ptr<TrainCallback> callback) {
  extra_callbacks_.push_back(std::move(callback));
}

template <class Event>
void Trainer::notify(void (TrainCallback::*hook)(const Event&), const Event& event) {
  for (auto& callback : callbacks_)
    ((*callback).*hook)(event);
}

TrainSummary Trainer::run() {
  resolve_distillation();
  prepare_run_directory();
  data_ = load_train_data(config_, main_rank_, config_.run.dir, log_);
  read_resume_point();
  build_loader();
  build_model();
  make_callbacks();
  build_weight_average();
  const int first_epoch = state_.epochs_done;
  for (int epoch = first_epoch; epoch < config_.train.epochs && !stop_; ++epoch)
    run_epoch(epoch);
  return finish();
}

// ---- set-up -------------------------------------------------------------------------------------

void Trainer::resolve_distillation() {
  DistillConfig& distill = config_.distill;
  if (!distill.active()) return;
  if (config_.train.mixgen > 0) {
    throw ConfigError(
        "train.mixgen: must be 0 with distillation (the teacher cache holds no embeddings of "
        "MixGen's mixed pairs)");
  }
  if (distill.teacher_negatives && config_.train.mine_every > 0) {
    throw ConfigError(
        "distill.teacher_negatives: the batches take their mined negatives from the teacher or "
        "from the student's own mining (train.mine_every), not both");
  }
  if (distill.online && distill.views > 0) {
    throw ConfigError(
        "distill.views: stored views are for a cached teacher; an online teacher "
        "(distill.online) already sees every augmented image");
  }
  // Which teacher: one that runs in the step, or the one that made the cache (checked against
  // distill.teacher when given).
  TeacherIdentity teacher;
  std::string source;
  if (distill.online) {
    // Built before the model (the projection width depends on it), on the device the model
    // will train on.
    online_teacher_ = std::make_unique<OnlineTeacher>(
        distill, training_device(config_.run.device, comm_.local_rank()));
    teacher.checkpoint = online_teacher_->checkpoint();
    teacher.dim = online_teacher_->dim();
    teacher.logit_scale = online_teacher_->logit_scale();
    source = "the step (online)";
  }
  if (distill.uses_cache()) {
    const TeacherCacheManifest manifest = read_teacher_cache_manifest(distill.teacher_cache);
    if (!distill.teacher.empty()) {
      const std::string checkpoint = teacher_checkpoint_path(distill.teacher);
      const std::string hash = fmt::format("{:016x}", data::xxh64_file(checkpoint));
      if (hash != manifest.teacher.xxh64) {
        throw data::DataError(fmt::format(
            "{}/manifest.json: teacher.xxh64 is {} ({}), but distill.teacher's {} hashes to {}: "
            "the cache was made by another teacher; make it again with `shopclip distill cache`",
            distill.teacher_cache, manifest.teacher.xxh64, manifest.teacher.checkpoint, checkpoint,
            hash));
      }
    }
    if (!distill.online) {
      teacher = manifest.teacher;
      source = distill.teacher_cache;
    }
  }
  // Feature and interactive distillation compare embeddings: the student's go through a learned
  // map when the widths differ.
  const int needed = distill.compares_embeddings() && teacher.dim != config_.model.embed_dim
                         ? static_cast<int>(teacher.dim)
                         : 0;
  if (config_.model.distill_dim != 0 && config_.model.distill_dim != needed) {
    throw ConfigError(fmt::format(
        "model.distill_dim: is {}, but the teacher ({}) has {} dimensions and the student {}{}",
        config_.model.distill_dim, teacher.checkpoint, teacher.dim, config_.model.embed_dim,
        needed == 0 ? " (no map is needed; leave it 0)" : fmt::format(" (it must be {})", needed)));
  }
  config_.model.distill_dim = needed;
  if (distill.teacher_temperature == 0) {
    if (teacher.logit_scale <= 0) {
      throw data::DataError(fmt::format("{}: the teacher's logit scale must be positive", source));
    }
    distill.teacher_temperature = 1.0 / teacher.logit_scale;
  }
  log_.info(
      "distill: teacher {} ({} dims, logit scale {:.2f}) from {}; weights feature {} contrastive "
      "{} relational {}; teacher temperature {:.4f}; projection to {} dims",
      teacher.checkpoint, teacher.dim, teacher.logit_scale, source, distill.feature_weight,
      distill.contrastive_weight, distill.relational_weight, distill.teacher_temperature,
      config_.model.distill_dim);
}

void Trainer::prepare_run_directory() {
  if (config_.train.batch_size % comm_.world_size() != 0) {
    throw std::invalid_argument(
        fmt::format("train.batch_size {} (the global batch) must be divisible by the {} processes",
                    config_.train.batch_size, comm_.world_size()));
  }
  if (main_rank_) {
    fs::create_directories(checkpoint_dir_);
    log_.open_file(config_.run.dir + "/log.txt");
  }
  if (options_.resume_if_present) options_.resume = fs::exists(last_path_);
  if (options_.resume && !fs::exists(last_path_)) {
    throw std::invalid_argument(fmt::format("--resume: no checkpoint at {}", last_path_));
  }
  if (!options_.resume && fs::exists(last_path_)) {
    throw std::invalid_argument(fmt::format(
        "run directory {} already holds a training run; pass --resume to continue it or choose "
        "another run.dir",
        config_.run.dir));
  }
  if (main_rank_) data::write_file_atomic(config_.run.dir + "/config.yaml", config_.to_yaml());
  threads_ = dist::threads_for_this_rank(config_.run.threads, comm_.local_world_size());
  torch::set_num_threads(threads_);
  torch::manual_seed(static_cast<std::uint64_t>(config_.run.seed));
  log_.info("run directory {}; {} process(es) ({} backend), {} CPU threads each", config_.run.dir,
            comm_.world_size(), comm_.backend(), threads_);
}

void Trainer::read_resume_point() {
  if (options_.resume) {
    auto header = read_checkpoint_header(last_path_);
    check_resumable(header.config, config_, last_path_);
    state_ = header.state;
    vocab_ = std::move(header.vocab);
  } else if (!config_.model.init.empty()) {
    // The initial weights' token embeddings index their own vocabulary.
    vocab_ = read_checkpoint_header(config_.model.init).vocab;
  } else {
    vocab_ = make_vocab(config_, data_.query_texts(), log_);
  }
  if (main_rank_) vocab_.save(config_.run.dir + "/vocab.txt");
  tokenizer_ = std::make_unique<data::Tokenizer>(vocab_);
  budget_ = std::make_unique<TimeBudget>(config_.train.max_minutes * 60.0, state_.elapsed_seconds,
                                         clock_, started_at_);
  meter_ = std::make_unique<ThroughputMeter>(config_.train.batch_size);
  first_step_ = state_.step;
}

void Trainer::build_loader() {
  data::LoaderInputs inputs;
  inputs.images = data_.images.get();
  inputs.pairs = data_.pairs;
  inputs.query_texts = data_.query_texts();
  inputs.tokenizer = tokenizer_.get();
  inputs.context_length = config_.model.text.context_length;
  inputs.relevant = data_.relevant;
  data::LoaderOptions options;
  options.local_batch = config_.train.batch_size / comm_.world_size();
  options.rank = comm_.rank();
  options.world_size = comm_.world_size();
  options.seed = static_cast<std::uint64_t>(config_.run.seed);
  if (config_.train.mine_every > 0 || config_.distill.teacher_negatives) {
    hard_sampler_ = std::make_shared<data::HardNegativeBatchSampler>(
        data_.pairs, config_.train.batch_size, options.seed, config_.train.mine_share);
    options.sampler = hard_sampler_;
  }
  options.image_augmentations = make_train_image_augmentations(config_.train);
  options.text_augmentations = make_train_text_augmentations(config_, data_, log_);
  options.output_resolution = config_.model.image.resolution;
  options.threads = config_.train.loader_threads;
  options.mixgen = config_.train.mixgen;
  options.mixgen_lambda = config_.train.mixgen_lambda;
  if (config_.distill.uses_cache()) {
    teacher_ = std::make_shared<TeacherEmbeddings>(config_.distill.teacher_cache, *data_.images,
                                                   config_.prep_split_dir(config_.data.train_split),
                                                   data_.queries);
    if (!online_teacher_) {
      // The terms read the cache's rows: its views must be the ones this loader draws.
      teacher_->check_views(config_.distill.views, options.seed, image_view_recipe(config_.train));
      options.image_views = config_.distill.views;
      options.extensions.push_back(std::make_shared<TeacherRows>(teacher_));
    }
  }
  if (online_teacher_) {
    options.extensions.push_back(online_teacher_->token_extension(data_.query_texts()));
  }
  loader_ = std::make_unique<data::PairLoader>(std::move(inputs), std::move(options));
  steps_per_epoch_ = loader_->steps_per_epoch();
  if (steps_per_epoch_ == 0) {
    throw std::invalid_argument(fmt::format("train.batch_size {} exceeds the {} training pairs",
                                            config_.train.batch_size, data_.pairs.size()));
  }
  if (!options_.resume) state_.schedule_steps = steps_per_epoch_ * config_.train.epochs;
  if (state_.warmup_steps < 0) {
    state_.warmup_steps = warmup_steps_for(config_.train, state_.schedule_steps);
  }
  if (options_.resume && steps_per_epoch_ * config_.train.epochs > state_.schedule_steps) {
    log_.warn(
        "--resume: train.epochs {} asks for {} steps, but this run's learning-rate schedule ends "
        "at step {} (its rate is 0 there), so training stops at that step; to train longer, "
        "start a new run from this one's weights",
        config_.train.epochs, steps_per_epoch_ * config_.train.epochs, state_.schedule_steps);
  }
  log_.info("train: {} queries, {} images, {} pairs -> {} steps per epoch of {} pairs",
            data_.queries.queries.size(), data_.images->size(), data_.pairs.size(),
            steps_per_epoch_, config_.train.batch_size);
  log_.info("valid: {} queries over {} images", data_.valid.queries.queries.size(),
            data_.valid.images->size());
}

void Trainer::build_model() {
  // With CUDA, tensors of the model and the step move between ranks over NCCL (device_comm_);
  // everything on the CPU side (schedule, stop decisions, evaluation embeddings) over comm_.
  device_ = training_device(config_.run.device, comm_.local_rank());
  device_comm_owner_ = dist::make_device_communicator(comm_, device_);
  if (device_comm_owner_) {
    // NCCL collectives are watched like comm_'s (which whoever made comm_ watches, see launch/).
    dist::WatchdogOptions watch;
    watch.timeout_seconds = config_.dist.timeout_s;
    watch.report = [this](const std::string& line) { log_.error("{}", line); };
    device_watch_ = std::make_unique<dist::WatchedCommunicator>(*device_comm_owner_, watch);
  }
  device_comm_ = device_watch_ ? static_cast<dist::Communicator*>(device_watch_.get()) : &comm_;
  model_ = DualEncoder(config_.model, vocab_.size(), vocab_.pad_id(), device_comm_);
  const auto& clip = config_.model.chinese_clip;
  if (!options_.resume && clip.enabled() && !clip.weights.empty()) {
    auto towers = model_->chinese_clip();
    load_chinese_clip_state(towers, data::read_safetensors(clip.weights).tensors, clip.weights);
    log_.info("model: Chinese-CLIP weights from {}", clip.weights);
  }
  if (!options_.resume && !config_.model.init.empty()) {
    const auto fresh = load_model_weights(config_.model.init, *model_, /*allow_missing=*/true);
    std::set<std::string> modules;  // "reranker" for reranker.blocks.0.ln1.weight
    for (const auto& name : fresh)
      modules.insert(name.substr(0, name.find('.')));
    log_.info("model: initial weights from {}{}", config_.model.init,
              fresh.empty() ? std::string()
                            : fmt::format("; {} tensors it lacks start fresh (in {})", fresh.size(),
                                          fmt::join(modules, ", ")));
  }
  model_->freeze(config_.train.freeze);
  model_->to(device_);
  optimizer_ = make_adamw(model_, config_.train);
  if (options_.resume) {
    load_model_weights(last_path_, *model_);
    load_optimizer_state(last_path_, *optimizer_);
    log_.info("resumed from {}: epoch {} step {} (best valid MeanRecall {:.2f} at epoch {})",
              last_path_, state_.epochs_done, state_.step, state_.best_score, state_.best_epoch);
  }
  for (const auto& item : model_->named_parameters()) {
    replicas_.tensors.push_back(item.value());
    replicas_.names.push_back(item.key());
  }
  for (const auto& item : model_->named_buffers()) {
    replicas_.tensors.push_back(item.value());
    replicas_.names.push_back(item.key());
  }
}

void Trainer::make_callbacks() {
  std::optional<MetricsLog::Resume> resume;
  if (options_.resume) {
    resume = MetricsLog::Resume{state_.step, state_.epochs_done, comm_.world_size(),
                                state_.elapsed_seconds};
  }
  callbacks_ = {std::make_shared<FaultInjection>(options_.faults, comm_.rank(), log_),
                std::make_shared<ReplicaCheck>(*device_comm_, config_.train.check_every),
                std::make_shared<MetricsLog>(main_rank_ ? config_.run.dir + "/metrics.jsonl" : "",
                                             config_.train.log_every, resume),
                std::make_shared<ProgressReport>(log_, config_.train.epochs)};
  callbacks_.insert(callbacks_.end(), extra_callbacks_.begin(), extra_callbacks_.end());
  if (main_rank_ && config_.train.profile_steps > 0) {
    // First, so that its window ends before the other callbacks' end-of-step work.
    callbacks_.insert(callbacks_.begin(),
                      std::make_shared<StepProfile>(config_.run.dir, state_.step + 3,
                                                    config_.train.profile_steps, log_));
  }
  for (auto& callback : callbacks_)
    callback->on_model_ready(replicas_);
  // After on_model_ready: a test hook may have perturbed this rank's copy, which this undoes.
  if (comm_.world_size() > 1) dist::broadcast_tensors(*device_comm_, replicas_.tensors, 0);
  runner_ = std::make_unique<StepRunner>(model_, *optimizer_, *device_comm_, config_.train,
                                         config_.distill);
  // An upper bound: the text tower computes only up to each batch's longest query.
  log_.info(
      "model: {} image tower, {:.2f}M parameters, {:.1f} MFLOP forward per sample with a "
      "full-context query",
      enum_name(config_.model.image.type), count_parameters(*model_) / 1e6,
      model_forward_flops(config_.model) / 1e6);
}

void Trainer::build_weight_average() {
  if (config_.train.ema_decay <= 0) return;
  // After the start-up broadcast: every rank starts the same average.
  average_ = std::make_unique<WeightAverage>(*model_, config_.train.ema_decay);
  if (options_.resume) {
    const auto stored = read_checkpoint_average(last_path_);
    if (stored.empty()) {
      log_.warn("weight average: {} holds none; it starts at the resumed weights", last_path_);
    } else {
      average_->load(stored, last_path_);
    }
  }
  log_.info("weight average: decay {:g} (warmed up as min(decay, (1 + t) / (10 + t)))",
            config_.train.ema_decay);
}

// ---- the loop -----------------------------------------------------------------------------------

namespace {
double negatives_per_query(const MinedNegatives& negatives) {
  std::size_t total = 0;
  for (const auto& list : negatives)
    total += list.size();
  return negatives.empty() ? 0.0 : double(total) / negatives.size();
}
}  // namespace

void Trainer::prepare_mined_negatives(int epoch) {
  if (!hard_sampler_) return;
  if (config_.distill.teacher_negatives) {
    // The teacher's lists depend on the cache only: made once, the same on a resume.
    if (mined_for_epoch_ == kNotMined) {
      const auto start = std::chrono::steady_clock::now();
      // The cache's saved index when it covers this run's images in its order (rank 0 searches).
      std::optional<SavedIndex> saved;
      if (main_rank_) {
        saved = read_teacher_index(config_.distill.teacher_cache, teacher_->manifest(),
                                   data_.images->ids());
      }
      auto negatives = std::make_shared<const MinedNegatives>(select_hard_negatives(
          teacher_->all_images(), teacher_->all_queries(), data_, mining_rules(config_.train),
          comm_, saved ? &saved->index : nullptr));
      log_.info(
          "distill: the teacher's hard negatives in {:.1f} s ({}), {:.1f} per query (ranks "
          "{}..{}, max ratio {:g})",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
          saved ? "searched the cache's saved index" : "index built from the cache",
          negatives_per_query(*negatives), config_.train.mine_skip, config_.train.mine_depth - 1,
          config_.train.mine_max_ratio);
      hard_sampler_->set_negatives(negatives);
      mined_for_epoch_ = -1;  // the teacher's, for every epoch
    }
    log_placed_negatives("distill", "pairs of the teacher's negatives", epoch);
    return;
  }
  const int every = config_.train.mine_every;
  const int due = (epoch / every) * every;  // the latest mining at or before this epoch
  // A fresh model mines from epoch N on; one that starts from trained weights (model.init) also
  // before its first epoch, its negatives being meaningful from the start.
  const bool trained_start = !config_.model.init.empty();
  if ((due == 0 && !trained_start) || due == mined_for_epoch_) return;
  const std::string path = config_.run.dir + "/mined_negatives.pt";
  // A resumed run continuing inside the epoch that mined (or after it) reads those lists back:
  // mining again with later weights would change the batches.
  const bool continuing = epoch != due || state_.step > epoch * steps_per_epoch_;
  std::shared_ptr<const MinedNegatives> negatives;
  if (continuing) negatives = load_mined_negatives(path, due);
  if (!negatives) {
    if (continuing) {
      log_.warn(
          "mining: {} holds no lists mined at epoch {}; mining again with the current "
          "weights (the batches differ from the interrupted run's)",
          path, due);
    }
    MiningResult result = mine_hard_negatives(model_, *tokenizer_, data_, config_, comm_);
    log_.info(
        "mining before epoch {}: {:.1f} s, {:.1f} negatives per query (ranks {}..{}, "
        "max ratio {:g})",
        epoch + 1, result.seconds, negatives_per_query(result.negatives), config_.train.mine_skip,
        config_.train.mine_depth - 1, config_.train.mine_max_ratio);
    mining_seconds_ += result.seconds;
    last_mining_seconds_ = result.seconds;
    negatives = std::make_shared<const MinedNegatives>(std::move(result.negatives));
    if (main_rank_) save_mined_negatives(path, due, *negatives);
  }
  hard_sampler_->set_negatives(negatives);
  mined_for_epoch_ = due;
  log_placed_negatives("mining", "mined pairs", epoch);
}

void Trainer::log_placed_negatives(std::string_view source, std::string_view what, int epoch) {
  const std::int64_t placed = hard_sampler_->mined_pairs(epoch);
  log_.info("{}: epoch {} places {} {} ({:.1f}% of its pairs)", source, epoch + 1, placed, what,
            100.0 * placed / double(steps_per_epoch_ * config_.train.batch_size));
}

void Trainer::run_epoch(int epoch) {
  const double epoch_start = clock_();
  last_mining_seconds_ = 0;
  prepare_mined_negatives(epoch);
  model_->train();
  data::Prefetcher prefetcher(*loader_);
  // A resumed run may start inside an epoch (a pause or a time-budget stop).
  const std::int64_t first =
      epoch == state_.epochs_done ? state_.step - state_.epochs_done * steps_per_epoch_ : 0;
  for (auto& callback : callbacks_)
    callback->on_epoch_begin(epoch, steps_per_epoch_ - first);
  if (first < steps_per_epoch_) prefetcher.request(epoch, first);
  for (std::int64_t s = first; s < steps_per_epoch_ && !stop_; ++s) {
    train_step(epoch, s, first, prefetcher);
    decide_stop_after_step();
    checkpoint_if_due(s);
  }
  prefetcher.reset();
  const bool epoch_complete = state_.step == (epoch + 1) * steps_per_epoch_;
  for (auto& callback : callbacks_)
    callback->on_epoch_end(epoch, meter_->samples_per_second());
  if (last_mining_seconds_ > 0) {
    log_.info("mining took {:.1f}% of epoch {}'s time",
              100.0 * last_mining_seconds_ / std::max(1e-9, clock_() - epoch_start), epoch + 1);
  }
  if (epoch_complete) state_.epochs_done = epoch + 1;
  evaluate_and_select(epoch, epoch_complete);
  state_.elapsed_seconds = budget_->elapsed();
  save_checkpoints(epoch, epoch_complete);
  last_checkpoint_at_ = clock_();
  comm_.barrier();  // checkpoints are complete before any rank reads them
  if (!stop_) fit_schedule_to_budget();
}

void Trainer::train_step(int epoch, std::int64_t s, std::int64_t first,
                         data::Prefetcher& prefetcher) {
  const double step_start = clock_();
  data::Batch batch = prefetcher.get();
  data_wait_seconds_ += clock_() - step_start;
  if (s + 1 < steps_per_epoch_) prefetcher.request(epoch, s + 1);

  for (auto& callback : callbacks_)
    callback->on_step_begin(state_.step + 1);
  const double lr =
      learning_rate_at(config_.train, state_.step, state_.schedule_steps, warmup_steps());
  StepInputs inputs{batch.images.to(device_),
                    batch.tokens.to(device_),
                    batch.relevant.to(device_),
                    state_.step,
                    {}};
  for (const auto& [name, tensor] : batch.extras)
    inputs.extras[name] = tensor.to(device_);
  if (online_teacher_) online_teacher_->add_rows(inputs.images, inputs.extras);
  const StepResult result = runner_->step(inputs, lr);
  if (average_) average_->update(state_.step);
  ++state_.step;
  ++steps_this_process_;
  meter_->add_step(clock_() - step_start);
  if (!std::isfinite(result.loss)) {
    throw std::runtime_error(fmt::format(
        "loss became {} at step {}; lower train.lr or check the data", result.loss, state_.step));
  }
  StepEvent event;
  event.step = state_.step;
  event.epoch = epoch;
  event.epoch_position = epoch + double(s + 1) / steps_per_epoch_;
  event.epoch_steps_done = s + 1 - first;
  event.result = &result;
  event.lr = lr;
  event.logit_scale = model_->logit_scale().item<double>();
  event.samples_per_second = meter_->samples_per_second();
  event.elapsed_seconds = budget_->elapsed();
  notify(&TrainCallback::on_step_end, event);
  if (steps_this_process_ == 20) fit_schedule_to_budget();
}

void Trainer::decide_stop_after_step() {
  const bool planned_end = state_.step == steps_per_epoch_ * config_.train.epochs;
  if (state_.step >= state_.schedule_steps && !planned_end) {
    // A time budget shortens the schedule; a resumed run keeps its first schedule.
    stop_ = true;
    summary_.stop_reason = budget_->enabled()
                               ? "time budget (the schedule was fitted to it)"
                               : "end of the run's learning-rate schedule (its first train.epochs)";
  }
  if (budget_->enabled() && agree(budget_->exhausted())) {
    stop_ = true;
    summary_.stop_reason = "time budget reached";
  }
  if (options_.stop_after_steps > 0 && steps_this_process_ >= options_.stop_after_steps &&
      state_.step < state_.schedule_steps) {
    stop_ = true;
    summary_.paused = true;
    summary_.stop_reason =
        fmt::format("paused after {} steps (--resume continues)", steps_this_process_);
  }
}

// A checkpoint inside the epoch once train.checkpoint_every_minutes have passed since the last
// one (the epoch's end saves anyway, and so does a stop). Rank 0's clock decides.
void Trainer::checkpoint_if_due(std::int64_t step_in_epoch) {
  const double every_seconds = config_.train.checkpoint_every_minutes * 60.0;
  if (every_seconds <= 0 || stop_ || step_in_epoch + 1 == steps_per_epoch_) return;
  if (!agree(clock_() - last_checkpoint_at_ >= every_seconds)) return;
  state_.elapsed_seconds = budget_->elapsed();
  if (main_rank_) save_resumable(last_path_);
  last_checkpoint_at_ = clock_();
  log_.info("checkpoint: step {} saved to {} ({:g} minutes since the last save)", state_.step,
            last_path_, config_.train.checkpoint_every_minutes);
}

// Decisions that depend on a clock are taken by rank 0 and shared, so every rank stops at the same
// step (a rank left behind would wait forever in a collective).
bool Trainer::agree(bool decision) {
  if (comm_.world_size() == 1) return decision;
  auto flag = torch::tensor({decision ? 1 : 0}, torch::kInt32);
  comm_.broadcast(flag, 0);
  return flag.item<int>() != 0;
}

// Evaluates (and keeps the best) every eval_every epochs, at the end, and when stopping. With a
// weight average both weights are evaluated and the better one competes for best.pt.
void Trainer::evaluate_and_select(int epoch, bool epoch_complete) {
  const bool last_epoch = epoch + 1 == config_.train.epochs;
  const bool due =
      (epoch_complete && (epoch + 1) % config_.train.eval_every == 0) || last_epoch || stop_;
  if (summary_.paused || !due) return;
  const RecallScores raw = evaluate_now(epoch, "raw");
  std::optional<RecallScores> averaged;
  if (average_) {
    average_->swap_with_model();  // the model holds the average until swapped back below
    averaged = evaluate_now(epoch, "ema");
  }
  const bool average_wins = averaged && averaged->mean_recall > raw.mean_recall;
  if (averaged && !average_wins) average_->swap_with_model();
  // With both towers frozen the dual encoder's score cannot change while the reranker learns:
  // the latest evaluation (the reranker trained longest) is kept.
  const bool ties_win = config_.train.freeze == FrozenTower::kBoth;
  if (record_evaluation(state_, average_wins ? averaged->mean_recall : raw.mean_recall, epoch + 1,
                        ties_win)) {
    state_.best_is_average = average_wins;
    if (main_rank_) save_checkpoint(best_path_, config_, vocab_, *model_, nullptr, state_);
  } else if (patience_exhausted(state_, config_.train.patience)) {
    stop_ = true;
    summary_.stop_reason = fmt::format(
        "early stopping: no better valid MeanRecall in {} evaluations", state_.evals_since_best);
  }
  if (average_wins) average_->swap_with_model();
}

RecallScores Trainer::evaluate_now(int epoch, const std::string& weights) {
  const double eval_start = clock_();
  const EvalResult result = evaluate_split(model_, *tokenizer_, data_.valid, config_, comm_);
  last_eval_seconds_ = clock_() - eval_start;
  const RecallScores& scores = *result.scores;
  log_.info("epoch {} valid{}: R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} MeanRecall {:.2f} ({:.1f} s)",
            epoch + 1, weights == "raw" ? "" : " (" + weights + " weights)", scores.r1, scores.r5,
            scores.r10, scores.mean_recall, last_eval_seconds_);
  EvalEvent event{data_.valid.name,   epoch + 1,          state_.step, scores,
                  last_eval_seconds_, budget_->elapsed(), weights};
  notify(&TrainCallback::on_evaluation, event);
  return scores;
}

void Trainer::save_resumable(const std::string& path) {
  save_checkpoint(path, config_, vocab_, *model_, optimizer_.get(), state_,
                  average_ ? &average_->tensors() : nullptr);
}

void Trainer::save_checkpoints(int epoch, bool epoch_complete) {
  if (!main_rank_) return;
  save_resumable(last_path_);
  if (epoch_complete) {
    save_resumable(fmt::format("{}/epoch-{:04d}.pt", checkpoint_dir_, epoch + 1));
    remove_if_exists(fmt::format("{}/epoch-{:04d}.pt", checkpoint_dir_, epoch - 1));
  }
}

// Fits the LR schedule's end into the time budget, from the measured step and evaluation times.
std::int64_t Trainer::warmup_steps() const {
  return state_.warmup_steps;
}

void Trainer::fit_schedule_to_budget() {
  if (!budget_->enabled() || meter_->timed_steps() < 5) return;
  const double per_step = meter_->seconds_per_step();
  const std::int64_t affordable =
      budget_->affordable_end(state_.step, per_step, last_eval_seconds_,
                              double(steps_per_epoch_) * config_.train.eval_every);
  auto schedule_end = torch::tensor({std::min(state_.schedule_steps, affordable)}, torch::kInt64);
  comm_.broadcast(schedule_end, 0);  // rank 0's clock decides
  if (schedule_end.item<std::int64_t>() < state_.schedule_steps) {
    state_.schedule_steps = std::max(state_.step + 1, schedule_end.item<std::int64_t>());
    // The shorter schedule's warm-up, but never ending before the steps already taken: a run
    // fitted during its warm-up goes to the peak rate at once and decays from there.
    state_.warmup_steps = std::max(warmup_steps_for(config_.train, state_.schedule_steps),
                                   std::min(state_.warmup_steps, state_.step));
    log_.info(
        "time budget: the schedule now ends at step {} with {} warm-up steps ({:.2f} s per step, "
        "{:.1f} s per evaluation)",
        state_.schedule_steps, warmup_steps(), per_step, last_eval_seconds_);
  }
}

// ---- finish -------------------------------------------------------------------------------------

TrainSummary Trainer::finish() {
  if (summary_.stop_reason.empty()) summary_.stop_reason = "all epochs done";
  summary_.epochs_done = state_.epochs_done;
  summary_.steps = state_.step;
  summary_.best_epoch = state_.best_epoch;
  summary_.best_is_average = state_.best_is_average;
  summary_.train_seconds = meter_->timed_seconds();
  summary_.samples_per_second = meter_->samples_per_second();
  if (summary_.paused) {
    log_.info("{}: step {} of {}, checkpoint {}", summary_.stop_reason, state_.step,
              state_.schedule_steps, last_path_);
    return summary_;
  }
  // The final evaluation is of the best checkpoint.
  if (fs::exists(best_path_)) load_model_weights(best_path_, *model_);
  const EvalResult result = evaluate_split(model_, *tokenizer_, data_.valid, config_, comm_);
  if (main_rank_) write_eval_outputs(config_.run.dir, data_.valid, result);
  summary_.valid = *result.scores;
  const double step_seconds = meter_->timed_seconds();
  log_.info(
      "done ({}): {} steps, best epoch {}{}, valid R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} "
      "MeanRecall {:.2f}; {:.0f} samples/s, data wait {:.1f}% and gradient communication "
      "wait {:.1f}% of step time",
      summary_.stop_reason, summary_.steps, summary_.best_epoch,
      summary_.best_is_average ? " (its weight average)" : "", summary_.valid.r1, summary_.valid.r5,
      summary_.valid.r10, summary_.valid.mean_recall, summary_.samples_per_second,
      step_seconds > 0 ? 100.0 * data_wait_seconds_ / step_seconds : 0.0,
      step_seconds > 0 ? 100.0 * runner_->gradient_wait_seconds() / step_seconds : 0.0);
  write_summary(result.encode_seconds + result.search_seconds);
  return summary_;
}

void Trainer::write_summary(double eval_seconds) {
  if (!main_rank_) return;
  const double step_seconds = meter_->timed_seconds();
  json summary = {{"stop_reason", summary_.stop_reason},
                  {"epochs_done", summary_.epochs_done},
                  {"steps", summary_.steps},
                  {"first_step_this_process", first_step_},
                  {"steps_this_process", steps_this_process_},
                  {"best_epoch", summary_.best_epoch},
                  {"best_weights", summary_.best_is_average ? "ema" : "raw"},
                  {"train_seconds_this_process", summary_.train_seconds},
                  {"wall_seconds_total", budget_->elapsed()},
                  {"samples_per_second", summary_.samples_per_second},
                  {"data_wait_share", step_seconds > 0 ? data_wait_seconds_ / step_seconds : 0.0},
                  {"threads", threads_},
                  {"processes", comm_.world_size()},
                  {"gradient_wait_share",
                   step_seconds > 0 ? runner_->gradient_wait_seconds() / step_seconds : 0.0},
                  {"parameters", count_parameters(*model_)},
                  {"forward_flops_per_sample", model_forward_flops(config_.model)},
                  {"train",
                   {{"queries", data_.queries.queries.size()},
                    {"images", data_.images->size()},
                    {"pairs", data_.pairs.size()}}},
                  {"bad_rows", data_.bad_rows.bad_rows().size()},
                  {"valid", scores_json(summary_.valid)},
                  {"valid_eval_seconds", eval_seconds},
                  {"mining_seconds_this_process", mining_seconds_}};
  data::write_file_atomic(config_.run.dir + "/summary.json", summary.dump(2) + "\n");
}

TrainSummary train(const Config& config, dist::Communicator& comm, const TrainOptions& options,
                   Logger& log) {
  return Trainer(config, comm, options, log).run();
}

}  // namespace shopclip
