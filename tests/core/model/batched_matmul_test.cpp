#include "core/model/batched_matmul.h"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace shopclip {
namespace {

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected,
                  const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
      << what << ": largest difference " << (actual - expected).abs().max().item<double>();
}

// batched_matmul(a, b, alpha) against alpha * torch::matmul, through the direct path.
void expect_same_as_matmul(const torch::Tensor& a, const torch::Tensor& b, double alpha,
                           const std::string& what) {
  EXPECT_TRUE(batched_matmul_is_direct(a, b)) << what;
  const auto actual = batched_matmul(a, b, alpha);
  expect_close(actual, torch::matmul(a, b) * alpha, what + " forward");
  EXPECT_TRUE(actual.is_contiguous()) << what;
}

// Builds (a, b) from leaf tensors through `make`, runs both products with the same upstream
// gradient, and compares the leaves' gradients.
template <class Make>
void expect_same_gradients(Make make, std::vector<torch::Tensor> leaves, double alpha,
                           const std::string& what) {
  std::vector<torch::Tensor> reference, ours;
  for (const auto& leaf : leaves) {
    reference.push_back(leaf.detach().clone().requires_grad_(true));
    ours.push_back(leaf.detach().clone().requires_grad_(true));
  }
  const auto [ra, rb] = make(reference);
  const auto [oa, ob] = make(ours);
  expect_same_as_matmul(oa.detach(), ob.detach(), alpha, what);
  const auto expected = torch::matmul(ra, rb) * alpha;
  const auto actual = batched_matmul(oa, ob, alpha);
  const auto upstream = torch::randn_like(expected);
  (expected * upstream).sum().backward();
  (actual * upstream).sum().backward();
  for (std::size_t i = 0; i < leaves.size(); ++i)
    expect_close(ours[i].grad(), reference[i].grad(), what + " gradient " + std::to_string(i));
}

TEST(BatchedMatmul, ContiguousBatchesEqualMatmulWithTheScaleFoldedIn) {
  torch::manual_seed(1);
  expect_same_gradients([](std::vector<torch::Tensor>& t) { return std::make_pair(t[0], t[1]); },
                        {torch::randn({2, 3, 4, 5}), torch::randn({2, 3, 5, 6})}, 0.125,
                        "contiguous 4-D");
  expect_same_gradients([](std::vector<torch::Tensor>& t) { return std::make_pair(t[0], t[1]); },
                        {torch::randn({7, 1, 9}), torch::randn({7, 9, 1})}, 1.0,
                        "one row and one column");
  expect_same_gradients([](std::vector<torch::Tensor>& t) { return std::make_pair(t[0], t[1]); },
                        {torch::randn({3, 4, 1}), torch::randn({3, 1, 5})}, 2.0, "k = 1");
}

// Attention's operands: q, k and v are permuted views of one [B, L, 3, H, Dh] projection, k
// transposed; the probabilities times v. No copies are needed for any of them.
TEST(BatchedMatmul, AttentionViewsEqualMatmul) {
  torch::manual_seed(2);
  const std::int64_t batch = 5, length = 7, heads = 3, head_dim = 4;
  auto make_scores = [&](std::vector<torch::Tensor>& t) {
    auto qkv = t[0].view({batch, length, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
    return std::make_pair(qkv[0], qkv[1].transpose(-2, -1));
  };
  expect_same_gradients(make_scores, {torch::randn({batch, length, 3 * heads * head_dim})}, 0.5,
                        "q k^T");
  auto make_context = [&](std::vector<torch::Tensor>& t) {
    auto qkv = t[1].view({batch, length, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
    return std::make_pair(t[0].softmax(-1), qkv[2]);
  };
  expect_same_gradients(make_context,
                        {torch::randn({batch, heads, length, length}),
                         torch::randn({batch, length, 3 * heads * head_dim})},
                        1.0, "p v");
}

// Strides that fit no BLAS layout (every other column) are copied first; transposed batches
// (rows adjacent) are read as they are.
TEST(BatchedMatmul, AnyStridesGiveTheSameProduct) {
  torch::manual_seed(3);
  expect_same_gradients(
      [](std::vector<torch::Tensor>& t) {
        return std::make_pair(t[0].slice(2, 0, 10, 2), t[1].transpose(1, 2));
      },
      {torch::randn({4, 6, 10}), torch::randn({4, 8, 5})}, 1.0, "strided and transposed");
  expect_same_gradients(
      [](std::vector<torch::Tensor>& t) {
        return std::make_pair(t[0].expand({3, 4, 5}), t[1]);  // batch stride 0
      },
      {torch::randn({1, 4, 5}), torch::randn({3, 5, 2})}, 1.0, "expanded batch");
}

TEST(BatchedMatmul, OtherInputsFallBackToMatmul) {
  torch::manual_seed(4);
  const auto a64 = torch::randn({2, 3, 4}, torch::kFloat64),
             b64 = torch::randn({2, 4, 5}, torch::kFloat64);
  EXPECT_FALSE(batched_matmul_is_direct(a64, b64));
  EXPECT_TRUE(torch::allclose(batched_matmul(a64, b64, 3.0), torch::matmul(a64, b64) * 3.0));
  const auto a = torch::randn({2, 3, 4, 5}), broadcast = torch::randn({1, 3, 5, 6});
  EXPECT_FALSE(batched_matmul_is_direct(a, broadcast));
  EXPECT_TRUE(torch::allclose(batched_matmul(a, broadcast), torch::matmul(a, broadcast)));
  const auto m = torch::randn({3, 4}), n = torch::randn({4, 2});
  EXPECT_FALSE(batched_matmul_is_direct(m, n));
  EXPECT_TRUE(torch::allclose(batched_matmul(m, n), torch::matmul(m, n)));
  EXPECT_THROW(batched_matmul(torch::randn({2, 3, 4}), torch::randn({2, 5, 6})), c10::Error);
  // Without gradients too (evaluation).
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({6, 8, 3}), y = torch::randn({6, 3, 8});
  expect_close(batched_matmul(x, y), torch::matmul(x, y), "no grad");
}

}  // namespace
}  // namespace shopclip
