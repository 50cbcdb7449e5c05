#pragma once
// The HTML pages of `data stats`, `report` and `compare`: self-contained files (inline SVG
// charts, thumbnails as data: URIs, no scripts) that open from disk in any browser.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/report/analysis.h"
#include "data/stats.h"

namespace shopclip {

// `data stats`: the splits side by side.
void write_stats_page(const data::DatasetStats& stats, const std::string& path);

// Everything `report` shows for one run on one split.
struct RunReport {
  RunResults results;
  TrainingCurves curves;  // empty when the run has no metrics.jsonl
  std::vector<GroupRecall> by_length;
  std::vector<GroupRecall> by_keyword;
  std::vector<const QueryResult*> worst;           // point into results.queries
  std::map<std::int64_t, std::string> thumbnails;  // image id -> JPEG bytes (empty: undecodable)
};
void write_run_report(const RunReport& report, const std::string& path);

// `compare`: the bootstrap, the per-query differences and the queries that changed, with
// thumbnails of their top predictions in both runs when given.
void write_compare_page(const RunComparison& comparison,
                        const std::map<std::int64_t, std::string>& thumbnails,
                        std::size_t max_listed, const std::string& path);

// The terminal version of the comparison: scores of both runs, the difference with its
// confidence interval and p-value, and up to max_listed changed queries per direction at @10.
std::string comparison_text(const RunComparison& comparison, std::size_t max_listed);

// Image ids whose thumbnails the comparison page shows (top predictions of listed queries).
std::set<std::int64_t> comparison_thumbnail_ids(const RunComparison& comparison,
                                                std::size_t max_listed);

}  // namespace shopclip
