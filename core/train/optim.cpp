#include "core/train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/train/fused_adamw.h"

namespace shopclip {

std::unique_ptr<torch::optim::AdamW> make_adamw(DualEncoder& model, const TrainConfig& config) {
  std::vector<torch::Tensor> decayed, plain;
  for (const auto& item : model->named_parameters(true)) {
    if (!item.value().requires_grad()) continue;  // a frozen tower
    (uses_weight_decay(item.key(), item.value()) ? decayed : plain).push_back(item.value());
  }
  auto options = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(config.lr)
                                                            .betas({config.beta1, config.beta2})
                                                            .eps(config.eps)
                                                            .weight_decay(weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, options(config.weight_decay));
  groups.emplace_back(plain, options(0.0));
  return std::make_unique<FusedAdamW>(groups, torch::optim::AdamWOptions(config.lr));
}

std::int64_t warmup_steps_for(const TrainConfig& config, std::int64_t total_steps) {
  if (config.warmup_fraction > 0) {
    return std::llround(config.warmup_fraction * static_cast<double>(total_steps));
  }
  if (config.max_minutes <= 0) return config.warmup_steps;
  return std::min<std::int64_t>(config.warmup_steps,
                                std::llround(kBudgetWarmupCap * static_cast<double>(total_steps)));
}

double learning_rate_at(const TrainConfig& config, std::int64_t step, std::int64_t total_steps,
                        std::int64_t warmup) {
  const double peak = config.lr;
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  // Steps are 0-based, so the last one is total_steps - 1: it must get progress 1 (the floor).
  const std::int64_t decay_steps = std::max<std::int64_t>(1, total_steps - 1 - warmup);
  const double progress = std::clamp(static_cast<double>(step - warmup) / decay_steps, 0.0, 1.0);
  const double floor = peak * config.min_lr_ratio;
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double learning_rate_at(const TrainConfig& config, std::int64_t step, std::int64_t total_steps) {
  return learning_rate_at(config, step, total_steps, warmup_steps_for(config, total_steps));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  // OptimizerOptions::set_lr is virtual: every optimizer's options take it, no cast needed.
  for (auto& group : optimizer.param_groups())
    group.options().set_lr(lr);
}

}  // namespace shopclip
