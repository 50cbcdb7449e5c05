#pragma once
// What a run gets right and wrong on a split, and whether one run really beats another: the
// numbers behind `shopclip report` and `shopclip compare` (core/report/pages.h draws them).
//
// A run's results on a split are its prediction file (RUN_DIR/predictions/SPLIT.jsonl, written
// by train/eval) scored against the split's ground truth with the official rules (core/metrics).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/eval/metrics.h"
#include "data/muge.h"

namespace shopclip {

namespace data {
class WordSegmenter;
}

// One query of a split as a run answered it.
struct QueryResult {
  data::Query query;                 // with its ground-truth image ids
  std::vector<std::int64_t> ranked;  // the run's predicted ids, best first
  int first_hit_rank = 0;            // 1-based rank of the first correct id; 0 = none listed

  bool hit(int k) const { return first_hit_rank > 0 && first_hit_rank <= k; }
  // This query's share of MeanRecall: (hit@1 + hit@5 + hit@10) / 3 x 100; its mean over the
  // queries is the split's MeanRecall.
  double mean_recall() const;
};

struct RunResults {
  std::string run_dir, split;
  std::string data_root;             // where the split's files were read
  std::string images_file;           // the split's {split}_imgs.tsv
  std::vector<QueryResult> queries;  // in the reference file's order
  RecallScores scores;
};

struct RunResultsOptions {
  std::string data_root;       // empty: data.root of RUN_DIR/config.yaml
  std::string reference_file;  // empty: the split's own query file (it needs ground truth)
};

// Loads a run's predictions for `split` and scores them. Throws DataError naming the missing
// file (with the command that makes it) or the first query without a prediction, and when the
// reference queries carry no ground truth (a test split: give its answers as reference_file).
RunResults load_run_results(const std::string& run_dir, const std::string& split,
                            const RunResultsOptions& options = {});

// Recall of a group of queries (all x100).
struct GroupRecall {
  std::string group;
  std::int64_t queries = 0;
  double r1 = 0, r5 = 0, r10 = 0, mean_recall = 0;
};

GroupRecall recall_of(const std::string& group, const std::vector<const QueryResult*>& queries);

// By query length in characters: one group per [edges[i], edges[i+1]) and one for the rest
// ("≥ last edge"); empty groups are left out.
std::vector<GroupRecall> recall_by_length(const std::vector<QueryResult>& queries,
                                          const std::vector<int>& edges);

// By keyword: the `top` most frequent words (in at least `min_queries` queries), each group
// being the queries that contain the word; most frequent first.
std::vector<GroupRecall> recall_by_keyword(const std::vector<QueryResult>& queries,
                                           const data::WordSegmenter& segmenter, int top,
                                           int min_queries);

// The `count` worst queries: lowest per-query MeanRecall first, then no hit before a late hit,
// then more ground-truth images (more chances missed), then query id.
std::vector<const QueryResult*> worst_queries(const std::vector<QueryResult>& queries,
                                              std::size_t count);

// Training curves from RUN_DIR/metrics.jsonl: "train" rows (step, loss, lr) and "eval" rows
// (step, MeanRecall). Throws DataError naming the file and line of a malformed row.
struct TrainingCurves {
  std::vector<double> step, loss, lr;
  std::vector<double> eval_step, eval_mean_recall;
};
TrainingCurves read_training_curves(const std::string& metrics_path);

// Paired bootstrap of the mean difference b - a over queries (resampling queries with
// replacement). The p-value is two-sided for "no difference": the share of resampled means, shifted
// to the null, at least as far from zero as the observed mean, (1 + hits) / (1 + resamples).
struct PairedBootstrap {
  std::int64_t pairs = 0;
  int resamples = 0;
  double confidence = 0.95;
  double mean_difference = 0;  // mean of b - a
  double ci_low = 0, ci_high = 0;
  double p_value = 1;
};
PairedBootstrap paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b,
                                 int resamples, std::uint64_t seed, double confidence = 0.95);

struct RunComparison {
  RunResults a, b;
  PairedBootstrap mean_recall;  // on the per-query MeanRecall (b - a)
  // For k in {1, 5, 10}: queries that were a hit in A and a miss in B (lost), and the reverse
  // (gained), as indices into a.queries (= b.queries, paired by position).
  std::map<int, std::vector<std::size_t>> lost, gained;
};

// Pairs two runs' results on the same queries (the same reference file, in the same order; a
// mismatch throws DataError naming the first differing query).
RunComparison compare_runs(RunResults a, RunResults b, int resamples, std::uint64_t seed);

}  // namespace shopclip
