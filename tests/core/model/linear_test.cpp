#include "core/model/linear.h"

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/model/autocast.h"
#include "core/model/dual_encoder.h"
#include "core/train/profile.h"
#include "test_support.h"

namespace shopclip {
namespace {

// Restores the process-wide library after each test.
class LinearTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = cpu_gemm(); }
  void TearDown() override { set_cpu_gemm(saved_); }

 private:
  CpuGemm saved_ = CpuGemm::kOpenBlas;
};

// Largest absolute difference relative to the reference's largest element.
double relative_error(const torch::Tensor& actual, const torch::Tensor& reference) {
  const auto scale = reference.abs().max().item<double>();
  return (actual.to(torch::kFloat64) - reference).abs().max().item<double>() /
         std::max(scale, 1e-30);
}

struct Gradients {
  torch::Tensor y, dx, dw, db;
};

// linear() on float32 copies of the leaves and the same upstream gradient; with `reference`,
// at::linear in float64 instead.
Gradients run(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
              const torch::Tensor& upstream, bool transpose_x, bool reference) {
  const auto type = reference ? torch::kFloat64 : torch::kFloat32;
  auto xl = x.to(type).detach().requires_grad_(true);
  auto wl = w.to(type).detach().requires_grad_(true);
  auto bl = b.defined() ? b.to(type).detach().requires_grad_(true) : torch::Tensor();
  // A transposed view: the input is not contiguous in its last two dimensions.
  const auto input = transpose_x ? xl.transpose(0, 1) : xl;
  const auto y = reference ? at::linear(input, wl, bl) : linear(input, wl, bl);
  (y * upstream.to(type)).sum().backward();
  return {y.detach(), xl.grad(), wl.grad(), bl.defined() ? bl.grad() : torch::Tensor()};
}

void expect_matches_float64(bool with_bias, bool transpose_x, const std::string& what) {
  torch::manual_seed(3);
  const auto x = torch::randn({transpose_x ? 7 : 4, transpose_x ? 4 : 7, 24}, torch::kFloat64);
  const auto w = torch::randn({16, 24}, torch::kFloat64);
  const auto b = with_bias ? torch::randn({16}, torch::kFloat64) : torch::Tensor();
  const auto upstream = torch::randn({4, 7, 16}, torch::kFloat64);
  const auto ours = run(x, w, b, upstream, transpose_x, false);
  const auto expected = run(x, w, b, upstream, transpose_x, true);
  EXPECT_EQ(ours.y.sizes(), expected.y.sizes()) << what;
  EXPECT_LT(relative_error(ours.y, expected.y), 1e-5) << what << " output";
  EXPECT_LT(relative_error(ours.dx, expected.dx), 1e-5) << what << " input gradient";
  EXPECT_LT(relative_error(ours.dw, expected.dw), 1e-5) << what << " weight gradient";
  if (with_bias) {
    EXPECT_LT(relative_error(ours.db, expected.db), 1e-5) << what << " bias gradient";
  }
}

// The operators `work` ran, by name, with their call counts.
template <class Work>
std::map<std::string, std::int64_t> operator_calls(Work work) {
  OperatorProfiler profiler;
  profiler.start();
  work();
  profiler.stop();
  std::map<std::string, std::int64_t> calls;
  for (const auto& op : profiler.result(1).operators)
    calls[op.name] = op.calls;
  return calls;
}

TEST_F(LinearTest, OneDnnMatchesFloat64ReferenceWithAndWithoutBias) {
  if (!onednn_gemm_available()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  set_cpu_gemm(CpuGemm::kOneDnn);
  ASSERT_EQ(cpu_gemm(), CpuGemm::kOneDnn);
  expect_matches_float64(true, false, "bias, contiguous input");
  expect_matches_float64(false, false, "no bias");
  expect_matches_float64(true, true, "bias, transposed input");
}

TEST_F(LinearTest, OneRowLeavesTheBiasAlone) {
  if (!onednn_gemm_available()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  set_cpu_gemm(CpuGemm::kOneDnn);
  const auto x = torch::randn({1, 8}), w = torch::randn({3, 8}), b = torch::randn({3});
  const auto bias_before = b.clone();
  const auto expected = torch::addmm(b, x, w.t());
  for (int call = 0; call < 2; ++call) {  // a changed bias would change the second result
    EXPECT_TRUE(torch::allclose(linear(x, w, b), expected, 1e-5, 1e-5)) << "call " << call;
    EXPECT_TRUE(torch::equal(b, bias_before)) << "call " << call;
  }
}

TEST_F(LinearTest, OpenBlasMatchesFloat64Reference) {
  set_cpu_gemm(CpuGemm::kOpenBlas);
  expect_matches_float64(true, false, "bias");
  expect_matches_float64(false, true, "no bias, transposed input");
}

TEST_F(LinearTest, EachLibraryComputesTheProductsItIsChosenFor) {
  if (!onednn_gemm_available()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  auto x = torch::randn({6, 5, 8}, torch::requires_grad());
  auto w = torch::randn({3, 8}, torch::requires_grad());
  auto b = torch::randn({3}, torch::requires_grad());
  const auto forward_backward = [&] { linear(x, w, b).sum().backward(); };
  set_cpu_gemm(CpuGemm::kOneDnn);
  auto calls = operator_calls(forward_backward);
  // Forward, input gradient, weight gradient; no LibTorch product.
  EXPECT_EQ(calls["shopclip::onednn_sgemm"], 3);
  EXPECT_EQ(calls["aten::mm"] + calls["aten::addmm"], 0);

  set_cpu_gemm(CpuGemm::kOpenBlas);
  calls = operator_calls(forward_backward);
  EXPECT_EQ(calls.count("shopclip::onednn_sgemm"), 0u);
  EXPECT_GE(calls["aten::mm"] + calls["aten::addmm"], 3);
}

TEST_F(LinearTest, OnlyTheGradientsAskedForAreComputed) {
  if (!onednn_gemm_available()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  set_cpu_gemm(CpuGemm::kOneDnn);
  const auto x = torch::randn({5, 8});  // no gradient wanted: the first layer on the data
  auto w = torch::randn({3, 8}, torch::requires_grad());
  auto calls = operator_calls([&] { linear(x, w, torch::Tensor()).sum().backward(); });
  EXPECT_EQ(calls["shopclip::onednn_sgemm"], 2);  // forward and weight gradient
  EXPECT_LT(relative_error(w.grad(), torch::ones({5, 1}).expand({5, 3}).t().mm(x)), 1e-6);
}

TEST_F(LinearTest, OtherTypesAndAutocastTakeLibTorchsLinear) {
  if (!onednn_gemm_available()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  set_cpu_gemm(CpuGemm::kOneDnn);
  const auto x = torch::randn({4, 8}, torch::kFloat64);
  const auto w = torch::randn({3, 8}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(linear(x, w, torch::Tensor()), x.mm(w.t())));
  // Under CPU autocast at::linear computes in bfloat16; the oneDNN path would return float32.
  set_cpu_autocast_enabled(true);
  const auto autocast = linear(torch::randn({4, 8}), torch::randn({3, 8}), torch::randn({3}));
  set_cpu_autocast_enabled(false);
  at::autocast::clear_cache();
  EXPECT_EQ(autocast.scalar_type(), cpu_autocast_dtype());
  // A shape at::linear rejects is reported by at::linear.
  EXPECT_THROW(linear(torch::randn({4, 7}), torch::randn({3, 8}), torch::Tensor()), c10::Error);
}

// The text tower's embeddings and every parameter's gradient with `gemm`, in float32 (or, with
// `float64`, the same model converted: LibTorch's own layers, the reference).
struct TowerResult {
  torch::Tensor embeddings;
  std::vector<torch::Tensor> gradients;
};

TowerResult text_tower_pass(CpuGemm gemm, bool float64) {
  set_cpu_gemm(gemm);
  torch::manual_seed(5);
  DualEncoder model(test_support::tiny_model_config(ImageTowerType::kCnn), 50, 0);
  if (float64) model->to(torch::kFloat64);
  torch::manual_seed(6);
  const auto tokens = torch::randint(1, 50, {6, 8}, torch::kInt64);
  const auto e = model->encode_text(tokens);
  // Not |e|^2: the embeddings are unit vectors, so its gradient would be rounding noise.
  const auto upstream = torch::randn({e.size(0), e.size(1)}, torch::kFloat64).to(e.scalar_type());
  (e * upstream).sum().backward();
  TowerResult result{e.detach().to(torch::kFloat64), {}};
  for (const auto& p : model->parameters())
    result.gradients.push_back(p.grad().defined() ? p.grad().to(torch::kFloat64) : torch::Tensor());
  return result;
}

TEST_F(LinearTest, TextTowerMatchesFloat64OnBothLibraries) {
  if (!onednn_gemm_available()) GTEST_SKIP() << "this build has no oneDNN (libdnnl-dev)";
  const auto reference = text_tower_pass(CpuGemm::kOpenBlas, true);
  for (const CpuGemm gemm : {CpuGemm::kOpenBlas, CpuGemm::kOneDnn}) {
    const auto ours = text_tower_pass(gemm, false);
    EXPECT_LT(relative_error(ours.embeddings, reference.embeddings), 1e-5) << cpu_gemm_name(gemm);
    std::size_t compared = 0;
    for (std::size_t i = 0; i < ours.gradients.size(); ++i) {
      ASSERT_EQ(ours.gradients[i].defined(), reference.gradients[i].defined()) << i;
      if (!ours.gradients[i].defined()) continue;
      EXPECT_LT(relative_error(ours.gradients[i], reference.gradients[i]), 1e-4)
          << cpu_gemm_name(gemm) << " parameter " << i;
      ++compared;
    }
    EXPECT_GT(compared, 8u);  // the text tower's layers, not only the projection
  }
}

TEST_F(LinearTest, ChoicesParseAndBadOnesNameTheirSource) {
  EXPECT_EQ(parse_cpu_gemm("auto", "k"), CpuGemm::kAuto);
  EXPECT_EQ(parse_cpu_gemm("openblas", "k"), CpuGemm::kOpenBlas);
  EXPECT_EQ(parse_cpu_gemm("onednn", "k"), CpuGemm::kOneDnn);
  for (const CpuGemm gemm : {CpuGemm::kAuto, CpuGemm::kOpenBlas, CpuGemm::kOneDnn})
    EXPECT_EQ(parse_cpu_gemm(cpu_gemm_name(gemm), "k"), gemm);
  try {
    parse_cpu_gemm("mkl", "SHOPCLIP_CPU_GEMM");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("SHOPCLIP_CPU_GEMM"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mkl"), std::string::npos) << e.what();
  }
  // auto resolves to one library at once.
  set_cpu_gemm(CpuGemm::kAuto);
  EXPECT_NE(cpu_gemm(), CpuGemm::kAuto);
  if (!onednn_gemm_available()) {
    EXPECT_EQ(cpu_gemm(), CpuGemm::kOpenBlas);
    EXPECT_THROW(set_cpu_gemm(CpuGemm::kOneDnn), std::runtime_error);
  }
}

TEST_F(LinearTest, MatrixProductOfEitherLibraryEqualsTorchMm) {
  torch::manual_seed(7);
  const auto a = torch::randn({40, 30}).t();  // transposed: copied to contiguous first
  const auto b = torch::randn({40, 20});
  const auto expected = torch::mm(a.to(torch::kFloat64), b.to(torch::kFloat64));
  EXPECT_LT(relative_error(cpu_matrix_product(a, b, CpuGemm::kOpenBlas), expected), 1e-5);
  if (onednn_gemm_available()) {
    EXPECT_LT(relative_error(cpu_matrix_product(a, b, CpuGemm::kOneDnn), expected), 1e-5);
  }
  EXPECT_THROW(cpu_matrix_product(a, b, CpuGemm::kAuto), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
