#pragma once
// MUGE retrieval scoring, exactly as the official scorer: a query is a hit at K when ANY of its
// ground-truth image ids is among its first K predicted ids; R@K = hits / number of reference
// queries; MeanRecall = (R@1 + R@5 + R@10) / 3; all reported x100.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/muge.h"

namespace shopclip {

struct RecallScores {
  double r1 = 0, r5 = 0, r10 = 0;  // percentages
  double mean_recall = 0;          // percentage
  std::int64_t queries = 0;
};

// Per query: the 1-based rank of the first correct prediction, 0 when none is in the list.
struct QueryOutcome {
  std::int64_t query_id = 0;
  int first_hit_rank = 0;
};

// Scores predictions against reference queries (their image_ids are the ground truth). Every
// reference query must have a prediction, else DataError names the first one missing (the
// official scorer rejects such a file). Predictions for other queries are ignored.
RecallScores muge_recall(const std::vector<data::Query>& reference,
                         const std::vector<data::Prediction>& predictions,
                         std::vector<QueryOutcome>* outcomes = nullptr);

// The official output: {"success": true, "score": MR, "scoreJson": {"score": MR,
// "mean_recall": MR, "r1": .., "r5": .., "r10": ..}}.
std::string official_result_json(const RecallScores& scores);
// {"r1", "r5", "r10", "mean_recall", "queries"}: the scores as shopclip's own files record them
// (metrics.jsonl, summary.json, report and compare JSON).
nlohmann::json scores_json(const RecallScores& scores);
// {"success": false, "score": 0, "errorMsg": message}
std::string official_error_json(const std::string& message);

}  // namespace shopclip
