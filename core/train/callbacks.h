#pragma once
// What happens around the training loop without being the loop: metrics rows, the progress bar,
// replica checks and fault injection for the failure tests. The Trainer calls every callback at
// the same points on every rank; a callback that communicates must do so on every rank.

#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/eval/metrics.h"
#include "core/log.h"
#include "core/train/profile.h"
#include "core/train/step.h"
#include "dist/communicator.h"

namespace shopclip {

// After each optimizer step.
struct StepEvent {
  std::int64_t step = 0;      // global optimizer steps done, this one included
  int epoch = 0;              // 0-based
  double epoch_position = 0;  // epochs done as a fraction (epoch + steps done / steps per epoch)
  std::int64_t epoch_steps_done = 0;  // steps of this epoch run by this process
  const StepResult* result = nullptr;
  double lr = 0;
  double logit_scale = 0;
  double samples_per_second = 0;
  double elapsed_seconds = 0;  // training time of the run (across resumes)
};

// After each evaluation on the validation split.
struct EvalEvent {
  std::string split;
  int epoch = 0;  // epochs completed (1-based numbering of the evaluated epoch)
  std::int64_t step = 0;
  RecallScores scores;
  double seconds = 0;
  double elapsed_seconds = 0;
  std::string weights = "raw";  // or "ema": the weight average of train.ema_decay
};

// The model's parameters and buffers by name, as every rank holds them.
struct Replicas {
  std::vector<torch::Tensor> tensors;
  std::vector<std::string> names;
};

class TrainCallback {
 public:
  virtual ~TrainCallback() = default;
  // The model is built (and loaded, on a resume); the start-up broadcast from rank 0 follows.
  virtual void on_model_ready(Replicas&) {}
  // An epoch starts with `steps` steps left in it for this process.
  virtual void on_epoch_begin(int /*epoch*/, std::int64_t /*steps*/) {}
  // Before global step `step` (1-based) runs.
  virtual void on_step_begin(std::int64_t /*step*/) {}
  virtual void on_step_end(const StepEvent&) {}
  virtual void on_epoch_end(int /*epoch*/, double /*samples_per_second*/) {}
  virtual void on_evaluation(const EvalEvent&) {}
};

// metrics.jsonl rows (main rank only; an empty path writes nothing): {"type": "train", step,
// epoch, loss (mean since the last row), each loss term by name, lr, logit_scale, samples_per_s,
// elapsed_s} every log_every steps, {"type": "eval", ...} per evaluation ({"type": "eval_ema"}
// for the weight average's), and on a resume first
// {"type": "resume", step, epochs_done, processes, elapsed_s}. A fresh run starts the file anew.
class MetricsLog : public TrainCallback {
 public:
  struct Resume {
    std::int64_t step = 0;
    int epochs_done = 0;
    int processes = 1;
    double elapsed_seconds = 0;
  };
  MetricsLog(const std::string& path, int log_every, const std::optional<Resume>& resume);
  void on_step_end(const StepEvent& event) override;
  void on_evaluation(const EvalEvent& event) override;

 private:
  void write(const std::string& row);
  std::ofstream out_;
  int log_every_;
  double running_loss_ = 0;
  int running_count_ = 0;
};

// The per-epoch progress bar with loss, learning rate and samples/s.
class ProgressReport : public TrainCallback {
 public:
  ProgressReport(Logger& log, int epochs) : log_(log), epochs_(epochs) {}
  void on_epoch_begin(int epoch, std::int64_t steps) override;
  void on_step_end(const StepEvent& event) override;
  void on_epoch_end(int epoch, double samples_per_second) override;

 private:
  Logger& log_;
  int epochs_;
  std::unique_ptr<ProgressBar> bar_;
};

// train.profile_steps: an operator profile (core/train/profile.h) of the process's steps
// first_step .. first_step + steps - 1, each from on_step_begin to on_step_end (the batch in
// hand: the step itself and the weight average, not the wait for data), written as
// <run_dir>/profile.md and profile.json when the last one ends and summarised in the log. Runs
// on the main rank only (construct it there).
class StepProfile : public TrainCallback {
 public:
  StepProfile(std::string run_dir, std::int64_t first_step, int steps, Logger& log);
  void on_step_begin(std::int64_t step) override;
  void on_step_end(const StepEvent& event) override;

 private:
  std::string run_dir_;
  std::int64_t first_, last_;
  Logger& log_;
  OperatorProfiler profiler_;
};

// Every check_every steps (with several ranks): all ranks must hold bit-identical weights, else a
// DistError names the step and the first tensor that differs.
class ReplicaCheck : public TrainCallback {
 public:
  ReplicaCheck(dist::Communicator& comm, int check_every) : comm_(comm), every_(check_every) {}
  void on_model_ready(Replicas& replicas) override { replicas_ = &replicas; }
  void on_step_end(const StepEvent& event) override;

 private:
  dist::Communicator& comm_;
  int every_;
  Replicas* replicas_ = nullptr;
};

// Test hooks of `shopclip train` (core/train/trainer.h TrainOptions): one rank throws before a
// step (--inject-failure), or adds 0.25 to a tensor before the start-up broadcast or after a step
// (--inject-divergence).
class FaultInjection : public TrainCallback {
 public:
  struct Plan {
    int fail_rank = 0;
    std::int64_t fail_at_step = 0;  // 0 = never
    int diverge_rank = 0;
    std::int64_t diverge_at_step = -1;  // -1 = never, 0 = before the start-up broadcast
    std::string diverge_tensor;         // empty = every floating-point tensor
  };
  FaultInjection(Plan plan, int rank, Logger& log)
      : plan_(std::move(plan)), rank_(rank), log_(log) {}
  void on_model_ready(Replicas& replicas) override;
  void on_step_begin(std::int64_t step) override;
  void on_step_end(const StepEvent& event) override;

 private:
  void perturb();
  Plan plan_;
  int rank_;
  Logger& log_;
  Replicas* replicas_ = nullptr;
};

}  // namespace shopclip
