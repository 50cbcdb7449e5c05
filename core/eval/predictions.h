#pragma once
// Search results -> MUGE predictions: exactly k distinct image ids per query, whatever the index.
// Shared by evaluate_split (`shopclip eval`, training's evaluations) and `shopclip search`.
//
// Why a fill-up step: an approximate FAISS index may find fewer than k images for a query
// (labels -1: an IVF index probes eval.index's nprobe lists, by default one, and a list may hold
// fewer than k images; HNSW can stop early on small or clustered pools) and a sharded or
// re-ranked result may repeat a row. The official scorer rejects a file with any query that has
// other than 10 distinct ids, so such a query must be completed rather than written short.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/eval/retrieval.h"
#include "data/muge.h"

namespace shopclip {

// Completes an index's results to exactly k distinct pool rows per query, deterministically:
//   1. the index's rows in its order, skipping -1 and any row already taken (the index's ranking
//      is kept: with an exact index nothing changes);
//   2. when fewer than k remain, the exact inner-product ranking of the whole pool (FAISS's
//      exact search, exact_top_k: what eval.index Flat returns), skipping rows already taken.
// Step 2 always completes the list: the exact top k holds k distinct rows, of which at most the
// (fewer than k) rows already taken can be skipped. Ranking the rest exactly, rather than in a
// fixed order such as pool order, keeps the filled ranks as good as the embeddings allow, so an
// approximate index never scores below what it found plus the best of the rest.
//
// labels: n * k rows as EmbeddingIndex::search / faiss::Index::search return them (row-major,
//   best first, -1 = none); a label outside [-1, pool rows) throws std::invalid_argument.
// queries: float32 [n, D]; pool: float32 [N, D], the vectors the index holds, in row order (CPU,
//   contiguous; the same vectors that were searched, e.g. both unit-norm). N >= k, else
//   std::invalid_argument.
// Returns n * k rows, row-major. *completed (when given) = how many queries needed step 2.
std::vector<std::int64_t> complete_top_k(const std::vector<std::int64_t>& labels, int k,
                                         const torch::Tensor& queries, const torch::Tensor& pool,
                                         std::int64_t* completed = nullptr);

// One exact-or-approximate search of a whole pool: an index made from `factory` (eval.index) over
// pool, searched with queries, its results completed (complete_top_k) to k distinct rows per
// query, [n, k] row-major. For the callers that search a pool once (fusion members, re-ranking's
// stage 1); evaluate_split shards its index across ranks instead.
std::vector<std::int64_t> search_top_k(const std::string& factory, const torch::Tensor& queries,
                                       const torch::Tensor& pool, int k,
                                       std::int64_t* completed = nullptr);

// Rows -> ids: prediction q = {query_ids[q], pool_ids of rows[q * k .. q * k + k)}. rows must
// hold query_ids.size() * k valid pool rows (no completion, no checks of distinctness).
std::vector<data::Prediction> predictions_from_rows(const std::vector<std::int64_t>& rows, int k,
                                                    const std::vector<std::int64_t>& query_ids,
                                                    const std::vector<std::int64_t>& pool_ids);

// complete_top_k, then rows -> ids: prediction q = {query_ids[q], pool_ids of its k rows}.
// query_ids has n entries, pool_ids N distinct entries (a repeated id throws
// std::invalid_argument naming it: its rows could not give k distinct ids).
std::vector<data::Prediction> predictions_from_search(const std::vector<std::int64_t>& labels,
                                                      int k, const torch::Tensor& queries,
                                                      const torch::Tensor& pool,
                                                      const std::vector<std::int64_t>& query_ids,
                                                      const std::vector<std::int64_t>& pool_ids,
                                                      std::int64_t* completed = nullptr);

// Searches `index` (which holds `pool`, row r = pool_ids[r]) for the top k of every query and
// returns predictions_from_search of the results.
std::vector<data::Prediction> search_predictions(const EmbeddingIndex& index, int k,
                                                 const torch::Tensor& queries,
                                                 const torch::Tensor& pool,
                                                 const std::vector<std::int64_t>& query_ids,
                                                 const std::vector<std::int64_t>& pool_ids,
                                                 std::int64_t* completed = nullptr);

}  // namespace shopclip
