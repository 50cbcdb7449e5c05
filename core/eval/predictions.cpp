#include "core/eval/predictions.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/eval/matrix.h"

namespace shopclip {

std::vector<std::int64_t> complete_top_k(const std::vector<std::int64_t>& labels, int k,
                                         const torch::Tensor& queries, const torch::Tensor& pool,
                                         std::int64_t* completed) {
  if (k <= 0) throw std::invalid_argument(fmt::format("complete_top_k: k = {}", k));
  check_embedding_matrix(queries, "complete_top_k", "queries");
  check_embedding_matrix(pool, "complete_top_k", "pool");
  const std::int64_t n = queries.size(0), pool_size = pool.size(0);
  if (queries.size(1) != pool.size(1)) {
    throw std::invalid_argument(fmt::format("complete_top_k: queries have {} dims, the pool {}",
                                            queries.size(1), pool.size(1)));
  }
  if (static_cast<std::int64_t>(labels.size()) != n * k) {
    throw std::invalid_argument(
        fmt::format("complete_top_k: {} labels for {} queries of k = {}", labels.size(), n, k));
  }
  if (pool_size < k) {
    throw std::invalid_argument(
        fmt::format("complete_top_k: the pool has {} images, fewer than k = {}", pool_size, k));
  }

  // Step 1: the index's own rows, in its order, once each.
  std::vector<std::int64_t> out(static_cast<std::size_t>(n) * k, -1);
  std::vector<int> found(static_cast<std::size_t>(n), 0);
  std::vector<std::int64_t> short_queries;
  for (std::int64_t q = 0; q < n; ++q) {
    std::unordered_set<std::int64_t> taken;
    int& count = found[q];
    for (int j = 0; j < k; ++j) {
      const std::int64_t row = labels[q * k + j];
      if (row < -1 || row >= pool_size) {
        throw std::invalid_argument(
            fmt::format("complete_top_k: query {} rank {}: row {} is outside the pool of {} images",
                        q, j + 1, row, pool_size));
      }
      if (row >= 0 && taken.insert(row).second) out[q * k + count++] = row;
    }
    if (count < k) short_queries.push_back(q);
  }
  if (completed) *completed = static_cast<std::int64_t>(short_queries.size());
  if (short_queries.empty()) return out;

  // Step 2: the exact ranking of the pool for the queries still short, skipping taken rows.
  const auto short_rows =
      queries.index_select(0, torch::tensor(short_queries, torch::kLong)).contiguous();
  std::vector<std::int64_t> exact;
  std::vector<float> scores;
  exact_top_k(short_rows.data_ptr<float>(), short_rows.size(0), pool.data_ptr<float>(), pool_size,
              static_cast<int>(pool.size(1)), k, exact, scores);
  for (std::size_t s = 0; s < short_queries.size(); ++s) {
    const std::int64_t q = short_queries[s];
    std::int64_t* list = out.data() + q * k;
    int& count = found[q];
    for (int j = 0; j < k && count < k; ++j) {
      const std::int64_t row = exact[s * k + j];
      if (row < 0) continue;
      if (std::find(list, list + count, row) == list + count) list[count++] = row;
    }
    if (count < k) {  // impossible with N >= k (see the header); a FAISS failure otherwise
      throw std::runtime_error(fmt::format(
          "complete_top_k: query {}: the exact search gave only {} of {} rows", q, count, k));
    }
  }
  return out;
}

std::vector<data::Prediction> predictions_from_search(const std::vector<std::int64_t>& labels,
                                                      int k, const torch::Tensor& queries,
                                                      const torch::Tensor& pool,
                                                      const std::vector<std::int64_t>& query_ids,
                                                      const std::vector<std::int64_t>& pool_ids,
                                                      std::int64_t* completed) {
  check_embedding_matrix(queries, "complete_top_k", "queries");
  check_embedding_matrix(pool, "complete_top_k", "pool");
  if (static_cast<std::int64_t>(query_ids.size()) != queries.size(0) ||
      static_cast<std::int64_t>(pool_ids.size()) != pool.size(0)) {
    throw std::invalid_argument(fmt::format(
        "predictions_from_search: {} query ids for {} queries, {} image ids for {} pool rows",
        query_ids.size(), queries.size(0), pool_ids.size(), pool.size(0)));
  }
  std::unordered_set<std::int64_t> distinct;
  for (const auto id : pool_ids) {
    if (!distinct.insert(id).second) {
      throw std::invalid_argument(
          fmt::format("predictions_from_search: image id {} appears twice in the pool", id));
    }
  }
  return predictions_from_rows(complete_top_k(labels, k, queries, pool, completed), k, query_ids,
                               pool_ids);
}

std::vector<data::Prediction> predictions_from_rows(const std::vector<std::int64_t>& rows, int k,
                                                    const std::vector<std::int64_t>& query_ids,
                                                    const std::vector<std::int64_t>& pool_ids) {
  if (rows.size() != query_ids.size() * static_cast<std::size_t>(k)) {
    throw std::invalid_argument(
        fmt::format("predictions_from_rows: {} rows for {} queries of k = {}", rows.size(),
                    query_ids.size(), k));
  }
  std::vector<data::Prediction> predictions(query_ids.size());
  for (std::size_t q = 0; q < query_ids.size(); ++q) {
    predictions[q].query_id = query_ids[q];
    predictions[q].image_ids.reserve(static_cast<std::size_t>(k));
    for (int j = 0; j < k; ++j)
      predictions[q].image_ids.push_back(pool_ids[static_cast<std::size_t>(rows[q * k + j])]);
  }
  return predictions;
}

std::vector<std::int64_t> search_top_k(const std::string& factory, const torch::Tensor& queries,
                                       const torch::Tensor& pool, int k, std::int64_t* completed) {
  check_embedding_matrix(queries, "search_top_k", "queries");
  check_embedding_matrix(pool, "search_top_k", "pool");
  EmbeddingIndex index(factory, static_cast<int>(pool.size(1)));
  index.add(pool.data_ptr<float>(), pool.size(0));
  std::vector<std::int64_t> labels;
  std::vector<float> scores;
  index.search(queries.data_ptr<float>(), queries.size(0), k, labels, scores);
  return complete_top_k(labels, k, queries, pool, completed);
}

std::vector<data::Prediction> search_predictions(const EmbeddingIndex& index, int k,
                                                 const torch::Tensor& queries,
                                                 const torch::Tensor& pool,
                                                 const std::vector<std::int64_t>& query_ids,
                                                 const std::vector<std::int64_t>& pool_ids,
                                                 std::int64_t* completed) {
  if (index.size() != pool.size(0)) {
    throw std::invalid_argument(
        fmt::format("search_predictions: the index holds {} vectors, the pool has {} rows",
                    index.size(), pool.size(0)));
  }
  check_embedding_matrix(queries, "complete_top_k", "queries");
  std::vector<std::int64_t> labels;
  std::vector<float> scores;
  index.search(queries.data_ptr<float>(), queries.size(0), k, labels, scores);
  return predictions_from_search(labels, k, queries, pool, query_ids, pool_ids, completed);
}

}  // namespace shopclip
