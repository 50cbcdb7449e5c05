#pragma once
// AdamW with decoupled weight decay on weight matrices only, and the learning-rate schedule:
// linear warm-up from 0, then cosine decay to lr * min_lr_ratio.

#include <cstdint>
#include <memory>

#include <torch/optim/adamw.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"

namespace shopclip {

// Two parameter groups: [0] with weight decay (see uses_weight_decay), [1] without. Parameters
// that do not require gradients (a frozen tower) are left out.
std::unique_ptr<torch::optim::AdamW> make_adamw(DualEncoder& model, const TrainConfig& config);

// Learning rate for optimizer step `step` (0-based) of a schedule spanning total_steps.
double learning_rate_at(const TrainConfig& config, std::int64_t step, std::int64_t total_steps);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace shopclip
