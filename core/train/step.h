#pragma once
// One optimisation step of the dual encoder on this rank's share of a global batch.
//
// Each rank encodes its own rows, all-gathers image and text embeddings with gradient
// (dist/autograd.h), computes its share of the loss (core/train/loss.h) and back-propagates; parameter
// gradients are then summed over ranks in buckets (dist/gradients.h). The result is exactly the
// gradient of the single-process loss on the global batch. With one process every collective is
// an identity and no reducer is installed.

#include <cstdint>
#include <memory>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "dist/communicator.h"
#include "dist/gradients.h"

namespace shopclip {

struct StepInputs {
  torch::Tensor images;    // float32 [b, 3, R, R], this rank's rows
  torch::Tensor tokens;    // int64 [b, L]
  torch::Tensor relevant;  // bool [B, B] over the global batch, or undefined (see ContrastiveBatch)
  std::int64_t step = 0;   // global optimizer step (starts the triplet loss at its step)
};

struct StepResult {
  double loss = 0;     // the global batch's loss (shares summed over ranks)
  double infonce = 0;  // its InfoNCE part (unweighted)
  double triplet = 0;  // its triplet part (unweighted; 0 while off)
};

class StepRunner {
 public:
  // model, optimizer and comm must outlive the runner. Installs gradient hooks when
  // comm.world_size() > 1.
  StepRunner(DualEncoder& model, torch::optim::Optimizer& optimizer, dist::Communicator& comm,
             const TrainConfig& config);
  ~StepRunner();

  // Zeroes gradients, runs forward and backward, sums gradients over ranks. Afterwards every
  // parameter's .grad holds the gradient of the global batch's loss, the same on every rank.
  StepResult forward_backward(const StepInputs& inputs);

  // forward_backward, then gradient clipping, an optimizer step at `lr` and the logit-scale cap.
  StepResult step(const StepInputs& inputs, double lr);

  // Seconds spent waiting for gradient communication after backward, since construction.
  double gradient_wait_seconds() const;

 private:
  DualEncoder& model_;
  torch::optim::Optimizer& optimizer_;
  dist::Communicator& comm_;
  TrainConfig config_;
  std::unique_ptr<dist::GradientReducer> reducer_;
};

}  // namespace shopclip
