#pragma once
// Training-free re-scoring of a dual encoder's stage-1 candidates (its top K by cosine
// similarity), the second stage of a two-stage retrieval.
//
//   QB-Norm  query-bank normalisation with the dynamic inverted softmax (Bogolin et al., CVPR
//            2022). A bank of queries that are not the evaluated ones (the training queries)
//            shows which images are hubs: images close to many queries, retrieved for queries
//            they do not match. Image g's score for query q becomes
//              s'(q, g) = exp(beta s(q, g)) / sum_b exp(beta s(b, g))      (b over the bank),
//            which lowers hubs; "dynamic": only for queries whose top-1 image is in the
//            activation set (images among the top activation_k of at least one bank query);
//            other queries keep their scores. Not transductive: the evaluated queries only ever
//            see their own scores.
//   dual softmax  (Cheng et al., 2021, "Improving video-text retrieval by multi-stream corpus
//            alignment and dual softmax loss") s'(q, g) = s(q, g) * softmax over the evaluated
//            queries of beta s(., g) at q. TRANSDUCTIVE: one query's ranking depends on the
//            other evaluated queries, which a search box never has; kept for comparison with
//            published numbers that use it, and refused unless asked for by name.
//
// Tensors: float32, contiguous, on the CPU; queries [Q, D], pool [N, D], bank [B, D], unit rows.
// candidates: [Q, K] row-major pool rows, best first (stage 1), distinct; K >= top_k.
// Re-scored lists are sorted by the new score, ties to the earlier stage-1 rank; [Q, top_k].

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace shopclip {

// Per pool row g: log sum_b exp(beta <bank_b, pool_g>) and whether g is in the activation set.
// The bank is read in blocks of `block` rows, so memory stays O(block * N).
struct BankNormaliser {
  double beta = 0;
  std::vector<double> log_normaliser;  // [N]
  std::vector<char> activated;         // [N], 1 = among some bank query's top activation_k
};

// Throws std::invalid_argument for a bad shape, beta <= 0, activation_k < 1 or an empty bank.
BankNormaliser bank_normaliser(const torch::Tensor& bank, const torch::Tensor& pool, double beta,
                               int activation_k, std::int64_t block = 1024);

struct RescoreResult {
  std::vector<std::int64_t> rows;     // [Q, top_k]
  std::int64_t rescored_queries = 0;  // QB-Norm: queries whose top-1 was activated
};

RescoreResult qb_norm_rerank(const torch::Tensor& queries, const torch::Tensor& pool,
                             const std::vector<std::int64_t>& candidates, int k,
                             const BankNormaliser& bank, int top_k);

// A learned reranker's logits added to the dual score: s'(q, g) = s(q, g) + lambda r(q, g), where
// rerank_logits float32 [Q, K] holds r for each query's candidates in stage-1 order
// (core/eval/learned_rerank.h). lambda 0 keeps the dual score's order. Not transductive.
RescoreResult learned_rerank(const torch::Tensor& queries, const torch::Tensor& pool,
                             const std::vector<std::int64_t>& candidates, int k,
                             const torch::Tensor& rerank_logits, double lambda, int top_k);

// Dual softmax with the evaluated queries as their own bank (transductive; see above).
RescoreResult dual_softmax_rerank(const torch::Tensor& queries, const torch::Tensor& pool,
                                  const std::vector<std::int64_t>& candidates, int k, double beta,
                                  int top_k);

}  // namespace shopclip
