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
// that do not require gradients (a frozen tower) are left out. A FusedAdamW (one pass per
// parameter on the CPU, AdamW's own state).
std::unique_ptr<torch::optim::AdamW> make_adamw(DualEncoder& model, const TrainConfig& config);

// The share of the schedule that warm-up may take at most under a time budget (train.max_minutes)
// when train.warmup_fraction is 0: a run the budget cuts short must still reach its peak rate and
// decay.
constexpr double kBudgetWarmupCap = 0.1;

// Warm-up steps of a schedule of total_steps: train.warmup_fraction of it when set, else
// train.warmup_steps, capped at kBudgetWarmupCap of it under a time budget. The trainer calls it
// again when it fits the schedule to the budget.
std::int64_t warmup_steps_for(const TrainConfig& config, std::int64_t total_steps);

// Learning rate for optimizer step `step` (0-based) of a schedule spanning total_steps: linear
// warm-up over `warmup` steps, then cosine decay to lr * min_lr_ratio at the last step.
double learning_rate_at(const TrainConfig& config, std::int64_t step, std::int64_t total_steps,
                        std::int64_t warmup);
// The same with warmup_steps_for(config, total_steps).
double learning_rate_at(const TrainConfig& config, std::int64_t step, std::int64_t total_steps);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace shopclip
