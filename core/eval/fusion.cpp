#include "core/eval/fusion.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/eval/matrix.h"
#include "core/eval/predictions.h"

namespace shopclip {
namespace {

void check_members(const std::vector<FusionMember>& members) {
  if (members.empty()) throw std::invalid_argument("fusion: no members");
  const std::int64_t q = members[0].queries.defined() ? members[0].queries.size(0) : -1;
  const std::int64_t n = members[0].pool.defined() ? members[0].pool.size(0) : -1;
  double weight_sum = 0;
  for (std::size_t m = 0; m < members.size(); ++m) {
    const auto& member = members[m];
    const std::string who = fmt::format("fusion: member {}", m + 1);
    check_embedding_matrix(member.queries, who.c_str(), "queries");
    check_embedding_matrix(member.pool, who.c_str(), "pool");
    if (member.queries.size(1) != member.pool.size(1)) {
      throw std::invalid_argument(fmt::format("fusion: member {}: queries have {} dims, pool {}",
                                              m + 1, member.queries.size(1), member.pool.size(1)));
    }
    if (member.queries.size(0) != q || member.pool.size(0) != n) {
      throw std::invalid_argument(
          fmt::format("fusion: member {} has {} queries and {} images, member 1 has {} and {}",
                      m + 1, member.queries.size(0), member.pool.size(0), q, n));
    }
    if (!(member.weight >= 0) || !std::isfinite(member.weight)) {
      throw std::invalid_argument(fmt::format(
          "fusion: member {} has weight {}; weights must be >= 0", m + 1, member.weight));
    }
    weight_sum += member.weight;
  }
  if (!(weight_sum > 0)) throw std::invalid_argument("fusion: every weight is 0");
}

void check_weights(const std::vector<double>& weights, int members) {
  if (static_cast<int>(weights.size()) != members) {
    throw std::invalid_argument(
        fmt::format("fusion: {} weights for {} members", weights.size(), members));
  }
  double sum = 0;
  for (const double w : weights) {
    if (!(w >= 0) || !std::isfinite(w)) {
      throw std::invalid_argument(fmt::format("fusion: weight {}; weights must be >= 0", w));
    }
    sum += w;
  }
  if (!(sum > 0)) throw std::invalid_argument("fusion: every weight is 0");
}

}  // namespace

FusionMethod parse_fusion_method(const std::string& name) {
  if (name == "feature") return FusionMethod::kFeature;
  if (name == "score") return FusionMethod::kScore;
  if (name == "rrf") return FusionMethod::kReciprocalRank;
  if (name == "borda") return FusionMethod::kBorda;
  throw std::invalid_argument(
      fmt::format("unknown fusion method '{}' (expected feature, score, rrf or borda)", name));
}

std::string fusion_method_name(FusionMethod method) {
  switch (method) {
    case FusionMethod::kFeature:
      return "feature";
    case FusionMethod::kScore:
      return "score";
    case FusionMethod::kReciprocalRank:
      return "rrf";
    case FusionMethod::kBorda:
      return "borda";
  }
  throw std::logic_error("fusion_method_name: unknown method");
}

torch::Tensor weighted_concat(const std::vector<torch::Tensor>& parts,
                              const std::vector<double>& weights) {
  if (parts.empty()) throw std::invalid_argument("weighted_concat: no parts");
  if (!weights.empty() && weights.size() != parts.size()) {
    throw std::invalid_argument(
        fmt::format("weighted_concat: {} weights for {} parts", weights.size(), parts.size()));
  }
  std::vector<torch::Tensor> scaled;
  for (std::size_t m = 0; m < parts.size(); ++m) {
    if (parts[m].size(0) != parts[0].size(0)) {
      throw std::invalid_argument(fmt::format("weighted_concat: part {} has {} rows, part 1 {}",
                                              m + 1, parts[m].size(0), parts[0].size(0)));
    }
    scaled.push_back(weights.empty() ? parts[m] : parts[m] * static_cast<float>(weights[m]));
  }
  return scaled.size() == 1 ? scaled[0].contiguous() : torch::cat(scaled, 1).contiguous();
}

CandidateTable build_candidate_table(const std::vector<FusionMember>& members,
                                     const FusionOptions& options) {
  check_members(members);
  const std::int64_t num_queries = members[0].queries.size(0);
  const std::int64_t pool_size = members[0].pool.size(0);
  if (options.candidates <= 0) {
    throw std::invalid_argument(
        fmt::format("fusion: candidates = {}; it must be positive", options.candidates));
  }
  if (pool_size == 0) throw std::invalid_argument("fusion: the pool is empty");
  CandidateTable table;
  table.members = static_cast<int>(members.size());
  table.list_length = static_cast<int>(std::min<std::int64_t>(options.candidates, pool_size));
  const int k = table.list_length;
  std::vector<std::vector<std::int64_t>> lists;
  for (const auto& member : members)
    lists.push_back(search_top_k(options.index, member.queries, member.pool, k));

  const int num_members = table.members;
  table.rows.resize(num_queries);
  table.standardized.resize(num_queries);
  table.ranks.resize(num_queries);
  for (std::int64_t q = 0; q < num_queries; ++q) {
    auto& rows = table.rows[q];
    for (int m = 0; m < num_members; ++m)
      rows.insert(rows.end(), lists[m].begin() + q * k, lists[m].begin() + (q + 1) * k);
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    const std::size_t count = rows.size();
    std::unordered_map<std::int64_t, std::size_t> position;
    for (std::size_t c = 0; c < count; ++c)
      position[rows[c]] = c;
    auto& ranks = table.ranks[q];
    auto& z = table.standardized[q];
    ranks.assign(num_members * count, 0);
    z.assign(num_members * count, 0.0f);
    for (int m = 0; m < num_members; ++m) {
      for (int r = 0; r < k; ++r)
        ranks[m * count + position.at(lists[m][q * k + r])] = r + 1;
      const auto& member = members[m];
      const std::int64_t dim = member.pool.size(1);
      const float* query = member.queries.data_ptr<float>() + q * dim;
      const float* pool = member.pool.data_ptr<float>();
      double sum = 0, sum_sq = 0;
      for (std::size_t c = 0; c < count; ++c) {
        const float s = inner_product(query, pool + rows[c] * dim, dim);
        z[m * count + c] = s;
        sum += s;
        sum_sq += static_cast<double>(s) * s;
      }
      const double mean = sum / count;
      const double variance = std::max(0.0, sum_sq / count - mean * mean);
      const double sd = std::sqrt(variance);
      for (std::size_t c = 0; c < count; ++c) {
        float& value = z[m * count + c];
        value = sd > 0 ? static_cast<float>((value - mean) / sd) : 0.0f;
      }
    }
  }
  return table;
}

std::vector<std::int64_t> rank_candidates(const CandidateTable& table, FusionMethod method,
                                          const std::vector<double>& weights, double rrf_k,
                                          int top_k) {
  if (method == FusionMethod::kFeature) {
    throw std::invalid_argument("rank_candidates: feature fusion searches the whole pool");
  }
  check_weights(weights, table.members);
  if (top_k <= 0 || top_k > table.list_length) {
    throw std::invalid_argument(fmt::format(
        "fusion: top_k = {} with stage-1 lists of {} (candidates must be >= top_k and the pool "
        "at least as large)",
        top_k, table.list_length));
  }
  if (method == FusionMethod::kReciprocalRank && !(rrf_k > 0)) {
    throw std::invalid_argument(fmt::format("fusion: rrf_k = {}; it must be positive", rrf_k));
  }
  const std::size_t num_queries = table.rows.size();
  std::vector<std::int64_t> out(num_queries * top_k);
  std::vector<double> fused;
  std::vector<std::size_t> order;
  for (std::size_t q = 0; q < num_queries; ++q) {
    const auto& rows = table.rows[q];
    const std::size_t count = rows.size();
    fused.assign(count, 0.0);
    for (int m = 0; m < table.members; ++m) {
      const double w = weights[m];
      if (w == 0) continue;
      for (std::size_t c = 0; c < count; ++c) {
        const int rank = table.ranks[q][m * count + c];
        switch (method) {
          case FusionMethod::kScore:
            fused[c] += w * table.standardized[q][m * count + c];
            break;
          case FusionMethod::kReciprocalRank:
            if (rank > 0) fused[c] += w / (rrf_k + rank);
            break;
          case FusionMethod::kBorda:
            if (rank > 0) fused[c] += w * (table.list_length + 1 - rank);
            break;
          case FusionMethod::kFeature:
            break;
        }
      }
    }
    order.resize(count);
    std::iota(order.begin(), order.end(), 0);
    // rows are ascending, so a stable sort sends ties to the lower pool row.
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return fused[a] > fused[b]; });
    for (int j = 0; j < top_k; ++j)
      out[q * top_k + j] = rows[order[j]];
  }
  return out;
}

FusionResult fuse_rankings(const std::vector<FusionMember>& members, const FusionOptions& options,
                           int top_k) {
  check_members(members);
  const std::int64_t pool_size = members[0].pool.size(0);
  if (top_k <= 0 || pool_size < top_k) {
    throw std::invalid_argument(
        fmt::format("fusion: top_k = {} with a pool of {} images", top_k, pool_size));
  }
  FusionResult result;
  if (options.method == FusionMethod::kFeature) {
    std::vector<torch::Tensor> queries, pool;
    std::vector<double> weights;
    for (const auto& member : members) {
      queries.push_back(member.queries);
      pool.push_back(member.pool);
      weights.push_back(member.weight);
    }
    result.rows = search_top_k(options.index, weighted_concat(queries, weights),
                               weighted_concat(pool, {}), top_k, &result.completed);
    return result;
  }
  if (options.candidates < top_k) {
    throw std::invalid_argument(
        fmt::format("fusion: candidates = {} is fewer than top_k = {}", options.candidates, top_k));
  }
  std::vector<double> weights;
  for (const auto& member : members)
    weights.push_back(member.weight);
  const CandidateTable table = build_candidate_table(members, options);
  result.rows = rank_candidates(table, options.method, weights, options.rrf_k, top_k);
  return result;
}

double candidate_recall(const std::vector<std::vector<std::int64_t>>& candidates,
                        const std::vector<std::vector<std::int64_t>>& relevant) {
  if (candidates.size() != relevant.size()) {
    throw std::invalid_argument(fmt::format("candidate_recall: {} candidate lists for {} queries",
                                            candidates.size(), relevant.size()));
  }
  if (candidates.empty()) return 0;
  std::int64_t hits = 0;
  for (std::size_t q = 0; q < candidates.size(); ++q) {
    const auto& list = candidates[q];
    const bool hit = std::any_of(relevant[q].begin(), relevant[q].end(), [&](std::int64_t row) {
      return std::find(list.begin(), list.end(), row) != list.end();
    });
    hits += hit ? 1 : 0;
  }
  return 100.0 * static_cast<double>(hits) / static_cast<double>(candidates.size());
}

WeightSearch parse_weight_search(const std::string& name) {
  if (name == "grid") return WeightSearch::kGrid;
  if (name == "coordinate") return WeightSearch::kCoordinate;
  throw std::invalid_argument(
      fmt::format("unknown weight search '{}' (expected grid or coordinate)", name));
}

std::string weight_search_name(WeightSearch search) {
  return search == WeightSearch::kGrid ? "grid" : "coordinate";
}

WeightTuning tune_weights(int members,
                          const std::function<double(const std::vector<double>&)>& score,
                          WeightSearch search, double step, int max_passes) {
  if (members < 1) throw std::invalid_argument("tune_weights: no members");
  if (!(step > 0 && step <= 1)) {
    throw std::invalid_argument(fmt::format("tune_weights: step {} is outside (0, 1]", step));
  }
  if (max_passes < 1) throw std::invalid_argument("tune_weights: max_passes must be >= 1");
  const auto normalised = [](std::vector<double> w) {
    const double sum = std::accumulate(w.begin(), w.end(), 0.0);
    for (double& x : w)
      x /= sum;
    return w;
  };
  WeightTuning best;
  best.weights.assign(members, 1.0 / members);
  best.score = score(best.weights);
  best.evaluated = 1;
  const auto consider = [&](const std::vector<double>& w) {
    if (std::accumulate(w.begin(), w.end(), 0.0) <= 0) return false;
    const auto candidate = normalised(w);
    const double value = score(candidate);
    ++best.evaluated;
    if (value > best.score) {
      best.score = value;
      best.weights = candidate;
      return true;
    }
    return false;
  };
  const int steps = static_cast<int>(std::lround(1.0 / step));
  if (search == WeightSearch::kGrid) {
    // Every vector of `members` non-negative parts summing to `steps`.
    std::vector<int> parts(members, 0);
    std::function<void(int, int)> place = [&](int m, int left) {
      if (m == members - 1) {
        parts[m] = left;
        std::vector<double> w(members);
        for (int j = 0; j < members; ++j)
          w[j] = parts[j] * step;
        consider(w);
        return;
      }
      for (int i = left; i >= 0; --i) {
        parts[m] = i;
        place(m + 1, left - i);
      }
    };
    place(0, steps);
    return best;
  }
  for (int pass = 0; pass < max_passes; ++pass) {
    bool changed = false;
    for (int m = 0; m < members; ++m) {
      for (int i = 0; i <= steps; ++i) {
        std::vector<double> w = best.weights;
        w[m] = i * step;
        changed = consider(w) || changed;
      }
    }
    if (!changed) break;
  }
  return best;
}

}  // namespace shopclip
