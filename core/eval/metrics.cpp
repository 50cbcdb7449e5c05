#include "core/eval/metrics.h"

#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/error.h"

namespace shopclip {

RecallScores muge_recall(const std::vector<data::Query>& reference,
                         const std::vector<data::Prediction>& predictions,
                         std::vector<QueryOutcome>* outcomes) {
  std::unordered_map<std::int64_t, const data::Prediction*> by_query;
  for (const auto& prediction : predictions)
    by_query[prediction.query_id] = &prediction;
  if (outcomes) outcomes->clear();
  std::int64_t hits1 = 0, hits5 = 0, hits10 = 0;
  for (const auto& query : reference) {
    auto it = by_query.find(query.id);
    if (it == by_query.end()) {
      throw data::DataError(fmt::format("no prediction for reference query {}", query.id));
    }
    const auto& ranked = it->second->image_ids;
    int first_hit = 0;
    for (std::size_t r = 0; r < ranked.size(); ++r) {
      if (std::find(query.image_ids.begin(), query.image_ids.end(), ranked[r]) !=
          query.image_ids.end()) {
        first_hit = static_cast<int>(r) + 1;
        break;
      }
    }
    if (first_hit >= 1 && first_hit <= 1) ++hits1;
    if (first_hit >= 1 && first_hit <= 5) ++hits5;
    if (first_hit >= 1 && first_hit <= 10) ++hits10;
    if (outcomes) outcomes->push_back({query.id, first_hit});
  }
  RecallScores scores;
  scores.queries = static_cast<std::int64_t>(reference.size());
  if (scores.queries == 0) return scores;
  const double n = static_cast<double>(scores.queries);
  scores.r1 = 100.0 * hits1 / n;
  scores.r5 = 100.0 * hits5 / n;
  scores.r10 = 100.0 * hits10 / n;
  scores.mean_recall = (scores.r1 + scores.r5 + scores.r10) / 3.0;
  return scores;
}

std::string official_result_json(const RecallScores& scores) {
  nlohmann::ordered_json result;
  result["success"] = true;
  result["score"] = scores.mean_recall;
  result["scoreJson"] = {{"score", scores.mean_recall},
                         {"mean_recall", scores.mean_recall},
                         {"r1", scores.r1},
                         {"r5", scores.r5},
                         {"r10", scores.r10}};
  return result.dump();
}

std::string official_error_json(const std::string& message) {
  nlohmann::ordered_json result;
  result["success"] = false;
  result["score"] = 0;
  result["errorMsg"] = message;
  return result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json scores_json(const RecallScores& s) {
  return {{"r1", s.r1},
          {"r5", s.r5},
          {"r10", s.r10},
          {"mean_recall", s.mean_recall},
          {"queries", s.queries}};
}

}  // namespace shopclip
