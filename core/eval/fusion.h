#pragma once
// Ensembles of dual encoders at retrieval time: several models' embeddings of the same queries
// and the same image pool fused into one ranking. Four methods (FusionMethod); all are
// deterministic (ties go to the lower pool row) and return exactly top_k distinct rows per query.
//
//   feature  one inner product over the weighted concatenation [w_1 q_1, ..., w_M q_M] .
//            [p_1, ..., p_M] = sum_m w_m <q_m, p_m>: a weighted average of the members' cosine
//            similarities, searched in one FAISS index (options.index) over the whole pool.
//   score    two-stage: each member's top `candidates` (FAISS, options.index) form the candidate
//            set (their union); every member scores every candidate, its scores standardised per
//            query over the candidates (z = (s - mean) / std; 0 when std = 0), and the weighted
//            sum of z ranks them. Standardising puts members with different score spreads on one
//            scale, which a plain sum of cosines does not.
//   rrf      reciprocal rank fusion (Cormack et al., SIGIR 2009): sum_m w_m / (rrf_k + rank_m),
//            rank_m the 1-based rank in member m's candidate list, a candidate absent from that
//            list adds nothing.
//   borda    Borda count: sum_m w_m * (candidates + 1 - rank_m), absent adds nothing.
//
// Members' tensors are float32, contiguous, on the CPU: queries [Q, D_m] and pool [N, D_m], the
// same Q queries and N images in the same order for every member (D_m may differ); rows should
// have unit norm (what evaluate_split searches), so the scores are cosine similarities.
// Weights are >= 0 with a positive sum; only their ratios matter to every method.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace shopclip {

enum class FusionMethod { kFeature, kScore, kReciprocalRank, kBorda };

// "feature" | "score" | "rrf" | "borda"; parse throws std::invalid_argument listing the names.
FusionMethod parse_fusion_method(const std::string& name);
std::string fusion_method_name(FusionMethod method);

struct FusionOptions {
  FusionMethod method = FusionMethod::kFeature;
  int candidates = 100;        // each member's stage-1 list (score, rrf, borda); >= top_k
  double rrf_k = 60;           // rrf's constant (> 0)
  std::string index = "Flat";  // FAISS factory string for every search (eval.index)
};

struct FusionMember {
  torch::Tensor queries;  // float32 [Q, D_m]
  torch::Tensor pool;     // float32 [N, D_m]
  double weight = 1;
};

struct FusionResult {
  std::vector<std::int64_t> rows;  // [Q, top_k] row-major: pool rows, best first, distinct
  std::int64_t completed = 0;  // queries an approximate index left short (core/eval/predictions.h)
};

// Stage 1 of the two-stage methods (score, rrf, borda), which does not depend on the weights:
// built once, it ranks for any weights (rank_candidates), so tuning the weights re-runs no search.
// The candidate set of a query is the union of every member's list, whatever its weight, so
// weights are judged on the candidates they will be applied to.
struct CandidateTable {
  int members = 0;
  int list_length = 0;  // K = min(candidates, N): each member's stage-1 list
  // Per query q: candidate pool rows, ascending (C_q of them, K <= C_q <= M * K) ...
  std::vector<std::vector<std::int64_t>> rows;
  // ... member m's standardised score of candidate c at [q][m * C_q + c] ...
  std::vector<std::vector<float>> standardized;
  // ... and its 1-based rank in member m's list at the same place (0: not in m's list).
  std::vector<std::vector<int>> ranks;
};

CandidateTable build_candidate_table(const std::vector<FusionMember>& members,
                                     const FusionOptions& options);

// The top_k candidates of each query by the method's fused score (kScore, kReciprocalRank or
// kBorda; std::invalid_argument for kFeature), ties to the lower pool row: [Q, top_k] row-major.
// weights: one per member, >= 0, positive sum.
std::vector<std::int64_t> rank_candidates(const CandidateTable& table, FusionMethod method,
                                          const std::vector<double>& weights, double rrf_k,
                                          int top_k);

// Fuses the members' rankings with their weights. Throws std::invalid_argument when members
// disagree on Q or N, a tensor breaks the contract above, a weight is negative or all are 0,
// the pool has fewer than top_k rows, or candidates < top_k. With one member, every method
// returns that member's own ranking.
FusionResult fuse_rankings(const std::vector<FusionMember>& members, const FusionOptions& options,
                           int top_k);

// The feature-fusion vectors: [w_1 x_1, ..., w_M x_M], [n, sum D_m], from one float32 [n, D_m]
// tensor per member (weights empty: all 1). The weighted queries' inner products with the
// unweighted pool, weighted_concat(queries, w) . weighted_concat(pool, {}), are
// sum_m w_m <q_m, p_m>. Throws std::invalid_argument when the row counts or weight count differ.
torch::Tensor weighted_concat(const std::vector<torch::Tensor>& parts,
                              const std::vector<double>& weights);

// Stage-1 recall: the share of queries (x100) with at least one relevant pool row among
// candidates[q] (relevant[q]: that query's relevant rows). The ceiling of any reranking of them.
double candidate_recall(const std::vector<std::vector<std::int64_t>>& candidates,
                        const std::vector<std::vector<std::int64_t>>& relevant);

// Weight search for an ensemble on a split with ground truth (valid): `score` maps a weight
// vector to the split's MeanRecall; the best weights are then applied unchanged to another split.
//   grid        every weight vector on the simplex grid with the given step (w_m = i_m * step,
//               sum 1); (1/step + M - 1 choose M - 1) points: 66 for M = 3 at 0.1.
//   coordinate  from equal weights, each weight in turn over {0, step, ..., 1} with the others
//               fixed, passes until one changes nothing (at most max_passes); for many members.
// Equal weights are scored first and a candidate replaces the best only when strictly better,
// so ties keep the simplest answer. Throws std::invalid_argument for step outside (0, 1],
// members < 1 or max_passes < 1.
enum class WeightSearch { kGrid, kCoordinate };
WeightSearch parse_weight_search(const std::string& name);  // "grid" | "coordinate"
std::string weight_search_name(WeightSearch search);

struct WeightTuning {
  std::vector<double> weights;  // the best, normalised to sum 1
  double score = 0;             // its score
  int evaluated = 0;            // weight vectors scored
};

WeightTuning tune_weights(int members,
                          const std::function<double(const std::vector<double>&)>& score,
                          WeightSearch search, double step, int max_passes = 3);

}  // namespace shopclip
