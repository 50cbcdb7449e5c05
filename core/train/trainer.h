#pragma once
// `shopclip train`: the training loop with evaluation, checkpoints, early stopping, resume and a
// wall-clock budget. Works through a dist::Communicator so the same loop runs as one process or
// as many ranks.
//
// A Trainer runs in phases: set-up (run directory, data, vocabulary, model, optimizer, the
// start-up broadcast), then per epoch: the steps, evaluate-and-select, checkpoint; then finish
// (the best checkpoint's evaluation and summary.json). What happens around the steps (metrics,
// progress, replica checks, fault injection) is TrainCallbacks (core/train/callbacks.h); the
// step itself is a StepRunner (core/train/step.h); the batches come from data::PairLoader.
//
// Run directory (config.run.dir), written by rank 0:
//   config.yaml          the resolved configuration
//   log.txt              everything logged, including every bad input row
//   bad_rows.jsonl       bad input rows (file, line, reason)
//   vocab.txt            the vocabulary
//   metrics.jsonl        {"type": "train", ...} every train.log_every steps, {"type": "eval", ...},
//                        {"type": "resume", ...} where a resumed process started
//   checkpoints/last.pt  the latest state (resume), epoch-NNNN.pt (the two latest epochs),
//                        best.pt (best valid MeanRecall; with train.ema_decay the raw weights or
//                        their average, whichever scored higher)
//   predictions/<valid>.jsonl, eval/<valid>.json   the final evaluation (best checkpoint)
//   mined_negatives.pt   the latest hard-negative mining (train.mine_every), for a resume
// With distill.*, the batches carry the teacher's rows from distill.teacher_cache
// (core/train/teacher_cache.h) and the loss has the distillation terms.
//   summary.json         what the run did and scored

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/optim/optimizer.h>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/eval/metrics.h"
#include "core/log.h"
#include "core/model/dual_encoder.h"
#include "core/train/callbacks.h"
#include "core/train/online_teacher.h"
#include "core/train/step.h"
#include "core/train/teacher_cache.h"
#include "core/train/time_budget.h"
#include "core/train/train_data.h"
#include "core/train/weight_average.h"
#include "dist/communicator.h"
#include "dist/watchdog.h"

namespace shopclip {

struct TrainOptions {
  bool resume = false;  // continue from <run.dir>/checkpoints/last.pt
  // Continue from last.pt when the run directory has one, else start the run (a requeued job
  // that may have failed before its first checkpoint).
  bool resume_if_present = false;
  // Pause after this many optimizer steps of this process (0 = never): save last.pt and return
  // without evaluating, so a later --resume continues exactly where it stopped (time-sliced jobs).
  std::int64_t stop_after_steps = 0;
  // Test hooks for the failure and replica tests (see FaultInjection).
  FaultInjection::Plan faults;
};

struct TrainSummary {
  int epochs_done = 0;
  std::int64_t steps = 0;
  double train_seconds = 0;
  double samples_per_second = 0;
  std::string stop_reason;
  bool paused = false;  // stopped by stop_after_steps; no final evaluation
  int best_epoch = -1;
  bool best_is_average = false;  // the best checkpoint holds the weight average (train.ema_decay)
  RecallScores valid;            // final evaluation of the best checkpoint
};

// Model selection: records a valid MeanRecall of `epoch`; returns true when it is a new best
// (strictly better, or equal with ties_win), else counts one more evaluation without improvement.
bool record_evaluation(TrainState& state, double mean_recall, int epoch, bool ties_win = false);
// Early stopping: patience > 0 evaluations in a row without a new best.
bool patience_exhausted(const TrainState& state, int patience);

class Trainer {
 public:
  // comm and log must outlive the trainer. clock: seconds for the time budget and throughput
  // (null = steady_seconds(); tests pass a fake one).
  Trainer(Config config, dist::Communicator& comm, TrainOptions options, Logger& log,
          SecondsClock clock = nullptr);
  ~Trainer();

  // Called at the standard points after the built-in callbacks (metrics, progress, replica
  // checks, fault injection), in the order added. Add before run().
  void add_callback(std::shared_ptr<TrainCallback> callback);

  // All phases: set-up, the epochs, finish.
  TrainSummary run();

 private:
  // ---- set-up
  // distill.*: reads the teacher cache's manifest, refuses a cache of another teacher, and
  // resolves what the config leaves to it (model.distill_dim, distill.teacher_temperature), before
  // config.yaml is written and the model is built.
  void resolve_distillation();
  void prepare_run_directory();
  void read_resume_point();
  void build_model();
  void build_loader();
  void make_callbacks();
  void build_weight_average();
  // ---- the loop
  void run_epoch(int epoch);
  // train.mine_every: the mined negatives that epoch's batches use (mined now, or read back from
  // <run.dir>/mined_negatives.pt when a resumed run continues an epoch that mined them).
  void prepare_mined_negatives(int epoch);
  // Logs how many of epoch's pairs the sampler placed beside their mined negatives, e.g.
  // "mining: epoch 3 places 120 mined pairs (12.5% of its pairs)".
  void log_placed_negatives(std::string_view source, std::string_view what, int epoch);
  void train_step(int epoch, std::int64_t step_in_epoch, std::int64_t first_in_epoch,
                  data::Prefetcher& prefetcher);
  void decide_stop_after_step();
  void checkpoint_if_due(std::int64_t step_in_epoch);
  void evaluate_and_select(int epoch, bool epoch_complete);
  // Evaluates the model as it is now on valid: logs, notifies, returns the scores. weights names
  // them in logs and metrics ("raw" or "ema").
  RecallScores evaluate_now(int epoch, const std::string& weights);
  void save_checkpoints(int epoch, bool epoch_complete);
  // A checkpoint that resumes the run (weights, optimizer, weight average).
  void save_resumable(const std::string& path);
  void fit_schedule_to_budget();
  // Warm-up of the current schedule (fixed at the start, refitted with the schedule).
  std::int64_t warmup_steps() const;
  bool agree(bool decision);  // rank 0's decision, on every rank
  // ---- finish
  TrainSummary finish();
  void write_summary(double eval_seconds);

  template <class Event>
  void notify(void (TrainCallback::*hook)(const Event&), const Event& event);

  Config config_;
  dist::Communicator& comm_;
  TrainOptions options_;
  Logger& log_;
  SecondsClock clock_;
  double started_at_;
  bool main_rank_;
  std::string checkpoint_dir_, last_path_, best_path_;

  TrainData data_;
  data::Vocab vocab_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  std::unique_ptr<data::PairLoader> loader_;
  std::shared_ptr<data::HardNegativeBatchSampler> hard_sampler_;  // with train.mine_every
  std::shared_ptr<const TeacherEmbeddings> teacher_;              // with distill.*
  std::unique_ptr<OnlineTeacher> online_teacher_;                 // with distill.online
  // The epoch whose mining the sampler holds: kNotMined = none, -1 = the teacher's lists.
  static constexpr int kNotMined = -2;
  int mined_for_epoch_ = kNotMined;
  TrainState state_;
  std::int64_t steps_per_epoch_ = 0;
  int threads_ = 0;

  torch::Device device_{torch::kCPU};
  std::unique_ptr<dist::Communicator> device_comm_owner_;    // NCCL, with CUDA
  std::unique_ptr<dist::WatchedCommunicator> device_watch_;  // watches device_comm_owner_
  dist::Communicator* device_comm_ = nullptr;                // device_watch_ or comm_
  DualEncoder model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<WeightAverage> average_;  // with train.ema_decay
  Replicas replicas_;

  std::unique_ptr<TimeBudget> budget_;
  std::unique_ptr<ThroughputMeter> meter_;
  std::vector<std::shared_ptr<TrainCallback>> callbacks_, extra_callbacks_;
  TrainSummary summary_;
  std::int64_t steps_this_process_ = 0, first_step_ = 0;
  double data_wait_seconds_ = 0, last_eval_seconds_ = 0;
  double mining_seconds_ = 0, last_mining_seconds_ = 0;
  double last_checkpoint_at_ = 0;  // clock_() of the last save of last.pt (rank 0's decides)
  bool stop_ = false;
};

// Trainer(config, comm, options, log).run().
TrainSummary train(const Config& config, dist::Communicator& comm, const TrainOptions& options,
                   Logger& log);

}  // namespace shopclip
