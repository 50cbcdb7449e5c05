#include "core/eval/rescore.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/eval/matrix.h"

namespace shopclip {
namespace {

void check_candidates(const torch::Tensor& queries, const torch::Tensor& pool,
                      const std::vector<std::int64_t>& candidates, int k, int top_k) {
  check_embedding_matrix(queries, "rescore", "queries");
  check_embedding_matrix(pool, "rescore", "pool");
  if (queries.size(1) != pool.size(1)) {
    throw std::invalid_argument(
        fmt::format("rescore: queries have {} dims, the pool {}", queries.size(1), pool.size(1)));
  }
  if (top_k <= 0 || k < top_k) {
    throw std::invalid_argument(
        fmt::format("rescore: {} candidates per query for top_k = {}", k, top_k));
  }
  if (static_cast<std::int64_t>(candidates.size()) != queries.size(0) * k) {
    throw std::invalid_argument(fmt::format("rescore: {} candidate rows for {} queries of K = {}",
                                            candidates.size(), queries.size(0), k));
  }
  for (const auto row : candidates) {
    if (row < 0 || row >= pool.size(0)) {
      throw std::invalid_argument(
          fmt::format("rescore: candidate row {} is outside the pool of {}", row, pool.size(0)));
    }
  }
}

// For each query, its candidates ordered by `new_score(row, c)` descending (row: the pool row of
// the query's candidate c; ties keep the stage-1 order), the first top_k kept.
template <typename Score>
void reorder(std::int64_t q, const std::vector<std::int64_t>& candidates, int k, int top_k,
             Score new_score, std::vector<std::int64_t>& out) {
  std::vector<double> score(k);
  for (int c = 0; c < k; ++c)
    score[c] = new_score(candidates[q * k + c], c);
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
  for (int j = 0; j < top_k; ++j)
    out[q * top_k + j] = candidates[q * k + order[j]];
}

// Every query's candidates re-ordered by new_score(q, row, c, s), s = the query's inner product
// with the pool row of its candidate c (result.rescored_queries = every query).
template <typename Score>
RescoreResult rescore_every_query(const torch::Tensor& queries, const torch::Tensor& pool,
                                  const std::vector<std::int64_t>& candidates, int k, int top_k,
                                  Score new_score) {
  const std::int64_t num_queries = queries.size(0), dim = queries.size(1);
  RescoreResult result;
  result.rows.resize(num_queries * top_k);
  result.rescored_queries = num_queries;
  const float* rows = pool.data_ptr<float>();
  for (std::int64_t q = 0; q < num_queries; ++q) {
    const float* query = queries.data_ptr<float>() + q * dim;
    reorder(
        q, candidates, k, top_k,
        [&](std::int64_t g, int c) {
          return new_score(q, g, c, inner_product(query, rows + g * dim, dim));
        },
        result.rows);
  }
  return result;
}

}  // namespace

BankNormaliser bank_normaliser(const torch::Tensor& bank, const torch::Tensor& pool, double beta,
                               int activation_k, std::int64_t block) {
  check_embedding_matrix(bank, "rescore", "bank");
  check_embedding_matrix(pool, "rescore", "pool");
  if (bank.size(1) != pool.size(1)) {
    throw std::invalid_argument(
        fmt::format("rescore: the bank has {} dims, the pool {}", bank.size(1), pool.size(1)));
  }
  if (bank.size(0) == 0) throw std::invalid_argument("rescore: the query bank is empty");
  if (!(beta > 0) || !std::isfinite(beta)) {
    throw std::invalid_argument(fmt::format("rescore: beta = {}; it must be positive", beta));
  }
  if (activation_k < 1) {
    throw std::invalid_argument(fmt::format("rescore: activation_k = {} < 1", activation_k));
  }
  if (block < 1) throw std::invalid_argument("rescore: block must be positive");
  const std::int64_t pool_size = pool.size(0);
  BankNormaliser out;
  out.beta = beta;
  out.log_normaliser.assign(pool_size, -std::numeric_limits<double>::infinity());
  out.activated.assign(pool_size, 0);
  if (pool_size == 0) return out;
  const auto pool_t = pool.t();
  const int top = static_cast<int>(std::min<std::int64_t>(activation_k, pool_size));
  for (std::int64_t begin = 0; begin < bank.size(0); begin += block) {
    const std::int64_t end = std::min(bank.size(0), begin + block);
    const auto scores = torch::mm(bank.slice(0, begin, end), pool_t);  // [b, N]
    const auto block_log =
        torch::logsumexp(scores.to(torch::kFloat64) * beta, 0).contiguous();  // [N]
    const double* values = block_log.data_ptr<double>();
    for (std::int64_t g = 0; g < pool_size; ++g) {
      double& total = out.log_normaliser[g];
      const double hi = std::max(total, values[g]);
      total = hi + std::log(std::exp(total - hi) + std::exp(values[g] - hi));
    }
    const auto top_rows = std::get<1>(torch::topk(scores, top, 1)).contiguous();
    const std::int64_t* rows = top_rows.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < top_rows.numel(); ++i)
      out.activated[rows[i]] = 1;
  }
  return out;
}

RescoreResult qb_norm_rerank(const torch::Tensor& queries, const torch::Tensor& pool,
                             const std::vector<std::int64_t>& candidates, int k,
                             const BankNormaliser& bank, int top_k) {
  check_candidates(queries, pool, candidates, k, top_k);
  if (static_cast<std::int64_t>(bank.log_normaliser.size()) != pool.size(0)) {
    throw std::invalid_argument(fmt::format("rescore: bank statistics for {} images, pool of {}",
                                            bank.log_normaliser.size(), pool.size(0)));
  }
  const std::int64_t num_queries = queries.size(0), dim = queries.size(1);
  RescoreResult result;
  result.rows.resize(num_queries * top_k);
  for (std::int64_t q = 0; q < num_queries; ++q) {
    const float* query = queries.data_ptr<float>() + q * dim;
    const float* rows = pool.data_ptr<float>();
    if (!bank.activated[candidates[q * k]]) {
      // Dynamic: a query whose best image is no hub for the bank keeps its ranking.
      std::copy_n(candidates.begin() + q * k, top_k, result.rows.begin() + q * top_k);
      continue;
    }
    ++result.rescored_queries;
    // log s' = beta s - log sum_b exp(beta s_b): the same order as s', without overflow.
    reorder(
        q, candidates, k, top_k,
        [&](std::int64_t g, int) {
          return bank.beta * inner_product(query, rows + g * dim, dim) - bank.log_normaliser[g];
        },
        result.rows);
  }
  return result;
}

RescoreResult dual_softmax_rerank(const torch::Tensor& queries, const torch::Tensor& pool,
                                  const std::vector<std::int64_t>& candidates, int k, double beta,
                                  int top_k) {
  check_candidates(queries, pool, candidates, k, top_k);
  const BankNormaliser self = bank_normaliser(queries, pool, beta, 1);
  return rescore_every_query(queries, pool, candidates, k, top_k,
                             [&](std::int64_t, std::int64_t g, int, double s) {
                               return s * std::exp(beta * s - self.log_normaliser[g]);
                             });
}

RescoreResult learned_rerank(const torch::Tensor& queries, const torch::Tensor& pool,
                             const std::vector<std::int64_t>& candidates, int k,
                             const torch::Tensor& rerank_logits, double lambda, int top_k) {
  check_candidates(queries, pool, candidates, k, top_k);
  if (rerank_logits.scalar_type() != torch::kFloat32 || !rerank_logits.is_contiguous() ||
      !rerank_logits.sizes().equals({queries.size(0), k})) {
    throw std::invalid_argument(fmt::format(
        "rescore: reranker logits must be contiguous float32 [{}, {}], got {} {}", queries.size(0),
        k, c10::toString(rerank_logits.scalar_type()), c10::str(rerank_logits.sizes())));
  }
  const float* logits = rerank_logits.data_ptr<float>();
  return rescore_every_query(queries, pool, candidates, k, top_k,
                             [&](std::int64_t q, std::int64_t, int c, double s) {
                               return s + lambda * logits[q * k + c];
                             });
}

}  // namespace shopclip
