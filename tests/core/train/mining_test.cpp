// Hard-negative mining: the selection rules on a hand-built search result, the positives shared by
// same-text queries, and the hard-negative batch sampler's plan (every pair at most once, the
// mined pairs beside their anchors, the plain shuffle without negatives).

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/train/mining.h"
#include "data/loader.h"
#include "test_support.h"

namespace shopclip {
namespace {

TEST(Mining, SelectionSkipsStopsAndDropsPositivesAndNearPositives) {
  // Two queries, k = 6 results each (rows, cosine scores, best first).
  const std::vector<std::int64_t> rows = {10, 11, 12, 13, 14, 15,   // query 0
                                          20, 21, -1, -1, -1, -1};  // query 1: only two results
  const std::vector<float> scores = {0.9f, 0.8f, 0.79f, 0.7f, 0.6f, 0.5f,  //
                                     0.4f, 0.3f, 0,     0,    0,    0};
  // Query 0's positive (row 13) scores 0.8: ceiling 0.95 x 0.8 = 0.76 drops rows 10..12 by score.
  const std::vector<std::vector<std::int64_t>> positives = {{13}, {}};
  const std::vector<float> positive_scores = {0.8f, 0.0f};
  MiningRules rules;
  rules.skip = 1;
  rules.depth = 5;  // ranks 1..4
  rules.max_ratio = 0.95;
  const MinedNegatives mined = select_negatives(rows, scores, 6, positives, positive_scores, rules);
  ASSERT_EQ(mined.size(), 2u);
  EXPECT_EQ(mined[0], (std::vector<std::int64_t>{14}));  // 11, 12 above the ceiling; 13 positive
  EXPECT_EQ(mined[1], (std::vector<std::int64_t>{21}));  // rank 0 skipped, -1 ends the list
  rules.max_ratio = 1.0;
  EXPECT_EQ(select_negatives(rows, scores, 6, positives, positive_scores, rules)[0],
            (std::vector<std::int64_t>{11, 12, 14}));
}

TEST(Mining, QueriesWithTheSameTextShareTheirPositives) {
  const std::vector<std::string> texts = {"红色连衣裙", "耐克", "红色连衣裙"};
  const std::vector<data::TrainPair> pairs = {{0, 4}, {1, 5}, {2, 6}};
  const std::unordered_set<std::int64_t> relevant = {1 * 10 + 7};  // query 1 is right for row 7
  const auto positives = query_positives(texts, pairs, relevant, 10);
  EXPECT_EQ(positives[0], (std::vector<std::int64_t>{4, 6}));
  EXPECT_EQ(positives[2], (std::vector<std::int64_t>{4, 6}));
  EXPECT_EQ(positives[1], (std::vector<std::int64_t>{5, 7}));
}

TEST(Mining, BestPositiveScoreIsTheLargestInnerProductOverAQuerysPositives) {
  // Three images and two texts in 2 dimensions; query 1 has no positive.
  const auto images = torch::tensor({1.0f, 0.0f, 0.0f, 1.0f, 0.6f, 0.8f}).view({3, 2});
  const auto texts = torch::tensor({0.8f, 0.6f, 1.0f, 0.0f}).view({2, 2});
  const auto best = best_positive_scores(images, texts, {{0, 1, 2}, {}});
  ASSERT_EQ(best.size(), 2u);
  EXPECT_FLOAT_EQ(best[0], 0.96f);  // image 2: 0.8 * 0.6 + 0.6 * 0.8 (image 0 gives 0.8)
  EXPECT_EQ(best[1], -std::numeric_limits<float>::infinity());
}

// 40 pairs: query q with image row q (20 images: rows repeat every 20 pairs).
std::vector<data::TrainPair> sampler_pairs() {
  std::vector<data::TrainPair> pairs;
  for (int q = 0; q < 40; ++q)
    pairs.push_back({q, q % 20});
  return pairs;
}

TEST(HardNegativeSampler, WithoutNegativesItIsThePlainShuffle) {
  const data::HardNegativeBatchSampler hard(sampler_pairs(), 8, 5, 0.5);
  const data::ShuffledBatchSampler plain(40, 8, 5);
  ASSERT_EQ(hard.steps_per_epoch(), 5);
  for (int epoch = 0; epoch < 2; ++epoch)
    for (std::int64_t step = 0; step < 5; ++step)
      EXPECT_EQ(hard.global_batch(epoch, step), plain.global_batch(epoch, step));
  EXPECT_EQ(hard.mined_pairs(0), 0);
}

TEST(HardNegativeSampler, PlacesMinedPairsBesideTheirAnchorsAndUsesEveryPairOnce) {
  const auto pairs = sampler_pairs();
  data::HardNegativeBatchSampler sampler(pairs, 12, 5, 0.5);  // 3 steps of 12 (4 pairs left over)
  // Query q's mined images: the next three image rows.
  auto negatives = std::make_shared<std::vector<std::vector<std::int64_t>>>();
  for (int q = 0; q < 40; ++q)
    negatives->push_back({(q + 1) % 20, (q + 2) % 20, (q + 3) % 20});
  sampler.set_negatives(negatives);
  // Pairs whose image is a mined negative of the query of the pair just before them.
  const auto after_their_anchor = [&](const std::vector<std::int64_t>& batch) {
    int count = 0;
    for (std::size_t j = 1; j < batch.size(); ++j) {
      const auto& list = (*negatives)[pairs[batch[j - 1]].query];
      count += std::find(list.begin(), list.end(), pairs[batch[j]].image_row) != list.end();
    }
    return count;
  };
  const data::ShuffledBatchSampler plain(40, 12, 5);
  std::set<std::int64_t> seen;
  int hard_pairs = 0, plain_pairs = 0;
  for (std::int64_t step = 0; step < sampler.steps_per_epoch(); ++step) {
    const auto batch = sampler.global_batch(0, step);
    ASSERT_EQ(batch.size(), 12u);
    for (const auto id : batch)
      EXPECT_TRUE(seen.insert(id).second) << "pair " << id << " twice in the epoch";
    hard_pairs += after_their_anchor(batch);
    plain_pairs += after_their_anchor(plain.global_batch(0, step));
  }
  EXPECT_EQ(seen.size(), 36u) << "every step a full batch of distinct pairs";
  EXPECT_GT(sampler.mined_pairs(0), 9) << "most batches reach 6 mined pairs";
  EXPECT_LE(sampler.mined_pairs(0), 18) << "at most 6 per batch of 12 at share 0.5";
  EXPECT_GE(hard_pairs, sampler.mined_pairs(0)) << "each mined pair follows its anchor";
  EXPECT_GT(hard_pairs, 2 * plain_pairs) << "the plain shuffle rarely does so";
  // Deterministic: a new sampler with the same negatives plans the same epoch.
  data::HardNegativeBatchSampler again(pairs, 12, 5, 0.5);
  again.set_negatives(negatives);
  EXPECT_EQ(again.global_batch(0, 2), sampler.global_batch(0, 2));
  EXPECT_THROW(data::HardNegativeBatchSampler(pairs, 12, 5, 0.7), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
