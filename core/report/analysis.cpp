#include "core/report/analysis.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "data/error.h"
#include "data/files.h"
#include "data/segmenter.h"
#include "data/stats.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using data::DataError;
using nlohmann::json;

void require_file(const std::string& path, const std::string& how_to_make_it) {
  if (!fs::exists(path)) throw DataError(fmt::format("{}: not found; {}", path, how_to_make_it));
}

double share(std::int64_t part, std::int64_t whole) {
  return whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

}  // namespace

double QueryResult::mean_recall() const {
  return 100.0 * (hit(1) + hit(5) + hit(10)) / 3.0;
}

RunResults load_run_results(const std::string& run_dir, const std::string& split,
                            const RunResultsOptions& options) {
  RunResults results;
  results.run_dir = run_dir;
  results.split = split;
  results.data_root = options.data_root;
  if (results.data_root.empty()) {
    const std::string config_path = run_dir + "/config.yaml";
    require_file(config_path, "is RUN_DIR a shopclip run folder? (or give --data)");
    results.data_root = Config::load(config_path).data.root;
  }
  const std::string predictions_path = fmt::format("{}/predictions/{}.jsonl", run_dir, split);
  require_file(predictions_path,
               fmt::format("make it with: shopclip eval --run {} --split {}", run_dir, split));

  data::QuerySchema schema = data::QuerySchema::kChineseClip;
  const std::string reference_path =
      options.reference_file.empty() ? data::find_queries_file(results.data_root, split, &schema)
                                     : options.reference_file;
  if (!options.reference_file.empty()) {
    schema = data::schema_of_queries_file(reference_path);
  }
  data::BadRowLog bad_rows;
  data::QueryReadOptions read_options;
  read_options.require_image_ids = false;
  auto reference = data::read_queries(reference_path, schema, bad_rows, read_options);
  if (!bad_rows.bad_rows().empty()) {
    const auto& first = bad_rows.bad_rows().front();
    throw DataError(fmt::format("{}:{}: {} ({} bad rows; `shopclip data check` lists them)",
                                first.file, first.line, first.reason, bad_rows.bad_rows().size()));
  }
  for (const auto& query : reference.queries) {
    if (query.image_ids.empty()) {
      throw DataError(
          fmt::format("{}:{}: query {} has no ground-truth images; a test split needs its answers "
                      "(--ref answers/test_texts.jsonl)",
                      reference_path, query.line, query.id));
    }
  }
  results.images_file = data::images_file(results.data_root, split);

  const auto predictions = data::read_predictions(predictions_path, schema);
  std::vector<QueryOutcome> outcomes;
  results.scores = muge_recall(reference.queries, predictions, &outcomes);
  std::map<std::int64_t, const data::Prediction*> by_query;
  for (const auto& prediction : predictions)
    by_query[prediction.query_id] = &prediction;
  results.queries.reserve(reference.queries.size());
  for (std::size_t i = 0; i < reference.queries.size(); ++i) {
    QueryResult result;
    result.query = reference.queries[i];
    result.ranked = by_query.at(result.query.id)->image_ids;  // muge_recall checked presence
    result.first_hit_rank = outcomes[i].first_hit_rank;
    results.queries.push_back(std::move(result));
  }
  return results;
}

GroupRecall recall_of(const std::string& group, const std::vector<const QueryResult*>& queries) {
  GroupRecall recall;
  recall.group = group;
  recall.queries = static_cast<std::int64_t>(queries.size());
  std::int64_t h1 = 0, h5 = 0, h10 = 0;
  for (const auto* q : queries) {
    h1 += q->hit(1);
    h5 += q->hit(5);
    h10 += q->hit(10);
  }
  recall.r1 = share(h1, recall.queries);
  recall.r5 = share(h5, recall.queries);
  recall.r10 = share(h10, recall.queries);
  recall.mean_recall = (recall.r1 + recall.r5 + recall.r10) / 3.0;
  return recall;
}

std::vector<GroupRecall> recall_by_length(const std::vector<QueryResult>& queries,
                                          const std::vector<int>& edges) {
  if (edges.empty() || !std::is_sorted(edges.begin(), edges.end()))
    throw std::invalid_argument("recall_by_length: edges must be ascending and not empty");
  std::vector<std::vector<const QueryResult*>> groups(edges.size());
  for (const auto& q : queries) {
    const auto length = data::count_code_points(q.query.text);
    // Group i holds [edges[i], edges[i+1]); the last group everything from the last edge on.
    const auto it = std::upper_bound(edges.begin(), edges.end(), length);
    const auto group = it == edges.begin() ? 0 : (it - edges.begin()) - 1;
    groups[static_cast<std::size_t>(group)].push_back(&q);
  }
  std::vector<GroupRecall> result;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    if (groups[i].empty()) continue;
    const std::string name = i + 1 < edges.size()
                                 ? (edges[i + 1] - edges[i] == 1
                                        ? fmt::format("{} chars", edges[i])
                                        : fmt::format("{}-{} chars", edges[i], edges[i + 1] - 1))
                                 : fmt::format("{}+ chars", edges[i]);
    result.push_back(recall_of(name, groups[i]));
  }
  return result;
}

std::vector<GroupRecall> recall_by_keyword(const std::vector<QueryResult>& queries,
                                           const data::WordSegmenter& segmenter, int top,
                                           int min_queries) {
  std::map<std::string, std::vector<const QueryResult*>> by_word;
  for (const auto& q : queries) {
    std::set<std::string> words;  // a word counts once per query
    for (const auto& word : segmenter.cut(q.query.text))
      if (data::is_countable_word(word)) words.insert(word);
    for (const auto& word : words)
      by_word[word].push_back(&q);
  }
  std::vector<std::pair<std::string, std::vector<const QueryResult*>>> ranked(by_word.begin(),
                                                                              by_word.end());
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.second.size() > b.second.size(); });
  std::vector<GroupRecall> result;
  for (const auto& [word, group] : ranked) {
    if (static_cast<int>(result.size()) >= top) break;
    if (static_cast<int>(group.size()) < min_queries) break;
    result.push_back(recall_of(word, group));
  }
  return result;
}

std::vector<const QueryResult*> worst_queries(const std::vector<QueryResult>& queries,
                                              std::size_t count) {
  std::vector<const QueryResult*> order;
  for (const auto& q : queries)
    order.push_back(&q);
  const auto miss_rank = [](const QueryResult* q) {
    return q->first_hit_rank == 0 ? 1 << 30 : q->first_hit_rank;
  };
  std::sort(order.begin(), order.end(), [&](const QueryResult* a, const QueryResult* b) {
    if (a->mean_recall() != b->mean_recall()) return a->mean_recall() < b->mean_recall();
    if (miss_rank(a) != miss_rank(b)) return miss_rank(a) > miss_rank(b);
    if (a->query.image_ids.size() != b->query.image_ids.size())
      return a->query.image_ids.size() > b->query.image_ids.size();
    return a->query.id < b->query.id;
  });
  if (order.size() > count) order.resize(count);
  return order;
}

TrainingCurves read_training_curves(const std::string& metrics_path) {
  data::LineReader reader(metrics_path);
  TrainingCurves curves;
  for (data::Line line; reader.next(&line);) {
    const std::int64_t number = line.number;
    if (line.blank()) continue;
    json row;
    data::parse_json_line(line.text, &row);  // not JSON: null, refused just below
    auto number_at = [&](const char* key) {
      if (!row.is_object() || !row.contains(key) || !row[key].is_number())
        throw DataError(fmt::format("{}:{}: no number \"{}\"", metrics_path, number, key));
      return row[key].get<double>();
    };
    if (!row.is_object() || !row.contains("type") || !row["type"].is_string())
      throw DataError(
          fmt::format("{}:{}: not a metrics row (JSON with \"type\")", metrics_path, number));
    const auto& type = row["type"].get_ref<const std::string&>();
    if (type == "train") {
      curves.step.push_back(number_at("step"));
      curves.loss.push_back(number_at("loss"));
      curves.lr.push_back(number_at("lr"));
    } else if (type == "eval") {
      curves.eval_step.push_back(number_at("step"));
      curves.eval_mean_recall.push_back(number_at("mean_recall"));
    }
  }
  return curves;
}

PairedBootstrap paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b,
                                 int resamples, std::uint64_t seed, double confidence) {
  if (a.size() != b.size() || a.empty())
    throw std::invalid_argument("paired_bootstrap: need two non-empty samples of equal size");
  if (resamples < 1 || !(confidence > 0 && confidence < 1))
    throw std::invalid_argument("paired_bootstrap: resamples >= 1 and confidence in (0, 1)");
  const std::size_t n = a.size();
  std::vector<double> difference(n);
  double observed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    difference[i] = b[i] - a[i];
    observed += difference[i];
  }
  observed /= static_cast<double>(n);

  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  std::vector<double> means(static_cast<std::size_t>(resamples));
  std::int64_t as_extreme = 0;
  for (auto& mean : means) {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i)
      sum += difference[pick(rng)];
    mean = sum / static_cast<double>(n);
    // Shifted to the null (mean 0): as far from 0 as what was observed? A tiny tolerance keeps
    // float noise in the sums from deciding ties.
    if (std::abs(mean - observed) >= std::abs(observed) - 1e-12) ++as_extreme;
  }
  std::sort(means.begin(), means.end());
  auto percentile = [&](double q) {
    const double position = q * static_cast<double>(means.size() - 1);
    const auto low = static_cast<std::size_t>(std::floor(position));
    const auto high = std::min(low + 1, means.size() - 1);
    return means[low] + (means[high] - means[low]) * (position - static_cast<double>(low));
  };
  PairedBootstrap result;
  result.pairs = static_cast<std::int64_t>(n);
  result.resamples = resamples;
  result.confidence = confidence;
  result.mean_difference = observed;
  result.ci_low = percentile((1 - confidence) / 2);
  result.ci_high = percentile(1 - (1 - confidence) / 2);
  result.p_value = std::min(1.0, (1.0 + static_cast<double>(as_extreme)) / (1.0 + resamples));
  return result;
}

RunComparison compare_runs(RunResults a, RunResults b, int resamples, std::uint64_t seed) {
  if (a.queries.size() != b.queries.size()) {
    throw DataError(fmt::format("{} has {} queries on {}, {} has {}: compare the same split",
                                a.run_dir, a.queries.size(), a.split, b.run_dir, b.queries.size()));
  }
  for (std::size_t i = 0; i < a.queries.size(); ++i) {
    if (a.queries[i].query.id != b.queries[i].query.id) {
      throw DataError(fmt::format(
          "query {} of {} is id {}, but id {} in {}: the runs were scored on different queries",
          i + 1, a.run_dir, a.queries[i].query.id, b.queries[i].query.id, b.run_dir));
    }
  }
  RunComparison comparison;
  std::vector<double> per_query_a, per_query_b;
  for (std::size_t i = 0; i < a.queries.size(); ++i) {
    per_query_a.push_back(a.queries[i].mean_recall());
    per_query_b.push_back(b.queries[i].mean_recall());
    for (int k : {1, 5, 10}) {
      if (a.queries[i].hit(k) && !b.queries[i].hit(k)) comparison.lost[k].push_back(i);
      if (!a.queries[i].hit(k) && b.queries[i].hit(k)) comparison.gained[k].push_back(i);
    }
  }
  comparison.mean_recall = paired_bootstrap(per_query_a, per_query_b, resamples, seed);
  comparison.a = std::move(a);
  comparison.b = std::move(b);
  return comparison;
}

}  // namespace shopclip
