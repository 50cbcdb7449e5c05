#pragma once
// `shopclip train`: the training loop with evaluation, checkpoints, early stopping, resume and a
// wall-clock budget. Works through a dist::Communicator so the same loop runs as one process or
// as many ranks.
//
// Run directory (config.run.dir):
//   config.yaml          the resolved configuration
//   log.txt              everything logged, including every bad input row
//   bad_rows.jsonl       bad input rows (file, line, reason)
//   vocab.txt            the vocabulary
//   metrics.jsonl        {"type": "train", ...} every train.log_every steps, {"type": "eval", ...}
//   checkpoints/last.pt  the latest state (resume), epoch-NNNN.pt (the two latest epochs),
//                        best.pt (best valid MeanRecall)
//   predictions/<valid>.jsonl, eval/<valid>.json   the final evaluation (best checkpoint)
//   summary.json         what the run did and scored

#include <string>

#include <torch/optim/optimizer.h>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/log.h"
#include "core/eval/metrics.h"
#include "core/model/dual_encoder.h"
#include "dist/communicator.h"

namespace shopclip {

struct TrainOptions {
  bool resume = false;  // continue from <run.dir>/checkpoints/last.pt
  // Pause after this many optimizer steps of this process (0 = never): save last.pt and return
  // without evaluating, so a later --resume continues exactly where it stopped (time-sliced jobs).
  std::int64_t stop_after_steps = 0;
  // Fault injection for the failure tests: rank `fail_rank` throws before optimizer step
  // `fail_at_step` (global count, 1-based). fail_at_step 0 = never.
  int fail_rank = 0;
  std::int64_t fail_at_step = 0;
  // Divergence injection for the replica tests: rank `diverge_rank` adds 0.25 to tensor
  // `diverge_tensor` (a parameter or buffer name; empty = every floating-point one) after optimizer
  // step `diverge_at_step`, or, with 0, before the start-up broadcast (which must undo it).
  // -1 = never.
  int diverge_rank = 0;
  std::int64_t diverge_at_step = -1;
  std::string diverge_tensor;
};

struct TrainSummary {
  int epochs_done = 0;
  std::int64_t steps = 0;
  double train_seconds = 0;
  double samples_per_second = 0;
  std::string stop_reason;
  bool paused = false;  // stopped by stop_after_steps; no final evaluation
  int best_epoch = -1;
  RecallScores valid;  // final evaluation of the best checkpoint
};

// Model selection: records a valid MeanRecall of `epoch`; returns true when it is a new best
// (strictly better), else counts one more evaluation without improvement.
bool record_evaluation(TrainState& state, double mean_recall, int epoch);
// Early stopping: patience > 0 evaluations in a row without a new best.
bool patience_exhausted(const TrainState& state, int patience);

TrainSummary train(const Config& config, dist::Communicator& comm, const TrainOptions& options,
                   Logger& log);

}  // namespace shopclip
