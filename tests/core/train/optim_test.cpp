// Tests for the learning-rate schedule (linear warm-up, cosine decay to lr * min_lr_ratio at the
// last step) and the AdamW parameter groups (decay only on weight matrices).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>

#include <torch/torch.h>

#include "core/model/dual_encoder.h"
#include "core/train/fused_adamw.h"
#include "core/train/optim.h"
#include "test_support.h"

namespace shopclip {
namespace {

TrainConfig schedule_config() {
  TrainConfig config;
  config.lr = 1e-3;
  config.warmup_steps = 10;
  config.min_lr_ratio = 0.1;
  return config;
}

TEST(LearningRate, LinearWarmupReachesPeakAtItsLastStep) {
  const auto config = schedule_config();
  const std::int64_t total = 100;
  // Steps 0..9 rise by equal increments of lr / 10, the first step not at zero.
  for (std::int64_t step = 0; step < 10; ++step) {
    EXPECT_NEAR(learning_rate_at(config, step, total), 1e-3 * (step + 1) / 10, 1e-15) << step;
  }
  EXPECT_DOUBLE_EQ(learning_rate_at(config, 9, total), 1e-3);
  EXPECT_GT(learning_rate_at(config, 0, total), 0.0);
}

TEST(LearningRate, CosineDecaysToFloorAtLastStep) {
  const auto config = schedule_config();
  const std::int64_t total = 100;
  EXPECT_DOUBLE_EQ(learning_rate_at(config, 10, total), 1e-3);  // decay starts from the peak
  // The last optimizer step of the schedule (0-based) is at the floor.
  EXPECT_NEAR(learning_rate_at(config, total - 1, total), 1e-3 * 0.1, 1e-15);
  // Past the end (e.g. a partial last batch) it stays there.
  EXPECT_NEAR(learning_rate_at(config, total + 5, total), 1e-3 * 0.1, 1e-15);

  // The cosine shape: halfway through the decay the rate is halfway between peak and floor.
  // With warm-up 10 and 111 steps, decay runs over steps 10..110: the middle is step 60.
  const double peak = 1e-3, floor = 1e-4;
  EXPECT_NEAR(learning_rate_at(config, 60, 111), floor + (peak - floor) / 2, 1e-15);
  EXPECT_NEAR(learning_rate_at(config, 35, 111),
              floor + (peak - floor) * 0.5 * (1 + std::cos(M_PI / 4)), 1e-15);
  EXPECT_NEAR(learning_rate_at(config, 110, 111), floor, 1e-15);

  // min_lr_ratio 0: decays to zero.
  auto to_zero = config;
  to_zero.min_lr_ratio = 0;
  EXPECT_NEAR(learning_rate_at(to_zero, total - 1, total), 0.0, 1e-18);
}

TEST(LearningRate, MonotoneDecreasingAfterWarmup) {
  const auto config = schedule_config();
  const std::int64_t total = 100;
  for (std::int64_t step = 9; step + 1 < total; ++step) {
    EXPECT_LE(learning_rate_at(config, step + 1, total), learning_rate_at(config, step, total))
        << step;
  }
  for (std::int64_t step = 10; step + 1 < total; ++step) {
    EXPECT_LT(learning_rate_at(config, step + 1, total), learning_rate_at(config, step, total))
        << step;
  }
}

TEST(LearningRate, WithoutWarmupStartsAtPeak) {
  auto config = schedule_config();
  config.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(learning_rate_at(config, 0, 50), 1e-3);
  EXPECT_NEAR(learning_rate_at(config, 49, 50), 1e-4, 1e-15);
  for (std::int64_t step = 0; step + 1 < 50; ++step) {
    EXPECT_LT(learning_rate_at(config, step + 1, 50), learning_rate_at(config, step, 50));
  }
}

// ---- AdamW groups -----------------------------------------------------------------------------

using test_support::tiny_model_config;

TrainConfig adamw_config() {
  TrainConfig config;
  config.lr = 0.01;
  config.weight_decay = 0.2;
  config.beta1 = 0.8;
  config.beta2 = 0.95;
  config.eps = 1e-7;
  return config;
}

TEST(MakeAdamw, EachParameterInTheRightGroupExactlyOnce) {
  for (const auto type : {ImageTowerType::kCnn, ImageTowerType::kVit}) {
    DualEncoder model(tiny_model_config(type), 12, 0);
    const auto train = adamw_config();
    auto optimizer = make_adamw(model, train);
    auto& groups = optimizer->param_groups();
    ASSERT_EQ(groups.size(), 2u);

    std::map<const void*, int> group_of;  // tensor storage identity -> group
    for (int g = 0; g < 2; ++g) {
      for (const auto& p : groups[g].params()) {
        EXPECT_TRUE(group_of.emplace(p.unsafeGetTensorImpl(), g).second)
            << type << ": a parameter is listed twice";
      }
    }
    const auto named = model->named_parameters(true);
    EXPECT_EQ(group_of.size(), named.size()) << type << ": groups hold foreign tensors";
    int decayed = 0, plain = 0;
    for (const auto& item : named) {
      auto it = group_of.find(item.value().unsafeGetTensorImpl());
      ASSERT_NE(it, group_of.end()) << type << ": " << item.key() << " is in no group";
      EXPECT_EQ(it->second, uses_weight_decay(item.key(), item.value()) ? 0 : 1)
          << type << ": " << item.key();
      (it->second == 0 ? decayed : plain) += 1;
    }
    EXPECT_GT(decayed, 0);
    EXPECT_GT(plain, 0);

    for (int g = 0; g < 2; ++g) {
      const auto* adamw = dynamic_cast<const torch::optim::AdamWOptions*>(&groups[g].options());
      ASSERT_NE(adamw, nullptr) << "group " << g << " does not hold AdamW options";
      const auto& options = *adamw;
      EXPECT_DOUBLE_EQ(options.lr(), train.lr);
      EXPECT_DOUBLE_EQ(std::get<0>(options.betas()), train.beta1);
      EXPECT_DOUBLE_EQ(std::get<1>(options.betas()), train.beta2);
      EXPECT_DOUBLE_EQ(options.eps(), train.eps);
      EXPECT_DOUBLE_EQ(options.weight_decay(), g == 0 ? train.weight_decay : 0.0) << "group " << g;
    }
  }
}

TEST(MakeAdamw, WeightDecayShrinksOnlyDecayedParameters) {
  // With all-zero gradients Adam's update is zero, so what moves is the decoupled decay alone:
  // p <- p * (1 - lr * weight_decay) in group 0, nothing in group 1.
  DualEncoder model(tiny_model_config(ImageTowerType::kCnn), 12, 0);
  const auto train = adamw_config();
  auto optimizer = make_adamw(model, train);
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : model->named_parameters(true)) {
    before[item.key()] = item.value().detach().clone();
    item.value().mutable_grad() = torch::zeros_like(item.value());
  }
  optimizer->step();
  const double factor = 1 - train.lr * train.weight_decay;
  for (const auto& item : model->named_parameters(true)) {
    const auto expected = uses_weight_decay(item.key(), item.value()) ? before[item.key()] * factor
                                                                      : before[item.key()];
    EXPECT_TRUE(torch::allclose(item.value(), expected, 1e-6, 1e-7)) << item.key();
  }
}

TEST(SetLearningRate, ChangesBothGroups) {
  DualEncoder model(tiny_model_config(ImageTowerType::kCnn), 12, 0);
  auto optimizer = make_adamw(model, adamw_config());
  set_learning_rate(*optimizer, 0.123);
  for (auto& group : optimizer->param_groups())
    EXPECT_DOUBLE_EQ(group.options().get_lr(), 0.123);
  // Weight decay is left as it was.
  const auto* adamw =
      dynamic_cast<const torch::optim::AdamWOptions*>(&optimizer->param_groups()[0].options());
  ASSERT_NE(adamw, nullptr);
  EXPECT_DOUBLE_EQ(adamw->weight_decay(), 0.2);
}

TEST(WarmupSteps, StepsFractionOrTheBudgetCap) {
  TrainConfig config;
  config.warmup_steps = 200;
  EXPECT_EQ(warmup_steps_for(config, 73), 200);  // no budget: train.warmup_steps as given
  config.max_minutes = 3;
  EXPECT_EQ(warmup_steps_for(config, 73), 7);      // under a budget: at most 10% of the schedule
  EXPECT_EQ(warmup_steps_for(config, 5000), 200);  // ... and never more than warmup_steps
  config.warmup_fraction = 0.25;
  EXPECT_EQ(warmup_steps_for(config, 73), 18);  // a share of the schedule, budget or not
  config.max_minutes = 0;
  EXPECT_EQ(warmup_steps_for(config, 5000), 1250);
}

}  // namespace
}  // namespace shopclip

namespace shopclip {
namespace {

// Three parameters in two groups (decayed, not), one of them without a gradient in step 3.
struct AdamwProblem {
  std::vector<torch::Tensor> params;
  std::vector<torch::optim::OptimizerParamGroup> groups() const {
    auto options = [](double decay) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(3e-3).betas({0.9, 0.98}).eps(1e-6).weight_decay(decay));
    };
    std::vector<torch::optim::OptimizerParamGroup> out;
    out.emplace_back(std::vector<torch::Tensor>{params[0], params[1]}, options(0.2));
    out.emplace_back(std::vector<torch::Tensor>{params[2]}, options(0.0));
    return out;
  }
};

AdamwProblem adamw_problem(torch::Dtype dtype) {
  torch::manual_seed(11);
  AdamwProblem problem;
  for (auto shape : {std::vector<std::int64_t>{37, 53}, {1000}, {7}})
    problem.params.push_back(torch::randn(shape, dtype).requires_grad_(true));
  return problem;
}

// The AdamW state of parameter p (keyed by its TensorImpl: printed in LibTorch 1.13, the
// address itself later).
// (A template, so that the branch for the other key type is discarded.)
template <typename Optimizer>
const torch::optim::AdamWParamState& adamw_state(const Optimizer& optimizer,
                                                 const torch::Tensor& p) {
  using Key = typename std::decay_t<decltype(optimizer.state())>::key_type;
  Key key;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    key = text.str();
  } else {
    key = p.unsafeGetTensorImpl();
  }
  return static_cast<const torch::optim::AdamWParamState&>(*optimizer.state().at(key));
}

// Runs `steps` steps of `optimizer` on the problem with gradients drawn from a fixed seed.
void run_adamw(torch::optim::Optimizer& optimizer, AdamwProblem& problem, int steps) {
  torch::manual_seed(12);
  for (int step = 0; step < steps; ++step) {
    for (size_t i = 0; i < problem.params.size(); ++i) {
      auto& p = problem.params[i];
      const bool skipped = step == 2 && i == 1;
      p.mutable_grad() = skipped ? torch::Tensor() : torch::randn_like(p) * (1.0 + step);
    }
    optimizer.step();
  }
}

// The same problem under FusedAdamW and under LibTorch's AdamW, stepped with the same gradients.
struct FusedAndPlain {
  AdamwProblem fused_problem, plain_problem;
  FusedAdamW fused;
  torch::optim::AdamW plain;
  explicit FusedAndPlain(torch::Dtype dtype)
      : fused_problem(adamw_problem(dtype)),
        plain_problem(adamw_problem(dtype)),
        fused(fused_problem.groups(), torch::optim::AdamWOptions(1e-3)),
        plain(plain_problem.groups(), torch::optim::AdamWOptions(1e-3)) {}
  void run(int steps) {
    run_adamw(fused, fused_problem, steps);
    run_adamw(plain, plain_problem, steps);
  }
  void expect_same_parameters(double rtol, double atol) const {
    for (size_t i = 0; i < fused_problem.params.size(); ++i) {
      const auto& a = fused_problem.params[i];
      const auto& b = plain_problem.params[i];
      EXPECT_TRUE(torch::allclose(a, b, rtol, atol))
          << "parameter " << i << ": max difference " << (a - b).abs().max().item<double>();
    }
  }
};

TEST(FusedAdamw, MatchesAdamwStepByStep) {
  FusedAndPlain pair(torch::kFloat32);
  ASSERT_TRUE(pair.fused.fused());
  pair.run(6);
  pair.expect_same_parameters(1e-5, 1e-7);
  // The moments live in AdamW's own state, step counts included (parameter 1 skipped a step).
  ASSERT_EQ(pair.fused.state().size(), pair.plain.state().size());
  for (size_t i = 0; i < pair.fused_problem.params.size(); ++i) {
    const auto& actual = adamw_state(pair.fused, pair.fused_problem.params[i]);
    const auto& expected = adamw_state(pair.plain, pair.plain_problem.params[i]);
    EXPECT_EQ(actual.step(), expected.step()) << i;
    EXPECT_EQ(actual.step(), i == 1 ? 5 : 6) << i;
    EXPECT_TRUE(torch::allclose(actual.exp_avg(), expected.exp_avg(), 1e-5, 1e-7)) << i;
    EXPECT_TRUE(torch::allclose(actual.exp_avg_sq(), expected.exp_avg_sq(), 1e-5, 1e-9)) << i;
  }
}

TEST(FusedAdamw, StateLoadsIntoAdamw) {
  FusedAndPlain pair(torch::kFloat32);
  run_adamw(pair.fused, pair.fused_problem, 3);
  // A checkpoint written by the fused optimizer, read by a plain AdamW on the same parameters.
  const std::string path = ::testing::TempDir() + "fused_adamw_state.pt";
  torch::save(pair.fused, path);
  for (size_t i = 0; i < pair.plain_problem.params.size(); ++i) {
    torch::NoGradGuard no_grad;
    pair.plain_problem.params[i].copy_(pair.fused_problem.params[i]);
  }
  torch::load(pair.plain, path);
  std::remove(path.c_str());
  pair.run(2);
  pair.expect_same_parameters(1e-5, 1e-7);
}

TEST(FusedAdamw, OtherTypesTakeAdamwsOwnStep) {
  FusedAndPlain pair(torch::kFloat64);
  EXPECT_FALSE(pair.fused.fused());
  pair.run(4);
  pair.expect_same_parameters(0, 0);  // the same code: equal
}

}  // namespace
}  // namespace shopclip
