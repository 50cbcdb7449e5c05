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

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "dist/communicator.h"

namespace shopclip {

struct TrainOptions {
  bool resume = false;  // continue from <run.dir>/checkpoints/last.pt
};

struct TrainSummary {
  int epochs_done = 0;
  std::int64_t steps = 0;
  double train_seconds = 0;
  double samples_per_second = 0;
  std::string stop_reason;
  int best_epoch = -1;
  RecallScores valid;  // final evaluation of the best checkpoint
};

TrainSummary train(const Config& config, dist::Communicator& comm, const TrainOptions& options,
                   Logger& log);

}  // namespace shopclip
