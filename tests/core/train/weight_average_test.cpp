// The weight average of train.ema_decay: its warm-up, closed-form values after a few updates,
// what it averages, copies and leaves out, the exchange with the model, and loading.

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "core/train/weight_average.h"
#include "test_support.h"

namespace shopclip {
namespace {

// A module with a trainable parameter, a frozen one, a float buffer and an integer buffer.
struct Tiny : torch::nn::Module {
  Tiny() {
    weight = register_parameter("weight", torch::zeros({2}));
    frozen = register_parameter("frozen", torch::ones({1}), /*requires_grad=*/false);
    running = register_buffer("running", torch::zeros({2}));
    count = register_buffer("count", torch::zeros({}, torch::kLong));
  }
  torch::Tensor weight, frozen, running, count;
};

void set(torch::Tensor& tensor, double value) {
  torch::NoGradGuard no_grad;
  tensor.fill_(value);
}

TEST(WeightAverage, DecayWarmsUpToItsCeiling) {
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.999, 0), 0.1);    // (1 + 0) / (10 + 0)
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.999, 90), 0.91);  // 91 / 100
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.9, 90), 0.9);     // capped
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.9, 1000000), 0.9);
}

TEST(WeightAverage, FollowsTheClosedFormAndCopiesIntegerBuffers) {
  Tiny model;
  WeightAverage average(model, 0.5);
  const auto& tensors = average.tensors();
  EXPECT_EQ(tensors.count("weight"), 1u);
  EXPECT_EQ(tensors.count("running"), 1u);
  EXPECT_EQ(tensors.count("count"), 1u);
  EXPECT_EQ(tensors.count("frozen"), 0u) << "a frozen parameter never changes: not stored";

  // Update 0 (decay 0.1): 0.1 * 0 + 0.9 * 10 = 9; update 1 (decay 2/11): 2/11 * 9 + 9/11 * 20.
  set(model.weight, 10);
  set(model.running, 4);
  set(model.count, 3);
  average.update(0);
  EXPECT_TRUE(torch::allclose(tensors.at("weight"), torch::full({2}, 9.0)));
  EXPECT_TRUE(torch::allclose(tensors.at("running"), torch::full({2}, 3.6)));
  EXPECT_EQ(tensors.at("count").item<std::int64_t>(), 3);
  set(model.weight, 20);
  average.update(1);
  const double expected = 2.0 / 11 * 9 + 9.0 / 11 * 20;
  EXPECT_NEAR(tensors.at("weight")[0].item<double>(), expected, 1e-5);
  // Later updates use the ceiling 0.5.
  average.update(100);
  EXPECT_NEAR(tensors.at("weight")[0].item<double>(), 0.5 * expected + 0.5 * 20, 1e-5);
}

TEST(WeightAverage, SwapExchangesWithTheModelAndBack) {
  Tiny model;
  WeightAverage average(model, 0.5);
  set(model.weight, 8);
  average.update(0);  // average 7.2
  average.swap_with_model();
  EXPECT_NEAR(model.weight[0].item<double>(), 7.2, 1e-5);
  EXPECT_NEAR(average.tensors().at("weight")[0].item<double>(), 8.0, 1e-6);
  EXPECT_DOUBLE_EQ(model.frozen[0].item<double>(), 1.0);
  average.swap_with_model();
  EXPECT_DOUBLE_EQ(model.weight[0].item<double>(), 8.0);
  EXPECT_NEAR(average.tensors().at("weight")[0].item<double>(), 7.2, 1e-5);
}

TEST(WeightAverage, LoadRestoresAndRefusesWhatDoesNotFit) {
  Tiny model;
  WeightAverage average(model, 0.5);
  std::map<std::string, torch::Tensor> stored = {{"weight", torch::full({2}, 5.0)},
                                                 {"running", torch::full({2}, 6.0)},
                                                 {"count", torch::full({}, 2, torch::kLong)}};
  average.load(stored, "last.pt");
  EXPECT_DOUBLE_EQ(average.tensors().at("weight")[1].item<double>(), 5.0);
  EXPECT_DOUBLE_EQ(model.weight[1].item<double>(), 0.0) << "the model is not touched";

  stored["weight"] = torch::zeros({3});
  stored.erase("running");
  try {
    average.load(stored, "run/checkpoints/last.pt");
    ADD_FAILURE() << "a mis-shaped average was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(test_support::Contains(e.what(), "run/checkpoints/last.pt")) << e.what();
    EXPECT_TRUE(test_support::Contains(e.what(), "weight (wrong shape)")) << e.what();
    EXPECT_TRUE(test_support::Contains(e.what(), "running (missing)")) << e.what();
  }
  EXPECT_THROW(WeightAverage(model, 1.0), std::invalid_argument);
  EXPECT_THROW(WeightAverage(model, 0.0), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
