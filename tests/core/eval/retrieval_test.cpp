// Tests for the FAISS-backed inner-product index: exact top-k against brute force, factory-string
// errors, a trained (IVF) index, and -1 rows when fewer than k vectors exist.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/eval/retrieval.h"

namespace shopclip {
namespace {

// n unit vectors of dimension dim, row-major.
std::vector<float> unit_vectors(std::int64_t n, int dim, unsigned seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal;
  std::vector<float> out(static_cast<size_t>(n) * dim);
  for (std::int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int k = 0; k < dim; ++k) {
      out[i * dim + k] = normal(random);
      norm += double(out[i * dim + k]) * out[i * dim + k];
    }
    for (int k = 0; k < dim; ++k)
      out[i * dim + k] = float(out[i * dim + k] / std::sqrt(norm));
  }
  return out;
}

double dot(const float* a, const float* b, int dim) {
  double sum = 0;
  for (int k = 0; k < dim; ++k)
    sum += double(a[k]) * b[k];
  return sum;
}

TEST(EmbeddingIndex, FlatReturnsExactTopKByInnerProduct) {
  const int dim = 8, k = 10;
  const std::int64_t n = 60, queries = 5;
  const auto base = unit_vectors(n, dim, 1);
  const auto query = unit_vectors(queries, dim, 2);
  EmbeddingIndex index("Flat", dim);
  index.add(base.data(), n);
  EXPECT_EQ(index.size(), n);

  std::vector<std::int64_t> rows;
  std::vector<float> scores;
  index.search(query.data(), queries, k, rows, scores);
  ASSERT_EQ(rows.size(), static_cast<size_t>(queries * k));
  ASSERT_EQ(scores.size(), static_cast<size_t>(queries * k));

  for (std::int64_t q = 0; q < queries; ++q) {
    // Brute force: every score, sorted descending.
    std::vector<double> all(n);
    for (std::int64_t r = 0; r < n; ++r)
      all[r] = dot(&query[q * dim], &base[r * dim], dim);
    std::vector<std::int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return all[a] > all[b]; });
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(rows[q * k + j], order[j]) << "query " << q << " rank " << j;
      EXPECT_NEAR(scores[q * k + j], all[order[j]], 1e-5);
      if (j > 0) {
        EXPECT_GE(scores[q * k + j - 1], scores[q * k + j]);
      }
    }
  }
}

TEST(EmbeddingIndex, RowsCountAcrossSeveralAdds) {
  const int dim = 6;
  const auto first = unit_vectors(5, dim, 3), second = unit_vectors(7, dim, 4);
  EmbeddingIndex index("Flat", dim);
  index.add(first.data(), 5);
  index.add(second.data(), 7);
  index.add(second.data(), 0);  // adding nothing is harmless
  EXPECT_EQ(index.size(), 12);
  std::vector<std::int64_t> rows;
  std::vector<float> scores;
  // Each unit vector is its own best match: the third of the second batch is row 5 + 2.
  index.search(&second[2 * dim], 1, 1, rows, scores);
  EXPECT_EQ(rows[0], 7);
  EXPECT_NEAR(scores[0], 1.0, 1e-5);
}

TEST(EmbeddingIndex, InvalidFactoryStringThrowsNamingIt) {
  try {
    EmbeddingIndex index("NoSuchIndex42", 8);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("NoSuchIndex42"), std::string::npos) << e.what();
  }
  EXPECT_THROW(EmbeddingIndex("Flat", 0), std::invalid_argument);
}

TEST(EmbeddingIndex, IvfTrainsOnAddAndReturnsValidRows) {
  const int dim = 8, k = 5;
  const std::int64_t n = 400;
  const auto base = unit_vectors(n, dim, 5);
  EmbeddingIndex index("IVF4,Flat", dim);
  index.add(base.data(), n);  // trains its coarse quantizer on this batch first
  EXPECT_EQ(index.size(), n);

  // A stored vector is assigned to the same list at search time, so it finds itself first.
  const std::int64_t queries = 20;
  std::vector<std::int64_t> rows;
  std::vector<float> scores;
  index.search(base.data(), queries, k, rows, scores);
  for (std::int64_t q = 0; q < queries; ++q) {
    EXPECT_EQ(rows[q * k], q);
    EXPECT_NEAR(scores[q * k], 1.0, 1e-5);
    for (int j = 0; j < k; ++j) {
      const auto row = rows[q * k + j];
      ASSERT_TRUE(row >= -1 && row < n) << row;
      if (row < 0) continue;
      // Reported scores are the true inner products of the rows returned, best first.
      EXPECT_NEAR(scores[q * k + j], dot(&base[q * dim], &base[row * dim], dim), 1e-5);
      if (j > 0) {
        EXPECT_GE(scores[q * k + j - 1], scores[q * k + j]);
      }
    }
  }
}

TEST(EmbeddingIndex, KLargerThanSizeGivesMinusOneRows) {
  const int dim = 4, k = 6;
  const auto base = unit_vectors(3, dim, 6);
  const auto query = unit_vectors(2, dim, 7);
  EmbeddingIndex index("Flat", dim);
  index.add(base.data(), 3);
  std::vector<std::int64_t> rows;
  std::vector<float> scores;
  index.search(query.data(), 2, k, rows, scores);
  ASSERT_EQ(rows.size(), 12u);
  for (int q = 0; q < 2; ++q) {
    std::vector<std::int64_t> found(rows.begin() + q * k, rows.begin() + q * k + 3);
    std::sort(found.begin(), found.end());
    EXPECT_EQ(found, (std::vector<std::int64_t>{0, 1, 2}));
    for (int j = 3; j < k; ++j)
      EXPECT_EQ(rows[q * k + j], -1);
  }
}

TEST(EmbeddingIndex, EmptyIndexAndNoQueries) {
  EmbeddingIndex index("Flat", 4);
  EXPECT_EQ(index.size(), 0);
  const auto query = unit_vectors(1, 4, 8);
  std::vector<std::int64_t> rows{42};
  std::vector<float> scores;
  index.search(query.data(), 1, 3, rows, scores);
  EXPECT_EQ(rows, (std::vector<std::int64_t>{-1, -1, -1}));
  index.search(query.data(), 0, 3, rows, scores);
  EXPECT_TRUE(rows.empty());
}

TEST(EmbeddingIndex, MovedIndexKeepsItsVectors) {
  const auto base = unit_vectors(4, 4, 9);
  EmbeddingIndex index("Flat", 4);
  index.add(base.data(), 4);
  EmbeddingIndex moved(std::move(index));
  EXPECT_EQ(moved.size(), 4);
  std::vector<std::int64_t> rows;
  std::vector<float> scores;
  moved.search(&base[4 * 3], 1, 1, rows, scores);
  EXPECT_EQ(rows[0], 3);
}

}  // namespace
}  // namespace shopclip

namespace shopclip {
namespace {

TEST(EmbeddingIndexSharded, EqualsOneIndexOverTheConcatenation) {
  const int dim = 16;
  torch::manual_seed(11);
  auto pool = torch::nn::functional::normalize(
      torch::randn({103, dim}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto queries = torch::randn({20, dim});
  EmbeddingIndex single("Flat", dim);
  single.add(pool.data_ptr<float>(), pool.size(0));
  // Three unequal shards, as ranks holding slices of the pool.
  const std::vector<std::int64_t> counts = {40, 33, 30};
  std::vector<const float*> parts;
  std::int64_t offset = 0;
  for (auto count : counts) {
    parts.push_back(pool.data_ptr<float>() + offset * dim);
    offset += count;
  }
  auto sharded = EmbeddingIndex::sharded("Flat", dim, parts, counts);
  EXPECT_EQ(sharded.size(), 103);
  EXPECT_EQ(sharded.shards(), 3);
  std::vector<std::int64_t> rows_single, rows_sharded;
  std::vector<float> scores_single, scores_sharded;
  single.search(queries.data_ptr<float>(), 20, 10, rows_single, scores_single);
  sharded.search(queries.data_ptr<float>(), 20, 10, rows_sharded, scores_sharded);
  EXPECT_EQ(rows_sharded, rows_single);
  for (std::size_t i = 0; i < scores_single.size(); ++i) {
    EXPECT_FLOAT_EQ(scores_sharded[i], scores_single[i]);
  }
  EXPECT_THROW(sharded.add(pool.data_ptr<float>(), 1), std::logic_error);
}

}  // namespace
}  // namespace shopclip
