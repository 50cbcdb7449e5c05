// Search results -> exactly k distinct ids (core/eval/predictions.h). Hand-worked cases on a pool
// whose exact ranking is known (pool row r = unit vector e_r, so a query's score for row r is its
// r-th coordinate): -1 labels at the end and in the middle, fewer than k results, repeated rows,
// nothing found; then real approximate FAISS indexes (IVF1024,Flat on 3,000 vectors, HNSW32)
// whose short results are completed to 10 distinct ids, and an exact index left unchanged.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/eval/predictions.h"
#include "core/eval/retrieval.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::Contains;
using Rows = std::vector<std::int64_t>;

constexpr int kK = 10;
constexpr int kPool = 12;

torch::Tensor identity_pool() {
  return torch::eye(kPool, torch::kFloat32).contiguous();
}

// A query whose exact ranking of the identity pool is `order` (best first; all kPool rows).
torch::Tensor query_ranking(const Rows& order) {
  auto q = torch::zeros({kPool}, torch::kFloat32);
  for (std::size_t i = 0; i < order.size(); ++i)
    q[order[i]] = static_cast<float>(kPool - i);
  return q;
}

Rows ascending() {
  Rows order(kPool);
  std::iota(order.begin(), order.end(), 0);
  return order;
}

Rows descending() {
  Rows order(kPool);
  std::iota(order.rbegin(), order.rend(), 0);
  return order;
}

// Labels of one query padded with -1 to k.
Rows padded(Rows labels) {
  labels.resize(kK, -1);
  return labels;
}

Rows complete_one(const Rows& labels, const Rows& order) {
  return complete_top_k(padded(labels), kK, query_ranking(order).view({1, kPool}).contiguous(),
                        identity_pool());
}

TEST(CompleteTopK, KeepsAFullDistinctListInTheIndexOrder) {
  // Not the exact order: the index's ranking is kept as it is.
  const Rows labels = {3, 1, 4, 11, 5, 9, 2, 6, 8, 7};
  EXPECT_EQ(complete_one(labels, ascending()), labels);
}

TEST(CompleteTopK, FillsFewerThanKWithTheExactRankingOfTheRest) {
  // Exact order 0, 1, 2, ...: after the index's 5 and 2 come the best rows not yet taken.
  EXPECT_EQ(complete_one({5, 2}, ascending()), (Rows{5, 2, 0, 1, 3, 4, 6, 7, 8, 9}));
  // The same labels for a query that ranks the pool the other way round.
  EXPECT_EQ(complete_one({5, 2}, descending()), (Rows{5, 2, 11, 10, 9, 8, 7, 6, 4, 3}));
}

TEST(CompleteTopK, SkipsMinusOneAnywhereAndRepeatedRows) {
  EXPECT_EQ(complete_one({-1, 7, -1, 3}, ascending()), (Rows{7, 3, 0, 1, 2, 4, 5, 6, 8, 9}));
  EXPECT_EQ(complete_one({5, 5, 2, 5, 2}, ascending()), (Rows{5, 2, 0, 1, 3, 4, 6, 7, 8, 9}));
  // k results, but only 8 distinct: the two missing come from the exact ranking.
  EXPECT_EQ(complete_one({11, 10, 11, 9, 8, 7, 6, 5, 4, 4}, ascending()),
            (Rows{11, 10, 9, 8, 7, 6, 5, 4, 0, 1}));
}

TEST(CompleteTopK, NothingFoundGivesTheExactTopK) {
  EXPECT_EQ(complete_one({}, ascending()), (Rows{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(complete_one({}, descending()), (Rows{11, 10, 9, 8, 7, 6, 5, 4, 3, 2}));
}

TEST(CompleteTopK, EachShortQueryIsFilledFromItsOwnRanking) {
  // Three queries: full, short (descending ranking), short (ascending ranking).
  const auto queries = torch::stack({query_ranking(ascending()), query_ranking(descending()),
                                     query_ranking(ascending())})
                           .contiguous();
  Rows labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const auto second = padded({0}), third = padded({11, -1, 10});
  labels.insert(labels.end(), second.begin(), second.end());
  labels.insert(labels.end(), third.begin(), third.end());
  const auto rows = complete_top_k(labels, kK, queries, identity_pool());
  EXPECT_EQ(Rows(rows.begin(), rows.begin() + kK), (Rows{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(Rows(rows.begin() + kK, rows.begin() + 2 * kK), (Rows{0, 11, 10, 9, 8, 7, 6, 5, 4, 3}));
  EXPECT_EQ(Rows(rows.begin() + 2 * kK, rows.end()), (Rows{11, 10, 0, 1, 2, 3, 4, 5, 6, 7}));
  // Deterministic: the same call gives the same rows.
  EXPECT_EQ(complete_top_k(labels, kK, queries, identity_pool()), rows);
}

TEST(CompleteTopK, RefusesImpossibleInput) {
  const auto query = query_ranking(ascending()).view({1, kPool}).contiguous();
  try {
    complete_top_k(padded({12}), kK, query, identity_pool());
    ADD_FAILURE() << "accepted a row outside the pool";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "row 12 is outside the pool of 12 images"));
  }
  EXPECT_THROW(complete_top_k(padded({-2}), kK, query, identity_pool()), std::invalid_argument);
  EXPECT_THROW(complete_top_k(Rows(9, 0), kK, query, identity_pool()), std::invalid_argument);
  try {
    complete_top_k(Rows(13, -1), 13, query, identity_pool());
    ADD_FAILURE() << "accepted k larger than the pool";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "fewer than k = 13"));
  }
  EXPECT_THROW(complete_top_k(padded({}), kK, torch::zeros({1, 5}), identity_pool()),
               std::invalid_argument);
}

TEST(PredictionsFromSearch, MapsRowsToIdsAndRefusesARepeatedPoolId) {
  Rows pool_ids;
  for (int r = 0; r < kPool; ++r)
    pool_ids.push_back(1000 + 7 * r);
  const auto query = query_ranking(ascending()).view({1, kPool}).contiguous();
  const auto predictions =
      predictions_from_search(padded({5, 2}), kK, query, identity_pool(), {42}, pool_ids);
  ASSERT_EQ(predictions.size(), 1u);
  EXPECT_EQ(predictions[0].query_id, 42);
  EXPECT_EQ(predictions[0].image_ids,
            (Rows{1035, 1014, 1000, 1007, 1021, 1028, 1042, 1049, 1056, 1063}));
  pool_ids[3] = pool_ids[8];
  try {
    predictions_from_search(padded({5, 2}), kK, query, identity_pool(), {42}, pool_ids);
    ADD_FAILURE() << "accepted a pool with a repeated id";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "image id 1056 appears twice"));
  }
}

// Random unit rows [n, dim].
torch::Tensor unit_rows_of(std::int64_t n, int dim, int seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, dim});
  return (x / x.norm(2, 1, true)).contiguous();
}

struct Searched {
  Rows labels;                                // the index's raw results
  std::vector<data::Prediction> predictions;  // completed
};

Searched search_with(const std::string& factory, const torch::Tensor& pool,
                     const torch::Tensor& queries, const Rows& pool_ids) {
  EmbeddingIndex index(factory, static_cast<int>(pool.size(1)));
  index.add(pool.data_ptr<float>(), pool.size(0));
  Searched out;
  std::vector<float> scores;
  index.search(queries.data_ptr<float>(), queries.size(0), kK, out.labels, scores);
  Rows query_ids(static_cast<std::size_t>(queries.size(0)));
  std::iota(query_ids.begin(), query_ids.end(), 0);
  out.predictions = search_predictions(index, kK, queries, pool, query_ids, pool_ids);
  return out;
}

// Every prediction has k distinct ids, begins with its index's distinct valid results in their
// order, and continues in the exact ranking order. Returns how many queries the index left short.
int check_completed(const Searched& searched, const torch::Tensor& pool,
                    const torch::Tensor& queries, const Rows& pool_ids) {
  Rows exact;
  std::vector<float> scores;
  exact_top_k(queries.data_ptr<float>(), queries.size(0), pool.data_ptr<float>(), pool.size(0),
              static_cast<int>(pool.size(1)), kK, exact, scores);
  int short_queries = 0;
  for (std::size_t q = 0; q < searched.predictions.size(); ++q) {
    const auto& ids = searched.predictions[q].image_ids;
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(kK)) << "query " << q;
    EXPECT_EQ(std::set<std::int64_t>(ids.begin(), ids.end()).size(), ids.size()) << "query " << q;
    Rows expected;
    for (int j = 0; j < kK; ++j) {
      const auto row = searched.labels[q * kK + j];
      if (row >= 0 && std::find(expected.begin(), expected.end(), pool_ids[row]) == expected.end())
        expected.push_back(pool_ids[row]);
    }
    if (expected.size() < static_cast<std::size_t>(kK)) ++short_queries;
    for (int j = 0; j < kK && expected.size() < static_cast<std::size_t>(kK); ++j) {
      const auto id = pool_ids[exact[q * kK + j]];
      if (std::find(expected.begin(), expected.end(), id) == expected.end()) expected.push_back(id);
    }
    EXPECT_EQ(ids, expected) << "query " << q;
  }
  return short_queries;
}

TEST(SearchPredictions, ApproximateIndexesGiveKDistinctIdsForEveryQuery) {
  const auto pool = unit_rows_of(3000, 16, 1);
  const auto queries = unit_rows_of(200, 16, 2);
  Rows pool_ids(3000);
  for (std::size_t r = 0; r < pool_ids.size(); ++r)
    pool_ids[r] = 500000 + 3 * static_cast<std::int64_t>(r);
  // IVF1024 over 3,000 vectors: about 3 per list and one list probed, so most queries come back
  // with fewer than 10 rows (FAISS warns that it trains on few points).
  const auto ivf = search_with("IVF1024,Flat", pool, queries, pool_ids);
  EXPECT_GT(check_completed(ivf, pool, queries, pool_ids), 100)
      << "IVF1024 should leave most queries short, else this test proves nothing";
  const auto hnsw = search_with("HNSW32", pool, queries, pool_ids);
  check_completed(hnsw, pool, queries, pool_ids);
  // An exact index: nothing to complete, the predictions are its results.
  const auto flat = search_with("Flat", pool, queries, pool_ids);
  EXPECT_EQ(check_completed(flat, pool, queries, pool_ids), 0);
}

// search_top_k: the index over the whole pool, completed to k distinct rows: with Flat, the exact
// ranking; with an IVF index that probes one list, still k distinct rows per query.
TEST(SearchTopK, FlatIsTheExactRankingAndApproximateIsCompleted) {
  const auto queries = torch::stack({query_ranking(descending()), query_ranking(ascending())});
  const Rows rows = search_top_k("Flat", queries, identity_pool(), 3);
  EXPECT_EQ(rows, (Rows{11, 10, 9, 0, 1, 2}));
  const Rows approximate = search_top_k("IVF4,Flat", queries, identity_pool(), kK);
  ASSERT_EQ(approximate.size(), 2u * kK);
  for (int q = 0; q < 2; ++q) {
    const std::set<std::int64_t> distinct(approximate.begin() + q * kK,
                                          approximate.begin() + (q + 1) * kK);
    EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kK));
  }
}

TEST(PredictionsFromRows, MapsRowsToIdsAndRefusesAWrongCount) {
  const auto predictions = predictions_from_rows({2, 0, 1, 2}, 2, {7, 8}, {100, 101, 102});
  ASSERT_EQ(predictions.size(), 2u);
  EXPECT_EQ(predictions[0].query_id, 7);
  EXPECT_EQ(predictions[0].image_ids, (Rows{102, 100}));
  EXPECT_EQ(predictions[1].image_ids, (Rows{101, 102}));
  EXPECT_THROW(predictions_from_rows({2, 0, 1}, 2, {7, 8}, {100, 101, 102}), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
