// Dataset and result inspection commands: data stats, data check, report, compare.

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include "core/log.h"
#include "launch/commands.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/report/analysis.h"
#include "core/report/pages.h"
#include "data/check.h"
#include "data/muge.h"
#include "data/segmenter.h"
#include "data/stats.h"
#include "data/thumbnails.h"

namespace shopclip {
namespace {

struct StatsCommandOptions {
  std::string root;        // MUGE dataset folder
  std::string out;         // report folder; empty: reports/stats-<basename of root>
  std::string dictionary;  // jieba-format dict.txt; empty: Debian python3-jieba's
  int threads = 0;
};

struct CheckCommandOptions {
  std::string root;
  std::string out;      // report folder; empty: reports/check-<basename of root>
  int max_listed = 20;  // findings per code printed (the JSON has all)
  int threads = 0;
  int min_side = 32, max_side = 4096, max_query_chars = 64;
  double max_aspect = 5.0;
};

struct ReportCommandOptions {
  std::string run_dir;
  std::string split = "valid";
  std::string data_root;  // empty: the run's data.root
  std::string reference;  // ground-truth queries when the split's own file has none (test)
  std::string out;        // empty: RUN_DIR/report/<split>.html
  std::string dictionary;
  int worst = 30;     // worst queries shown with thumbnails
  int keywords = 20;  // keyword groups in the breakdown
  int threads = 0;
};

struct CompareCommandOptions {
  std::string run_a, run_b;
  std::string split = "valid";
  std::string data_root, reference;
  std::string out;  // empty: reports/compare-<a>-vs-<b>-<split>.html
  int resamples = 10000;
  std::uint64_t seed = 1;
  int max_listed = 20;
  int threads = 0;
};

namespace fs = std::filesystem;
using nlohmann::json;

std::string base_name(const std::string& path) {
  auto name = fs::path(path).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(path).lexically_normal().parent_path().filename().string();
  return name.empty() ? "data" : name;
}

data::WordSegmenter load_segmenter(const std::string& dictionary, Logger& log) {
  const std::string path =
      dictionary.empty() ? data::WordSegmenter::default_dictionary_path() : dictionary;
  auto segmenter = data::WordSegmenter::from_file(path);
  log.info("word segmentation: {} words from {}", segmenter.size(), path);
  return segmenter;
}

// Progress in MiB of input through a ProgressBar.
class ByteProgress {
 public:
  ByteProgress(Logger& log, std::string label) : log_(log), label_(std::move(label)) {}
  void operator()(std::int64_t done, std::int64_t total) {
    if (!bar_) bar_ = std::make_unique<ProgressBar>(log_, label_, mib(total), "MiB");
    bar_->update(mib(done));
  }
  void finish() {
    if (bar_) bar_->finish();
  }

 private:
  static std::int64_t mib(std::int64_t bytes) { return (bytes + (1 << 20) - 1) >> 20; }
  Logger& log_;
  std::string label_;
  std::unique_ptr<ProgressBar> bar_;
};

void write_json(const std::string& path, const json& value) {
  data::write_file_atomic(path, value.dump(2) + "\n");
}

RunResults load_results(const std::string& run_dir, const std::string& split,
                        const std::string& data_root, const std::string& reference) {
  RunResultsOptions options;
  options.data_root = data_root;
  options.reference_file = reference;
  return load_run_results(run_dir, split, options);
}

json groups_json(const std::vector<GroupRecall>& groups) {
  json out = json::array();
  for (const auto& g : groups) {
    out.push_back({{"group", g.group},
                   {"queries", g.queries},
                   {"r1", g.r1},
                   {"r5", g.r5},
                   {"r10", g.r10},
                   {"mean_recall", g.mean_recall}});
  }
  return out;
}

json query_json(const QueryResult& q) {
  return {{"query_id", q.query.id},        {"text", q.query.text},
          {"line", q.query.line},          {"image_ids", q.query.image_ids},
          {"predicted", q.ranked},         {"first_hit_rank", q.first_hit_rank},
          {"mean_recall", q.mean_recall()}};
}

// ---- options ---------------------------------------------------------------------------------

void add_stats_options(CLI::App* command, StatsCommandOptions& options) {
  command->add_option("dir", options.root, "MUGE dataset folder")->required();
  command->add_option("--out", options.out,
                      "report folder (stats.html, stats.json); default reports/stats-<DIR name>");
  command->add_option("--dictionary", options.dictionary,
                      "jieba-format dict.txt for word segmentation (default: Debian "
                      "python3-jieba's, or $SHOPCLIP_JIEBA_DICT)");
  command->add_option("--threads", options.threads, "image decoding threads; 0 = all cores");
}

void add_check_options(CLI::App* command, CheckCommandOptions& options) {
  command->add_option("dir", options.root, "MUGE dataset folder")->required();
  command->add_option("--out", options.out,
                      "report folder (check.txt, check.json); default reports/check-<DIR name>");
  command->add_option("--max-listed", options.max_listed,
                      "findings printed per kind (0 = all; check.json has every one)");
  command->add_option("--threads", options.threads, "image decoding threads; 0 = all cores");
  command->add_option("--min-side", options.min_side, "warn below this many pixels per side");
  command->add_option("--max-side", options.max_side, "warn above this many pixels per side");
  command->add_option("--max-aspect", options.max_aspect, "warn above this long/short side ratio");
  command->add_option("--max-query-chars", options.max_query_chars,
                      "warn about queries longer than this (characters)");
}

void add_report_options(CLI::App* command, ReportCommandOptions& options) {
  command->add_option("run", options.run_dir, "run folder (train or eval wrote predictions)")
      ->required();
  command->add_option("--split", options.split, "split to analyse");
  command->add_option("--data", options.data_root, "dataset folder (default: the run's data.root)");
  command->add_option("--ref", options.reference,
                      "ground-truth queries when the split's file has none (test: "
                      "answers/test_texts.jsonl)");
  command->add_option("--out", options.out, "HTML page (default RUN/report/<split>.html)");
  command->add_option("--dictionary", options.dictionary, "jieba-format dict.txt");
  command->add_option("--worst", options.worst, "worst queries shown with their images");
  command->add_option("--keywords", options.keywords, "keywords in the recall breakdown");
  command->add_option("--threads", options.threads, "thumbnail threads; 0 = all cores");
}

void add_compare_options(CLI::App* command, CompareCommandOptions& options) {
  command->add_option("run_a", options.run_a, "run A (the baseline)")->required();
  command->add_option("run_b", options.run_b, "run B (the change)")->required();
  command->add_option("--split", options.split, "split both runs predicted");
  command->add_option("--data", options.data_root, "dataset folder (default: A's data.root)");
  command->add_option("--ref", options.reference, "ground-truth queries (test: its answers)");
  command->add_option("--out", options.out,
                      "HTML page (default reports/compare-<A>-vs-<B>-<split>.html)");
  command->add_option("--resamples", options.resamples, "bootstrap resamples");
  command->add_option("--seed", options.seed, "bootstrap random seed");
  command->add_option("--max-listed", options.max_listed, "changed queries listed per direction");
  command->add_option("--threads", options.threads, "thumbnail threads; 0 = all cores");
}

// ---- commands --------------------------------------------------------------------------------

int run_stats(const StatsCommandOptions& options, Logger& log) {
  const std::string out =
      options.out.empty() ? "reports/stats-" + base_name(options.root) : options.out;
  const auto segmenter = load_segmenter(options.dictionary, log);
  data::StatsOptions stats_options;
  stats_options.threads = options.threads;
  ByteProgress progress(log, "data stats");
  const auto stats = data::compute_dataset_stats(
      options.root, segmenter, stats_options,
      [&](std::int64_t done, std::int64_t total) { progress(done, total); });
  progress.finish();
  fs::create_directories(out);
  write_json(out + "/stats.json", stats.to_json());
  write_stats_page(stats, out + "/stats.html");
  for (const auto& s : stats.splits) {
    log.info(
        "{:<6} {:>8} queries ({:.1f} chars, {:.1f} words), {:>8} images ({:.0f} x {:.0f}), "
        "{} bad lines",
        s.split, s.queries, s.query_chars.mean(), s.query_words.mean(), s.images, s.width.mean(),
        s.height.mean(), s.bad_query_lines + s.bad_image_lines);
  }
  for (const auto& u : stats.unseen) {
    log.info("{}: {:.1f}% of distinct words ({:.1f}% of word occurrences) never appear in train",
             u.split, 100 * u.unseen_type_share(), 100 * u.unseen_token_share());
  }
  log.info("wrote {0}/stats.html and {0}/stats.json ({1:.1f} s)", out, stats.seconds);
  return 0;
}

int run_check(const CheckCommandOptions& options, Logger& log) {
  const std::string out =
      options.out.empty() ? "reports/check-" + base_name(options.root) : options.out;
  data::CheckOptions check_options;
  check_options.threads = options.threads;
  check_options.min_side = options.min_side;
  check_options.max_side = options.max_side;
  check_options.max_aspect = options.max_aspect;
  check_options.max_query_chars = options.max_query_chars;
  ByteProgress progress(log, "data check");
  const auto report =
      data::check_dataset(options.root, check_options,
                          [&](std::int64_t done, std::int64_t total) { progress(done, total); });
  progress.finish();
  fs::create_directories(out);
  const std::string text =
      report.to_text(static_cast<std::size_t>(std::max(0, options.max_listed)));
  data::write_file_atomic(out + "/check.txt", report.to_text(0));
  write_json(out + "/check.json", report.to_json());
  std::cout << text << std::flush;
  log.info("{} errors, {} warnings; wrote {}/check.txt and {}/check.json (exit status {})",
           report.errors(), report.warnings(), out, out, report.exit_status());
  return report.exit_status();
}

int run_report(const ReportCommandOptions& options, Logger& log) {
  RunReport report;
  report.results =
      load_results(options.run_dir, options.split, options.data_root, options.reference);
  const auto& results = report.results;
  const std::string metrics = options.run_dir + "/metrics.jsonl";
  if (fs::exists(metrics)) report.curves = read_training_curves(metrics);
  const auto segmenter = load_segmenter(options.dictionary, log);
  report.by_length = recall_by_length(results.queries, {1, 4, 7, 10, 13, 16, 21, 31});
  report.by_keyword = recall_by_keyword(
      results.queries, segmenter, options.keywords,
      /*min_queries=*/std::max<int>(3, static_cast<int>(results.queries.size() / 200)));
  report.worst = worst_queries(results.queries, static_cast<std::size_t>(options.worst));
  std::set<std::int64_t> ids;
  for (const auto* q : report.worst) {
    for (std::size_t r = 0; r < std::min<std::size_t>(10, q->ranked.size()); ++r)
      ids.insert(q->ranked[r]);
    for (const auto id : q->query.image_ids)
      ids.insert(id);
  }
  report.thumbnails = data::load_thumbnails(results.images_file, ids, 112, options.threads);
  const std::string out = options.out.empty()
                              ? fmt::format("{}/report/{}.html", options.run_dir, options.split)
                              : options.out;
  fs::create_directories(fs::path(out).parent_path().empty() ? "." : fs::path(out).parent_path());
  write_run_report(report, out);
  json numbers = {{"run", options.run_dir},
                  {"split", options.split},
                  {"scores", scores_json(results.scores)},
                  {"by_length", groups_json(report.by_length)},
                  {"by_keyword", groups_json(report.by_keyword)},
                  {"worst", json::array()}};
  for (const auto* q : report.worst)
    numbers["worst"].push_back(query_json(*q));
  const std::string json_path = fs::path(out).replace_extension(".json").string();
  write_json(json_path, numbers);
  log.info("{} on {}: R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} MeanRecall {:.2f} ({} queries)",
           options.run_dir, options.split, results.scores.r1, results.scores.r5, results.scores.r10,
           results.scores.mean_recall, results.scores.queries);
  log.info("wrote {} and {}", out, json_path);
  return 0;
}

int run_compare(const CompareCommandOptions& options, Logger& log) {
  auto a = load_results(options.run_a, options.split, options.data_root, options.reference);
  // B is scored against exactly the reference A used.
  auto b = load_results(options.run_b, options.split, a.data_root, options.reference);
  const auto comparison = compare_runs(std::move(a), std::move(b), options.resamples, options.seed);
  const auto listed = static_cast<std::size_t>(std::max(0, options.max_listed));
  std::cout << comparison_text(comparison, listed) << std::flush;
  const std::string out = options.out.empty() ? fmt::format("reports/compare-{}-vs-{}-{}.html",
                                                            base_name(options.run_a),
                                                            base_name(options.run_b), options.split)
                                              : options.out;
  fs::create_directories(fs::path(out).parent_path().empty() ? "." : fs::path(out).parent_path());
  const auto thumbnails = data::load_thumbnails(
      comparison.a.images_file, comparison_thumbnail_ids(comparison, listed), 112, options.threads);
  write_compare_page(comparison, thumbnails, listed, out);
  const auto& m = comparison.mean_recall;
  json numbers = {{"a", {{"run", options.run_a}, {"scores", scores_json(comparison.a.scores)}}},
                  {"b", {{"run", options.run_b}, {"scores", scores_json(comparison.b.scores)}}},
                  {"split", options.split},
                  {"mean_recall_difference",
                   {{"mean", m.mean_difference},
                    {"ci_low", m.ci_low},
                    {"ci_high", m.ci_high},
                    {"confidence", m.confidence},
                    {"p_value", m.p_value},
                    {"resamples", m.resamples},
                    {"pairs", m.pairs}}}};
  for (const auto& [name, changes] :
       {std::pair{"lost", &comparison.lost}, std::pair{"gained", &comparison.gained}}) {
    json by_k = json::object();
    for (const auto& [k, indices] : *changes) {
      json ids = json::array();
      for (const auto i : indices)
        ids.push_back(comparison.a.queries[i].query.id);
      by_k[fmt::format("at{}", k)] = ids;
    }
    numbers[name] = by_k;
  }
  const std::string json_path = fs::path(out).replace_extension(".json").string();
  write_json(json_path, numbers);
  log.info("wrote {} and {}", out, json_path);
  return 0;
}

}  // namespace

void register_inspect_commands(CommandRegistry& commands) {
  CLI::App* data = commands.group("data", "built-in dataset and dataset tools");
  auto stats = std::make_shared<StatsCommandOptions>();
  add_stats_options(
      commands.add(
          "stats", "statistics of a dataset's splits: an HTML page with charts and a JSON file",
          Processes::kOne,
          [stats](CommandContext& context) { return run_stats(*stats, context.log); }, data),
      *stats);
  auto check = std::make_shared<CheckCommandOptions>();
  add_check_options(
      commands.add(
          "check", "find problems in a dataset (exit 0 clean, 1 warnings, 2 errors)",
          Processes::kOne,
          [check](CommandContext& context) { return run_check(*check, context.log); }, data),
      *check);
  auto report = std::make_shared<ReportCommandOptions>();
  add_report_options(
      commands.add("report",
                   "HTML page of a run on a split: metrics, curves, breakdowns, worst queries",
                   Processes::kOne,
                   [report](CommandContext& context) { return run_report(*report, context.log); }),
      *report);
  auto compare = std::make_shared<CompareCommandOptions>();
  add_compare_options(
      commands.add(
          "compare", "paired comparison of two runs on a split (bootstrap CI, changed queries)",
          Processes::kOne,
          [compare](CommandContext& context) { return run_compare(*compare, context.log); }),
      *compare);
}

}  // namespace shopclip
