// Tests for ensemble fusion: each method on hand-built score tables with answers worked out by
// hand, feature fusion against a weighted sum of scores, a single member giving its own ranking,
// weight tuning (grid and coordinate) and the stage-1 ceiling.
//
// A hand-built score table S [Q, N] is a member whose query vectors are the rows of S and whose
// pool is the N x N identity: <S[q], e_j> = S[q][j].

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/eval/fusion.h"

namespace shopclip {
namespace {

FusionMember table_member(const std::vector<std::vector<float>>& table, double weight = 1) {
  const auto q = static_cast<std::int64_t>(table.size());
  const auto n = static_cast<std::int64_t>(table[0].size());
  auto queries = torch::empty({q, n});
  for (std::int64_t i = 0; i < q; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      queries[i][j] = table[i][j];
  return {queries.contiguous(), torch::eye(n).contiguous(), weight};
}

// Two members over five images (rows 0-4), one query; lists of 3, the top 3 of the union kept:
//   A: 0.9 0.8 0.1 0.0 0.5    ranks: 0, 1, 4 | 2, 3
//   B: 0.2 0.7 0.9 0.1 0.65   ranks: 2, 1, 4 | 0, 3
std::vector<FusionMember> two_members(double weight_a = 1, double weight_b = 1) {
  return {table_member({{0.9f, 0.8f, 0.1f, 0.0f, 0.5f}}, weight_a),
          table_member({{0.2f, 0.7f, 0.9f, 0.1f, 0.65f}}, weight_b)};
}

std::vector<std::int64_t> fuse(const std::vector<FusionMember>& members, FusionMethod method,
                               int candidates, int top_k) {
  FusionOptions options;
  options.method = method;
  options.candidates = candidates;
  return fuse_rankings(members, options, top_k).rows;
}

TEST(Fusion, ReciprocalRankFusionByHand) {
  // Top-3 lists: A = 0, 1, 4; B = 2, 1, 4. With k = 60:
  // row 1: 1/62 + 1/62 = .03226; row 4: 2/63 = .03175; rows 0 and 2: 1/61 = .01639 (tie: row 0).
  EXPECT_EQ(fuse(two_members(), FusionMethod::kReciprocalRank, 3, 3),
            (std::vector<std::int64_t>{1, 4, 0}));
  // Weights 1 : 3 lift B's first: row 1 4/62, row 4 4/63, row 2 3/61 = .0492, row 0 1/61.
  EXPECT_EQ(fuse(two_members(1, 3), FusionMethod::kReciprocalRank, 3, 3),
            (std::vector<std::int64_t>{1, 4, 2}));
}

TEST(Fusion, BordaCountByHand) {
  // K = 3 points for a first place, 2 for a second, 1 for a third:
  // row 1: 2 + 2 = 4; row 0: 3; row 2: 3 (tie: row 0 first); row 4: 1 + 1 = 2.
  EXPECT_EQ(fuse(two_members(), FusionMethod::kBorda, 3, 3), (std::vector<std::int64_t>{1, 0, 2}));
}

TEST(Fusion, StandardisedScoreFusionByHand) {
  // Candidates = union {0, 1, 2, 4}. A's scores there: .9 .8 .1 .5 (mean .575, sd .31125):
  // z = 1.044, .723, -1.526, -.241. B's: .2 .7 .9 .65 (mean .6125, sd .25587):
  // z = -1.612, .342, 1.124, .147. Sums: row 0 -.568, row 1 1.065, row 2 -.403, row 4 -.094.
  EXPECT_EQ(fuse(two_members(), FusionMethod::kScore, 3, 3), (std::vector<std::int64_t>{1, 4, 2}));
  // The plain sum of cosines ranks row 4 (1.15) and row 0 (1.1) after row 1 and row 2 (1.0)
  // after them: standardising changes the answer.
  EXPECT_EQ(fuse(two_members(), FusionMethod::kFeature, 3, 3),
            (std::vector<std::int64_t>{1, 4, 0}));
}

TEST(Fusion, CandidateTableHoldsUnionRanksAndStandardisedScores) {
  FusionOptions options;
  options.candidates = 3;
  const CandidateTable table = build_candidate_table(two_members(), options);
  ASSERT_EQ(table.rows.size(), 1u);
  EXPECT_EQ(table.rows[0], (std::vector<std::int64_t>{0, 1, 2, 4}));
  EXPECT_EQ(table.list_length, 3);
  // ranks[m * C + c]: A ranks rows 0, 1, 4 first to third; B ranks 2, 1, 4.
  EXPECT_EQ(table.ranks[0], (std::vector<int>{1, 2, 0, 3, 0, 2, 1, 3}));
  const std::vector<float> expected = {1.0442f,  0.7229f, -1.5261f, -0.2410f,
                                       -1.6122f, 0.3420f, 1.1236f,  0.1466f};
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(table.standardized[0][i], expected[i], 2e-4) << i;
}

TEST(Fusion, FeatureFusionEqualsWeightedScoreSum) {
  torch::manual_seed(3);
  const std::int64_t queries = 12, pool = 40;
  const double wa = 0.7, wb = 0.3;
  auto unit = [](torch::Tensor t) { return (t / t.norm(2, 1, true)).contiguous(); };
  FusionMember a{unit(torch::randn({queries, 8})), unit(torch::randn({pool, 8})), wa};
  FusionMember b{unit(torch::randn({queries, 5})), unit(torch::randn({pool, 5})), wb};
  const auto rows = fuse({a, b}, FusionMethod::kFeature, 100, 10);
  const auto weighted =
      wa * torch::mm(a.queries, a.pool.t()) + wb * torch::mm(b.queries, b.pool.t());
  const auto expected = std::get<1>(torch::sort(weighted, 1, /*descending=*/true));
  for (std::int64_t q = 0; q < queries; ++q)
    for (int j = 0; j < 10; ++j)
      EXPECT_EQ(rows[q * 10 + j], expected[q][j].item<std::int64_t>()) << q << " " << j;
  // The fused vectors' inner products are the weighted sums.
  const auto fused = torch::mm(weighted_concat({a.queries, b.queries}, {wa, wb}),
                               weighted_concat({a.pool, b.pool}, {}).t());
  EXPECT_TRUE(torch::allclose(fused, weighted, 1e-5, 1e-6));
}

TEST(Fusion, OneMemberKeepsItsRanking) {
  const auto member = table_member({{0.3f, 0.9f, 0.1f, 0.7f, 0.5f, 0.2f}});
  const std::vector<std::int64_t> own = {1, 3, 4, 0};
  for (const auto method : {FusionMethod::kFeature, FusionMethod::kScore,
                            FusionMethod::kReciprocalRank, FusionMethod::kBorda}) {
    EXPECT_EQ(fuse({member}, method, 5, 4), own) << fusion_method_name(method);
  }
}

TEST(Fusion, RejectsBadInput) {
  auto members = two_members();
  members[1].weight = -1;
  EXPECT_THROW(fuse(members, FusionMethod::kScore, 3, 2), std::invalid_argument);
  members[1].weight = 0;
  members[0].weight = 0;
  EXPECT_THROW(fuse(members, FusionMethod::kScore, 3, 2), std::invalid_argument);
  FusionOptions options;
  options.method = FusionMethod::kReciprocalRank;
  options.candidates = 3;
  options.rrf_k = 0;
  EXPECT_THROW(fuse_rankings(two_members(), options, 2), std::invalid_argument);
}

TEST(Fusion, RejectsMembersThatDisagreeOnQueriesOrPool) {
  auto members = two_members();
  members[1] = table_member({{0.1f, 0.2f, 0.3f, 0.4f, 0.5f}, {0.5f, 0.4f, 0.3f, 0.2f, 0.1f}});
  EXPECT_THROW(fuse(members, FusionMethod::kBorda, 3, 2), std::invalid_argument);
  members[1] = table_member({{0.1f, 0.2f, 0.3f, 0.4f}});
  EXPECT_THROW(fuse(members, FusionMethod::kFeature, 3, 2), std::invalid_argument);
  // Fewer candidates than top_k.
  EXPECT_THROW(fuse(two_members(), FusionMethod::kBorda, 2, 3), std::invalid_argument);
  EXPECT_THROW(parse_fusion_method("vote"), std::invalid_argument);
}

TEST(Fusion, GridSearchFindsTheBestPointAndCountsIt) {
  int calls = 0;
  // Peak at (0.3, 0.7).
  const auto score = [&](const std::vector<double>& w) {
    ++calls;
    return -std::pow(w[0] - 0.3, 2);
  };
  const WeightTuning tuned = tune_weights(2, score, WeightSearch::kGrid, 0.1);
  EXPECT_NEAR(tuned.weights[0], 0.3, 1e-9);
  EXPECT_NEAR(tuned.weights[1], 0.7, 1e-9);
  EXPECT_EQ(tuned.evaluated, 12);  // equal weights, then 11 grid points
  EXPECT_EQ(calls, 12);
  // Three members at step 0.1: 66 points on the simplex.
  const auto flat = [](const std::vector<double>&) { return 1.0; };
  const WeightTuning three = tune_weights(3, flat, WeightSearch::kGrid, 0.1);
  EXPECT_EQ(three.evaluated, 67);
  // A flat objective keeps equal weights (a candidate must be strictly better).
  for (const double w : three.weights)
    EXPECT_NEAR(w, 1.0 / 3, 1e-12);
}

TEST(Fusion, CoordinateSearchClimbsASeparableObjective) {
  // Best ratio 1 : 2 : 0 between the members.
  const auto score = [](const std::vector<double>& w) {
    const double sum = w[0] + w[1] + w[2];
    return -std::pow(w[0] / sum - 1.0 / 3, 2) - std::pow(w[1] / sum - 2.0 / 3, 2) -
           std::pow(w[2] / sum, 2);
  };
  const WeightTuning tuned = tune_weights(3, score, WeightSearch::kCoordinate, 0.1);
  EXPECT_NEAR(tuned.weights[2], 0.0, 1e-9);
  EXPECT_NEAR(tuned.weights[1] / tuned.weights[0], 2.0, 0.35);
  EXPECT_GT(tuned.score, score({1.0 / 3, 1.0 / 3, 1.0 / 3}));
  EXPECT_THROW(tune_weights(2, score, WeightSearch::kGrid, 0), std::invalid_argument);
  EXPECT_THROW(parse_weight_search("random"), std::invalid_argument);
}

TEST(Fusion, CandidateRecallIsTheShareOfQueriesWithARelevantCandidate) {
  const std::vector<std::vector<std::int64_t>> candidates = {{1, 2, 3}, {4, 5}, {6}, {7, 8}};
  const std::vector<std::vector<std::int64_t>> relevant = {{3}, {9}, {6, 1}, {}};
  EXPECT_DOUBLE_EQ(candidate_recall(candidates, relevant), 50.0);
  EXPECT_THROW(candidate_recall(candidates, {{1}}), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
