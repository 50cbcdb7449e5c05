#include "core/model/batch_norm_relu.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "core/model/dual_encoder.h"

namespace shopclip {
namespace {

struct Outcome {
  torch::Tensor output, input_grad, weight_grad, bias_grad, running_mean, running_var;
  std::vector<std::int64_t> output_strides, input_grad_strides;
};

// relu(batch_norm(x)) in training mode and its gradients for the upstream gradient `upstream`,
// computed in `dtype` and x's layout: float64 takes ATen's kernels (the reference, always in the
// default layout), float32 the fused kernel.
Outcome run(const torch::Tensor& x, const torch::Tensor& upstream, const torch::Tensor& weight,
            const torch::Tensor& bias, torch::Dtype dtype) {
  auto leaf =
      (dtype == torch::kFloat64 ? x.contiguous() : x).to(dtype).detach().requires_grad_(true);
  auto w = weight.to(dtype).detach().requires_grad_(true);
  auto b = bias.to(dtype).detach().requires_grad_(true);
  const auto channels = x.size(1);
  auto running_mean = torch::full({channels}, 0.5, dtype);
  auto running_var = torch::full({channels}, 2.0, dtype);
  const auto output = batch_norm_relu_train(leaf, w, b, running_mean, running_var, 0.1, 1e-5);
  (output * upstream.to(dtype)).sum().backward();
  auto f64 = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat64); };
  return {f64(output),       f64(leaf.grad()), f64(w.grad()),          f64(b.grad()),
          f64(running_mean), f64(running_var), output.strides().vec(), leaf.grad().strides().vec()};
}

double relative_error(const torch::Tensor& actual, const torch::Tensor& expected) {
  return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item<double>();
}

// bias_offset shifts every channel's bias: a large one keeps the ReLU open everywhere.
void expect_matches_float64(const torch::Tensor& x, double tolerance, double bias_offset = 0) {
  SCOPED_TRACE(::testing::Message() << "input " << x.sizes());
  ASSERT_TRUE(batch_norm_relu_is_fused(x));
  const auto channels = x.size(1);
  const auto upstream = torch::randn(x.sizes());
  const auto weight = torch::rand({channels}) + 0.5;
  const auto bias = torch::randn({channels}) + bias_offset;
  const Outcome reference = run(x, upstream, weight, bias, torch::kFloat64);
  const Outcome fused = run(x, upstream, weight, bias, torch::kFloat32);
  EXPECT_LT(relative_error(fused.output, reference.output), tolerance) << "output";
  EXPECT_LT(relative_error(fused.input_grad, reference.input_grad), tolerance) << "input grad";
  EXPECT_LT(relative_error(fused.weight_grad, reference.weight_grad), tolerance) << "weight grad";
  EXPECT_LT(relative_error(fused.bias_grad, reference.bias_grad), tolerance) << "bias grad";
  EXPECT_LT(relative_error(fused.running_mean, reference.running_mean), tolerance)
      << "running mean";
  EXPECT_LT(relative_error(fused.running_var, reference.running_var), tolerance)
      << "running variance";
  // The output and the input's gradient keep the input's layout.
  EXPECT_EQ(fused.output_strides, x.strides().vec());
  EXPECT_EQ(fused.input_grad_strides, x.strides().vec());
  // The ReLU zeroed part of the output (its mask was exercised), unless the bias kept it open.
  EXPECT_EQ(fused.output.eq(0).sum().item<std::int64_t>() > 0, bias_offset == 0);
}

TEST(BatchNormRelu, MatchesFloat64ReferenceOnTowerShapes) {
  torch::manual_seed(3);
  expect_matches_float64(torch::randn({128, 16, 32, 32}) * 3 + 1, 1e-4);  // stage 1's planes
  expect_matches_float64(torch::randn({64, 32, 4, 4}), 1e-4);             // the last stage's
  expect_matches_float64(torch::randn({5, 3, 3, 7}), 1e-4);   // planes not a multiple of 8
  expect_matches_float64(torch::randn({40, 6, 1, 1}), 1e-4);  // one value per plane
}

TEST(BatchNormRelu, ChannelsLastMatchesFloat64ReferenceOnTowerShapes) {
  torch::manual_seed(6);
  const auto channels_last = [](const torch::Tensor& x) {
    return x.contiguous(torch::MemoryFormat::ChannelsLast);
  };
  expect_matches_float64(channels_last(torch::randn({128, 32, 32, 32}) * 3 + 1), 1e-4);
  expect_matches_float64(channels_last(torch::randn({64, 256, 4, 4})), 1e-4);  // the last stage
  // 6 channels: one vector of 4 lanes and two channels one by one, 7200 rows in blocks of 5461
  // (32768 / 6), the last one partly filled; 3 channels: no full vector, 3 blocks.
  expect_matches_float64(channels_last(torch::randn({8, 6, 30, 30})), 1e-4);
  expect_matches_float64(channels_last(torch::randn({64, 3, 20, 20})), 1e-4);
  // The variance of a channel whose mean dwarfs its spread, in this layout too.
  expect_matches_float64(channels_last(torch::randn({16, 8, 8, 8}) * 0.01 + 100), 1e-3, 10);
}

TEST(BatchNormRelu, VarianceIsExactWhenTheMeanDwarfsTheSpread) {
  // Sum-of-squares variance in float would lose every digit here (mean^2 / variance = 1e8); the
  // kernel centres its sums on an estimate of the mean. The bias keeps the ReLU open: near its
  // kink, float32's rounding of the input (1e-3 of the spread here) would flip single elements.
  torch::manual_seed(4);
  expect_matches_float64(torch::randn({32, 4, 8, 8}) * 0.01 + 100, 1e-3, 10);
}

TEST(BatchNormRelu, OnlyDenseFloatCpuInputsAreFused) {
  const auto x = torch::randn({4, 3, 5, 5});
  EXPECT_TRUE(batch_norm_relu_is_fused(x));
  EXPECT_TRUE(batch_norm_relu_is_fused(x.contiguous(torch::MemoryFormat::ChannelsLast)));
  EXPECT_FALSE(batch_norm_relu_is_fused(x.to(torch::kFloat64)));
  EXPECT_FALSE(batch_norm_relu_is_fused(x.transpose(2, 3)));
  EXPECT_FALSE(batch_norm_relu_is_fused(torch::randn({4, 3, 5})));
  EXPECT_FALSE(batch_norm_relu_is_fused(torch::randn({1, 3, 1, 1})));  // no batch statistics
}

TEST(BatchNormRelu, ModuleTakesTheFusedKernelOnlyInTraining) {
  torch::manual_seed(5);
  SyncBatchNorm2d fused_norm(8, nullptr), plain_norm(8, nullptr);
  {
    torch::NoGradGuard no_grad;
    for (auto* norm : {&fused_norm, &plain_norm}) {
      (*norm)->named_parameters()["weight"].copy_(torch::linspace(0.5, 1.5, 8));
      (*norm)->named_parameters()["bias"].copy_(torch::linspace(-0.5, 0.5, 8));
    }
  }
  const auto x = torch::randn({16, 8, 6, 6}) * 2 - 0.5;
  const auto upstream = torch::randn_like(x);
  auto fused_input = x.clone().requires_grad_(true), plain_input = x.clone().requires_grad_(true);
  const auto fused = fused_norm->forward_relu(fused_input);
  const auto plain = torch::relu(plain_norm(plain_input));
  // In training the module took the fused kernel (its autograd node), the reference did not.
  ASSERT_TRUE(fused.grad_fn() && plain.grad_fn());
  EXPECT_NE(fused.grad_fn()->name().find("BatchNormReluFunction"), std::string::npos)
      << fused.grad_fn()->name();
  EXPECT_EQ(plain.grad_fn()->name().find("BatchNormReluFunction"), std::string::npos);
  (fused * upstream).sum().backward();
  (plain * upstream).sum().backward();
  EXPECT_TRUE(torch::allclose(fused, plain, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(fused_input.grad(), plain_input.grad(), 1e-4, 1e-5));
  for (const char* name : {"weight", "bias"}) {
    EXPECT_TRUE(torch::allclose(fused_norm->named_parameters()[name].grad(),
                                plain_norm->named_parameters()[name].grad(), 1e-4, 1e-4))
        << name;
  }
  for (const char* name : {"running_mean", "running_var", "num_batches_tracked"}) {
    EXPECT_TRUE(torch::allclose(fused_norm->named_buffers()[name].to(torch::kFloat64),
                                plain_norm->named_buffers()[name].to(torch::kFloat64), 1e-5, 1e-6))
        << name;
  }
  EXPECT_EQ(fused_norm->named_buffers()["num_batches_tracked"].item<std::int64_t>(), 1);
  // Evaluation uses the running statistics: a batch of one image gives what the module's
  // running mean and variance say, not its own statistics.
  fused_norm->eval();
  const auto one = x.slice(0, 0, 1);
  const auto expected = torch::relu(torch::batch_norm(
      one, fused_norm->named_parameters()["weight"], fused_norm->named_parameters()["bias"],
      fused_norm->named_buffers()["running_mean"], fused_norm->named_buffers()["running_var"],
      false, 0.1, 1e-5, false));
  const auto evaluated = fused_norm->forward_relu(one.clone().requires_grad_(true));
  EXPECT_TRUE(torch::allclose(evaluated, expected, 1e-5, 1e-6));
  EXPECT_EQ(evaluated.grad_fn()->name().find("BatchNormReluFunction"), std::string::npos);
}

}  // namespace
}  // namespace shopclip
