// Tests for training-free re-scoring: QB-Norm's bank statistics and re-ranking on a hand-built
// hub case (the hub is demoted, a query whose best image is no hub keeps its order), dual softmax
// on a hand-built two-query case, the learned reranker's score combination, and refusals.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <torch/torch.h>

#include "core/eval/rescore.h"

namespace shopclip {
namespace {

torch::Tensor rows(const std::vector<std::vector<float>>& values) {
  auto out = torch::empty(
      {static_cast<std::int64_t>(values.size()), static_cast<std::int64_t>(values[0].size())});
  for (std::size_t i = 0; i < values.size(); ++i)
    for (std::size_t j = 0; j < values[i].size(); ++j)
      out[i][j] = values[i][j];
  return out.contiguous();
}

// Image 0 is a hub: three of the four bank queries sit on it.
struct HubCase {
  torch::Tensor pool = rows({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}});
  torch::Tensor bank = rows({{1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {0, 0, 1}});
};

TEST(QbNorm, BankStatisticsByHand) {
  HubCase c;
  const BankNormaliser bank = bank_normaliser(c.bank, c.pool, /*beta=*/1.0, /*activation_k=*/1,
                                              /*block=*/3);  // two blocks: 3 + 1 bank rows
  const double e = std::exp(1.0);
  ASSERT_EQ(bank.log_normaliser.size(), 3u);
  EXPECT_NEAR(bank.log_normaliser[0], std::log(3 * e + 1), 1e-6);
  EXPECT_NEAR(bank.log_normaliser[1], std::log(4.0), 1e-6);
  EXPECT_NEAR(bank.log_normaliser[2], std::log(3 + e), 1e-6);
  // Top-1 of the bank queries: image 0 (three times) and image 2; image 1 is nobody's first.
  EXPECT_EQ(bank.activated, (std::vector<char>{1, 0, 1}));
}

TEST(QbNorm, DemotesTheHubOnlyForQueriesWhoseBestImageIsActivated) {
  HubCase c;
  const BankNormaliser bank = bank_normaliser(c.bank, c.pool, 1.0, 1);
  // Query 0 scores .9 / .8 / 0: its best image is the hub (activated). log s' = s - log Z:
  // image 0: .9 - log(3e + 1) = -1.314; image 1: .8 - log 4 = -.586; image 2: -log(3 + e) = -1.744.
  // Query 1 scores 0 / .9 / .1: its best image (1) is not activated, so it keeps its order.
  const auto queries = rows({{0.9f, 0.8f, 0.0f}, {0.0f, 0.9f, 0.1f}});
  const std::vector<std::int64_t> candidates = {0, 1, 2, 1, 2, 0};
  const RescoreResult result = qb_norm_rerank(queries, c.pool, candidates, 3, bank, 2);
  EXPECT_EQ(result.rows, (std::vector<std::int64_t>{1, 0, 1, 2}));
  EXPECT_EQ(result.rescored_queries, 1);
}

TEST(QbNorm, RefusesBadInput) {
  HubCase c;
  EXPECT_THROW(bank_normaliser(c.bank, c.pool, 0.0, 1), std::invalid_argument);
  EXPECT_THROW(bank_normaliser(c.bank, c.pool, 1.0, 0), std::invalid_argument);
  EXPECT_THROW(bank_normaliser(torch::zeros({0, 3}), c.pool, 1.0, 1), std::invalid_argument);
  EXPECT_THROW(bank_normaliser(torch::zeros({2, 4}), c.pool, 1.0, 1), std::invalid_argument);
  const BankNormaliser bank = bank_normaliser(c.bank, c.pool, 1.0, 1);
  const auto query = rows({{0.9f, 0.8f, 0.0f}});
  // A candidate outside the pool, too few candidates for top_k, a wrong count.
  EXPECT_THROW(qb_norm_rerank(query, c.pool, {0, 1, 7}, 3, bank, 2), std::invalid_argument);
  EXPECT_THROW(qb_norm_rerank(query, c.pool, {0, 1}, 2, bank, 3), std::invalid_argument);
  EXPECT_THROW(qb_norm_rerank(query, c.pool, {0, 1, 2, 0}, 3, bank, 2), std::invalid_argument);
}

TEST(DualSoftmax, EachImageGoesToTheQueryThatWantsItMost) {
  // Scores (identity pool): q0 .9 / .8, q1 .95 / .1. Raw, both queries rank image 0 first.
  // beta 10: P(q0 | image 0) = 1 / (1 + e^.5) = .378, P(q0 | image 1) = 1 / (1 + e^-7) = .999:
  // q0: .9 * .378 = .340 < .8 * .999 = .799 -> image 1 first; q1 keeps image 0.
  const auto queries = rows({{0.9f, 0.8f}, {0.95f, 0.1f}});
  const auto pool = torch::eye(2).contiguous();
  const RescoreResult result = dual_softmax_rerank(queries, pool, {0, 1, 0, 1}, 2, 10.0, 2);
  EXPECT_EQ(result.rows, (std::vector<std::int64_t>{1, 0, 0, 1}));
  EXPECT_EQ(result.rescored_queries, 2);
}

// s' = s + lambda r on a hand-built case: query 0's candidates (rows 0, 1, 2) have dual scores
// .9, .8, 0 and reranker logits -1, 2, 0.5.
TEST(LearnedRerank, CombinesDualScoresAndLogitsByLambda) {
  const auto pool = rows({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}});
  const auto queries = rows({{0.9f, 0.8f, 0.0f}});
  const std::vector<std::int64_t> candidates = {0, 1, 2};
  const auto logits = rows({{-1.0f, 2.0f, 0.5f}});
  // lambda 0: the dual order.
  EXPECT_EQ(learned_rerank(queries, pool, candidates, 3, logits, 0.0, 3).rows,
            (std::vector<std::int64_t>{0, 1, 2}));
  // lambda .05: .85, .9, .025 -> rows 1, 0, 2.
  EXPECT_EQ(learned_rerank(queries, pool, candidates, 3, logits, 0.05, 3).rows,
            (std::vector<std::int64_t>{1, 0, 2}));
  // lambda 1: -.1, 2.8, .5 -> rows 1, 2, 0; top 2 kept.
  const RescoreResult result = learned_rerank(queries, pool, candidates, 3, logits, 1.0, 2);
  EXPECT_EQ(result.rows, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(result.rescored_queries, 1);
  // The logits follow the candidates' stage-1 order, not the pool's: with candidates 2, 0, 1,
  // row 2 gets -1, row 0 gets 2, row 1 gets .5: 2.9, 1.3, -1 -> rows 0, 1, 2 (read by pool row,
  // it would be 1, 2, 0).
  EXPECT_EQ(learned_rerank(queries, pool, {2, 0, 1}, 3, logits, 1.0, 3).rows,
            (std::vector<std::int64_t>{0, 1, 2}));
}

TEST(LearnedRerank, RefusesLogitsOfAnotherShape) {
  const auto pool = rows({{1, 0}, {0, 1}});
  const auto queries = rows({{1, 0}});
  EXPECT_THROW(learned_rerank(queries, pool, {0, 1}, 2, rows({{1, 2, 3}}), 1.0, 1),
               std::invalid_argument);
  EXPECT_THROW(learned_rerank(queries, pool, {0, 1}, 2, rows({{1, 2}}).to(torch::kFloat64), 1.0, 1),
               std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
