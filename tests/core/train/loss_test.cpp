// Tests for the contrastive losses. The reference InfoNCE is written out here with explicit loops
// in double precision (a log-sum-exp per row and per column) so that it shares no code path with
// the tensor implementation under test.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <torch/torch.h>

#include "core/train/loss.h"

namespace shopclip {
namespace {

torch::Tensor random_unit_rows(std::int64_t rows, std::int64_t dim, torch::Dtype dtype) {
  auto x = torch::randn({rows, dim}, torch::kDouble);
  return (x / x.norm(2, 1, true)).to(dtype);
}

// Symmetric InfoNCE by hand. ignore may be undefined; its diagonal is never applied.
double reference_info_nce(const torch::Tensor& image, const torch::Tensor& text, double scale,
                          const torch::Tensor& ignore) {
  const auto img = image.to(torch::kDouble).contiguous();
  const auto txt = text.to(torch::kDouble).contiguous();
  const std::int64_t n = img.size(0), d = img.size(1);
  auto ia = img.accessor<double, 2>();
  auto ta = txt.accessor<double, 2>();
  std::vector<std::vector<double>> logits(n, std::vector<double>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::int64_t k = 0; k < d; ++k)
        dot += ia[i][k] * ta[j][k];
      logits[i][j] = scale * dot;
    }
  }
  auto excluded = [&](std::int64_t i, std::int64_t j) {
    return i != j && ignore.defined() && ignore[i][j].item<bool>();
  };
  double rows = 0, columns = 0;
  for (std::int64_t i = 0; i < n; ++i) {  // image i against every text
    double sum = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      if (!excluded(i, j)) sum += std::exp(logits[i][j]);
    }
    rows += std::log(sum) - logits[i][i];
  }
  for (std::int64_t j = 0; j < n; ++j) {  // text j against every image
    double sum = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!excluded(i, j)) sum += std::exp(logits[i][j]);
    }
    columns += std::log(sum) - logits[j][j];
  }
  return (rows / n + columns / n) / 2;
}

TEST(InfoNce, MatchesHandComputedValue) {
  torch::manual_seed(1);
  const auto image = random_unit_rows(6, 5, torch::kFloat);
  const auto text = random_unit_rows(6, 5, torch::kFloat);
  const double scale = 7.5;
  const auto loss = info_nce_loss(image, text, torch::tensor(scale, torch::kFloat), {});
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item<double>(), reference_info_nce(image, text, scale, {}), 1e-5);
}

TEST(InfoNce, DoublePrecisionMatchesTightly) {
  torch::manual_seed(2);
  const auto image = random_unit_rows(5, 4, torch::kDouble);
  const auto text = random_unit_rows(5, 4, torch::kDouble);
  for (double scale : {1.0, 14.285714285714286, 100.0}) {
    const auto loss = info_nce_loss(image, text, torch::tensor(scale, torch::kDouble), {});
    EXPECT_NEAR(loss.item<double>(), reference_info_nce(image, text, scale, {}), 1e-10)
        << "scale " << scale;
  }
}

TEST(InfoNce, IgnoreMaskRemovesNegativesFromBothDirections) {
  torch::manual_seed(4);
  const auto image = random_unit_rows(5, 6, torch::kDouble);
  const auto text = random_unit_rows(5, 6, torch::kDouble);
  const double scale = 10.0;
  auto ignore = torch::zeros({5, 5}, torch::kBool);
  ignore[0][2] = true;  // asymmetric on purpose: only (0, 2), not (2, 0)
  ignore[3][1] = true;
  ignore[1][3] = true;
  const auto masked = info_nce_loss(image, text, torch::tensor(scale, torch::kDouble), ignore);
  EXPECT_NEAR(masked.item<double>(), reference_info_nce(image, text, scale, ignore), 1e-10);
  // Removing negatives changes the loss, so the mask was applied at all.
  const auto plain = info_nce_loss(image, text, torch::tensor(scale, torch::kDouble), {});
  EXPECT_GT(std::abs(plain.item<double>() - masked.item<double>()), 1e-6);

  // A mask with the diagonal set gives the same loss: the positive pair is never ignored.
  auto with_diagonal = ignore.clone();
  with_diagonal.fill_diagonal_(true);
  const auto same = info_nce_loss(image, text, torch::tensor(scale, torch::kDouble), with_diagonal);
  EXPECT_NEAR(same.item<double>(), masked.item<double>(), 1e-12);
  EXPECT_TRUE(std::isfinite(same.item<double>()));
}

TEST(InfoNce, EverythingIgnoredLeavesOnlyPositivesAndZeroLoss) {
  torch::manual_seed(5);
  const auto image = random_unit_rows(4, 3, torch::kDouble);
  const auto text = random_unit_rows(4, 3, torch::kDouble);
  const auto ignore = torch::ones({4, 4}, torch::kBool);
  const auto loss = info_nce_loss(image, text, torch::tensor(3.0, torch::kDouble), ignore);
  EXPECT_NEAR(loss.item<double>(), 0.0, 1e-12);
}

TEST(InfoNce, GradientMatchesFiniteDifferences) {
  torch::manual_seed(6);
  const std::int64_t n = 4, d = 3;
  // Not unit-norm on purpose: the loss is a function of arbitrary embeddings and its gradient
  // must be right in every direction, not only along the sphere.
  auto image = torch::randn({n, d}, torch::kDouble).requires_grad_(true);
  auto text = torch::randn({n, d}, torch::kDouble).requires_grad_(true);
  auto scale = torch::tensor(4.0, torch::kDouble).requires_grad_(true);
  auto ignore = torch::zeros({n, n}, torch::kBool);
  ignore[0][1] = true;
  ignore[2][3] = true;

  info_nce_loss(image, text, scale, ignore).backward();
  const double h = 1e-6;
  auto loss_at = [&](const torch::Tensor& img, const torch::Tensor& txt, const torch::Tensor& s) {
    return info_nce_loss(img, txt, s, ignore).item<double>();
  };
  torch::NoGradGuard no_grad;
  for (auto* tensor : {&image, &text}) {
    const auto analytic = tensor->grad().clone();
    ASSERT_TRUE(analytic.defined());
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t k = 0; k < d; ++k) {
        auto plus = tensor->detach().clone(), minus = tensor->detach().clone();
        plus[i][k] += h;
        minus[i][k] -= h;
        const bool is_image = tensor == &image;
        const double numeric =
            ((is_image ? loss_at(plus, text, scale) : loss_at(image, plus, scale)) -
             (is_image ? loss_at(minus, text, scale) : loss_at(image, minus, scale))) /
            (2 * h);
        EXPECT_NEAR(analytic[i][k].item<double>(), numeric, 1e-7)
            << (is_image ? "image" : "text") << "[" << i << "][" << k << "]";
      }
    }
  }
  const double numeric_scale =
      (loss_at(image, text, scale + h) - loss_at(image, text, scale - h)) / (2 * h);
  EXPECT_NEAR(scale.grad().item<double>(), numeric_scale, 1e-7);
}

TEST(InfoNce, GradientFlowsThroughFloatInputs) {
  torch::manual_seed(7);
  auto image = random_unit_rows(3, 4, torch::kFloat).requires_grad_(true);
  auto text = random_unit_rows(3, 4, torch::kFloat).requires_grad_(true);
  info_nce_loss(image, text, torch::tensor(10.0f), {}).backward();
  ASSERT_TRUE(image.grad().defined());
  ASSERT_TRUE(text.grad().defined());
  EXPECT_GT(image.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(text.grad().abs().sum().item<double>(), 0.0);
}

TEST(InfoNce, RejectsMismatchedSizes) {
  const auto scale = torch::tensor(1.0f);
  const auto a = torch::randn({4, 8}), b = torch::randn({3, 8}), c = torch::randn({4, 6});
  EXPECT_THROW(info_nce_loss(a, b, scale, {}), c10::Error);
  EXPECT_THROW(info_nce_loss(a, c, scale, {}), c10::Error);
  EXPECT_THROW(info_nce_loss(torch::randn({8}), torch::randn({8}), scale, {}), c10::Error);
  EXPECT_THROW(info_nce_loss(a, a, scale, torch::zeros({3, 3}, torch::kBool)), c10::Error);
  try {
    info_nce_loss(a, b, scale, {});
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("contrastive loss"), std::string::npos) << e.what();
  }
}

// ---- shared_id_mask ---------------------------------------------------------------------------

TEST(SharedIdMask, MarksPairsSharingTextOrImageIds) {
  // Rows 0 and 2 share text 1; rows 1 and 3 share image 11; row 4 shares nothing.
  const std::vector<std::int64_t> text_ids = {1, 2, 1, 3, 4};
  const std::vector<std::int64_t> image_ids = {10, 11, 12, 11, 13};
  const auto mask = shared_id_mask(text_ids, image_ids);
  ASSERT_EQ(mask.sizes(), (std::vector<std::int64_t>{5, 5}));
  EXPECT_EQ(mask.scalar_type(), torch::kBool);
  EXPECT_TRUE(mask.device().is_cpu());
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 5; ++j) {
      const bool expected = i != j && ((i % 2 == 0 && j % 2 == 0 && i < 4 && j < 4) ||  // {0, 2}
                                       ((i == 1 || i == 3) && (j == 1 || j == 3)));     // {1, 3}
      EXPECT_EQ(mask[i][j].item<bool>(), expected) << i << "," << j;
    }
  }
}

TEST(SharedIdMask, DiagonalIsNeverSetAndAllSharedFillsTheRest) {
  const auto mask = shared_id_mask({7, 7, 7}, {1, 2, 3});
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j)
      EXPECT_EQ(mask[i][j].item<bool>(), i != j);
  }
  EXPECT_EQ(shared_id_mask({}, {}).numel(), 0);
}

TEST(SharedIdMask, RejectsMismatchedLengths) {
  EXPECT_THROW(shared_id_mask({1, 2}, {1}), std::invalid_argument);
}

TEST(SharedIdMask, DuplicatePairsAreNotNegativesOfEachOther) {
  // The same (text, image) pair twice in a batch: with the mask the duplicate is not pushed
  // away, so the loss equals that of the batch where the duplicate's logits are removed.
  torch::manual_seed(8);
  auto image = random_unit_rows(3, 4, torch::kDouble);
  auto text = random_unit_rows(3, 4, torch::kDouble);
  image[2] = image[0];
  text[2] = text[0];
  const auto mask = shared_id_mask({5, 6, 5}, {50, 60, 50});
  const double loss =
      info_nce_loss(image, text, torch::tensor(6.0, torch::kDouble), mask).item<double>();
  EXPECT_NEAR(loss, reference_info_nce(image, text, 6.0, mask), 1e-10);
}

}  // namespace
}  // namespace shopclip

// ---- shares of a global batch (the distributed decomposition, within one process) ------------

namespace shopclip {
namespace {

torch::Tensor unit_rows(std::int64_t rows, std::int64_t dims, std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::functional::normalize(torch::randn({rows, dims}, torch::kFloat64),
                                          torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// Splits a global batch of 12 rows into `ranks` equal shares; sum of the shares' losses and of
// their gradients must equal the whole batch's.
void expect_shares_sum_to_whole(int ranks, bool full_mode, bool triplet) {
  const std::int64_t rows = 12, dims = 5;
  auto images = unit_rows(rows, dims, 1).requires_grad_(true);
  auto texts = unit_rows(rows, dims, 2).requires_grad_(true);
  auto relevant = torch::zeros({rows, rows}, torch::kBool);
  relevant[0][3] = true;  // text 3 also answers image 0
  relevant[7][2] = true;
  const auto scale = torch::tensor(10.0, torch::kFloat64);

  auto loss_of = [&](const ContrastiveBatch& batch, int world) {
    if (triplet) return hardest_negative_triplet(batch, 0.3);
    return full_mode ? info_nce_full(batch, scale, world) : info_nce_local(batch, scale);
  };
  const auto whole = loss_of(ContrastiveBatch::whole(images, texts, relevant), 1);
  const auto whole_grads = torch::autograd::grad({whole}, {images, texts});

  torch::Tensor total = torch::zeros({}, torch::kFloat64);
  const std::int64_t b = rows / ranks;
  for (int r = 0; r < ranks; ++r) {
    ContrastiveBatch share{
        images.narrow(0, r * b, b), texts.narrow(0, r * b, b), images, texts, r * b, relevant, {}};
    total = total + loss_of(share, ranks);
  }
  const auto share_grads = torch::autograd::grad({total}, {images, texts});
  EXPECT_NEAR(total.item<double>(), whole.item<double>(), 1e-12);
  EXPECT_TRUE(torch::allclose(share_grads[0], whole_grads[0], 1e-10, 1e-12));
  EXPECT_TRUE(torch::allclose(share_grads[1], whole_grads[1], 1e-10, 1e-12));
}

TEST(ContrastiveShares, LocalModeSharesSumToTheWholeBatch) {
  for (int ranks : {1, 2, 3, 4})
    expect_shares_sum_to_whole(ranks, false, false);
}

TEST(ContrastiveShares, FullModeSharesSumToTheWholeBatch) {
  for (int ranks : {1, 2, 4})
    expect_shares_sum_to_whole(ranks, true, false);
}

TEST(ContrastiveShares, TripletSharesSumToTheWholeBatch) {
  for (int ranks : {1, 2, 4})
    expect_shares_sum_to_whole(ranks, false, true);
}

TEST(HardestNegativeTriplet, MatchesAHandComputation) {
  // Three pairs in 2-D; cosine similarities are dot products of unit vectors.
  auto images = torch::tensor({{1.0, 0.0}, {0.0, 1.0}, {0.6, 0.8}}, torch::kFloat64);
  auto texts = torch::tensor({{0.8, 0.6}, {0.0, 1.0}, {1.0, 0.0}}, torch::kFloat64);
  const double margin = 0.2;
  const auto s = torch::matmul(images, texts.t());  // s[i][j] = image i . text j
  double expected = 0;
  for (int i = 0; i < 3; ++i) {
    double hardest_text = -1e9, hardest_image = -1e9;
    for (int j = 0; j < 3; ++j) {
      if (j == i) continue;
      hardest_text = std::max(hardest_text, s[i][j].item<double>());
      hardest_image = std::max(hardest_image, s[j][i].item<double>());
    }
    expected += std::max(0.0, margin - s[i][i].item<double>() + hardest_text);
    expected += std::max(0.0, margin - s[i][i].item<double>() + hardest_image);
  }
  expected /= 2 * 3;
  const auto loss = hardest_negative_triplet(ContrastiveBatch::whole(images, texts, {}), margin);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
  EXPECT_GT(expected, 0.0);  // the case has violations, so the loss is not trivially zero
}

TEST(HardestNegativeTriplet, RelevantPairsAreNotNegatives) {
  auto images = torch::tensor({{1.0, 0.0}, {1.0, 0.0}}, torch::kFloat64);
  auto texts = torch::tensor({{1.0, 0.0}, {1.0, 0.0}}, torch::kFloat64);
  // Both texts answer both images: no negatives remain, so nothing is violated.
  auto relevant = torch::ones({2, 2}, torch::kBool);
  EXPECT_DOUBLE_EQ(hardest_negative_triplet(ContrastiveBatch::whole(images, texts, relevant), 0.2)
                       .item<double>(),
                   0.0);
  // Without the mask the identical vectors violate the margin in every direction.
  EXPECT_NEAR(
      hardest_negative_triplet(ContrastiveBatch::whole(images, texts, {}), 0.2).item<double>(), 0.2,
      1e-12);
}

}  // namespace
}  // namespace shopclip
