#include "core/report/pages.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "core/report/html.h"

namespace shopclip {
namespace {

using html::escape;

std::string number(double value, int decimals = 2) {
  return fmt::format("{:.{}f}", value, decimals);
}

std::string integer(std::int64_t value) {
  // Thousands separated by a thin space: 250 000 reads faster than 250000.
  std::string digits = std::to_string(value < 0 ? -value : value), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += "\u2009";
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

// One histogram per statistic, a series per split, each as a share of its split so that train
// (large) and valid/test (small) compare.
std::string split_histogram(const data::DatasetStats& stats, const std::string& title,
                            const data::Histogram data::SplitStats::*member,
                            const std::string& x_label, const std::string& unit) {
  std::vector<html::Bars> series;
  const data::Histogram* shape = nullptr;
  for (const auto& split : stats.splits) {
    const auto& histogram = split.*member;
    if (histogram.total() == 0) continue;
    shape = &histogram;
    html::Bars bars{split.split, {}};
    for (auto count : histogram.counts)
      bars.values.push_back(static_cast<double>(count));
    series.push_back(std::move(bars));
  }
  html::ChartOptions options;
  options.normalise = true;
  if (!shape) return html::histogram_svg(title, {}, {}, x_label, "%", options);
  return html::histogram_svg(title, shape->edges, series, x_label, unit, options);
}

std::string group_table(const std::vector<GroupRecall>& groups, const std::string& first_header) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : groups) {
    rows.push_back({escape(g.group), integer(g.queries), number(g.r1), number(g.r5), number(g.r10),
                    number(g.mean_recall)});
  }
  return html::table({first_header, "queries", "R@1", "R@5", "R@10", "MeanRecall"}, rows);
}

std::string group_chart(const std::string& title, const std::vector<GroupRecall>& groups) {
  std::vector<std::string> labels;
  html::Bars mean_recall{"MeanRecall", {}}, r10{"R@10", {}};
  for (const auto& g : groups) {
    labels.push_back(fmt::format("{} ({})", g.group, g.queries));
    mean_recall.values.push_back(g.mean_recall);
    r10.values.push_back(g.r10);
  }
  return html::bar_chart_svg(title, labels, {mean_recall, r10}, "recall (%)");
}

std::string scores_table(const std::vector<std::pair<std::string, RecallScores>>& runs) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& [name, s] : runs) {
    rows.push_back({escape(name), integer(s.queries), number(s.r1), number(s.r5), number(s.r10),
                    number(s.mean_recall)});
  }
  return html::table({"run", "queries", "R@1", "R@5", "R@10", "MeanRecall"}, rows);
}

std::string figure(const std::map<std::int64_t, std::string>& thumbnails, std::int64_t id,
                   const std::string& caption, const std::string& css_class) {
  const auto it = thumbnails.find(id);
  return html::thumbnail(it == thumbnails.end() ? std::string_view{} : it->second, caption,
                         css_class);
}

// A query's top-k predictions (hits marked) and, beside them, the ground-truth images it did
// not list (at most `max_missed`).
std::string prediction_strip(const QueryResult& q,
                             const std::map<std::int64_t, std::string>& thumbnails, std::size_t k,
                             std::size_t max_missed) {
  const std::set<std::int64_t> truth(q.query.image_ids.begin(), q.query.image_ids.end());
  std::vector<std::string> figures;
  for (std::size_t r = 0; r < std::min(k, q.ranked.size()); ++r) {
    const auto id = q.ranked[r];
    const bool hit = truth.count(id) > 0;
    figures.push_back(figure(thumbnails, id, fmt::format("#{} · {}{}", r + 1, id, hit ? " ✓" : ""),
                             hit ? "hit" : "miss"));
  }
  std::string out = html::thumbnail_grid(figures);
  const std::set<std::int64_t> listed(q.ranked.begin(),
                                      q.ranked.begin() + std::min(k, q.ranked.size()));
  std::vector<std::string> missed;
  std::size_t missed_total = 0;
  for (const auto id : q.query.image_ids) {
    if (listed.count(id)) continue;
    ++missed_total;
    if (missed.size() < max_missed)
      missed.push_back(figure(thumbnails, id, fmt::format("truth · {}", id), "missed-truth"));
  }
  if (!missed.empty()) {
    out += fmt::format("<p class=\"missed-label\">ground truth not in the top {}{}:</p>", k,
                       missed_total > missed.size()
                           ? fmt::format(" ({} of {} shown)", missed.size(), missed_total)
                           : std::string());
    out += html::thumbnail_grid(missed);
  }
  return out;
}

std::string rank_text(const QueryResult& q) {
  return q.first_hit_rank ? "#" + std::to_string(q.first_hit_rank) : "none in the list";
}

std::string query_heading(const QueryResult& q) {
  return fmt::format(
      "<h3 class=\"query\">{} <span class=\"meta\">(query {}, line {}; first hit: "
      "{}; {} relevant)</span></h3>",
      escape(q.query.text), q.query.id, q.query.line, rank_text(q), q.query.image_ids.size());
}

constexpr const char* kExtraStyle =
    "h3.query{margin:1.4em 0 .3em}span.meta{font-weight:normal;color:#666;font-size:.8em}"
    "p.missed-label{margin:.2em 0;color:#666}p.verdict{font-size:1.15em}";

}  // namespace

// ---- data stats ------------------------------------------------------------------------------

void write_stats_page(const data::DatasetStats& stats, const std::string& path) {
  html::Page page("Data statistics: " + stats.root);
  page.add_style(kExtraStyle);
  page.paragraph(
      fmt::format("{} split(s), computed in {:.1f} s. Histograms show each split as a "
                  "share of its own rows, so splits of different size compare.",
                  stats.splits.size(), stats.seconds));
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : stats.splits) {
    rows.push_back({escape(s.split), integer(s.queries), integer(s.images),
                    integer(s.bad_query_lines + s.bad_image_lines), integer(s.word_tokens),
                    integer(static_cast<std::int64_t>(s.word_counts.size())),
                    number(s.query_chars.mean(), 1), number(s.query_words.mean(), 1),
                    s.relevant_images.total() ? number(s.relevant_images.mean(), 2) : "–",
                    number(s.width.mean(), 0) + " × " + number(s.height.mean(), 0),
                    number(s.file_kib.mean(), 1)});
  }
  page.heading(2, "Overview");
  page.raw(
      html::table({"split", "queries", "images", "bad lines", "words", "distinct words",
                   "mean chars", "mean words", "relevant / query", "mean size (px)", "mean KiB"},
                  rows));

  page.heading(2, "Queries");
  page.raw(split_histogram(stats, "Query length in characters", &data::SplitStats::query_chars,
                           "characters", "queries"));
  page.raw(split_histogram(stats, "Query length in words", &data::SplitStats::query_words,
                           "words (segmented)", "queries"));
  page.raw(split_histogram(stats, "Relevant images per query", &data::SplitStats::relevant_images,
                           "relevant images", "queries"));

  page.heading(2, "Images");
  page.raw(split_histogram(stats, "Image width", &data::SplitStats::width, "pixels", "images"));
  page.raw(split_histogram(stats, "Image height", &data::SplitStats::height, "pixels", "images"));
  page.raw(split_histogram(stats, "Aspect ratio (width / height)", &data::SplitStats::aspect,
                           "width / height", "images"));
  page.raw(split_histogram(stats, "File size", &data::SplitStats::file_kib, "KiB", "images"));
  page.raw(split_histogram(stats, "Hue of colourful pixels", &data::SplitStats::hue,
                           "hue (degrees: 0 red, 120 green, 240 blue)", "pixels"));
  page.raw(split_histogram(stats, "Saturation", &data::SplitStats::saturation,
                           "saturation (0 grey, 1 pure colour)", "pixels"));

  page.heading(2, "Words");
  for (const auto& split_stats : stats.splits) {  // train, valid, test order
    const auto found = stats.top_words.find(split_stats.split);
    if (found == stats.top_words.end() || found->second.empty()) continue;
    const auto& [split, words] = *found;
    std::vector<std::string> labels;
    html::Bars counts{split, {}};
    for (const auto& w : words) {
      labels.push_back(w.word);
      counts.values.push_back(static_cast<double>(w.count));
    }
    page.raw(html::bar_chart_svg("Most frequent words: " + split, labels, {counts}, "occurrences"));
  }
  page.heading(2, "Domain terms");
  page.paragraph(
      "Words far more frequent in these queries than in general Chinese (the "
      "segmenter dictionary's counts): ratio of the two frequencies per million words.");
  {
    std::vector<std::string> labels;
    html::Bars ratio{"", {}};
    std::vector<std::vector<std::string>> term_rows;
    for (const auto& t : stats.domain_terms) {
      labels.push_back(t.word);
      ratio.values.push_back(std::log10(t.ratio));
      term_rows.push_back({escape(t.word), integer(t.count), number(t.query_per_million, 0),
                           number(t.general_per_million, 3), number(t.ratio, 0)});
    }
    page.raw(html::bar_chart_svg("Domain terms", labels, {ratio},
                                 "log10(query frequency / general frequency)"));
    page.raw(html::table(
        {"word", "count", "per million query words", "per million general words", "ratio"},
        term_rows));
  }
  page.heading(2, "Vocabulary unseen in train");
  {
    std::vector<std::vector<std::string>> unseen_rows;
    for (const auto& u : stats.unseen) {
      std::string examples;
      for (const auto& w : u.examples)
        examples += (examples.empty() ? "" : "、") + escape(w.word);
      unseen_rows.push_back({escape(u.split),
                             fmt::format("{} of {} ({:.1f}%)", u.unseen_word_types, u.word_types,
                                         100 * u.unseen_type_share()),
                             fmt::format("{} of {} ({:.1f}%)", u.unseen_word_tokens, u.word_tokens,
                                         100 * u.unseen_token_share()),
                             fmt::format("{} of {}", u.unseen_char_types, u.char_types), examples});
    }
    if (unseen_rows.empty()) page.paragraph("No train split: nothing to compare with.");
    page.raw(html::table({"split", "distinct words unseen", "word occurrences unseen",
                          "characters unseen", "most frequent unseen words"},
                         unseen_rows));
  }
  page.write(path);
}

// ---- report ----------------------------------------------------------------------------------

void write_run_report(const RunReport& report, const std::string& path) {
  const auto& results = report.results;
  html::Page page(fmt::format("Run report: {} on {}", results.run_dir, results.split));
  page.add_style(kExtraStyle);
  page.paragraph(
      fmt::format("Predictions {}/predictions/{}.jsonl scored against the ground "
                  "truth in {} with the official rules.",
                  results.run_dir, results.split, results.data_root));
  page.heading(2, "Metrics");
  page.raw(scores_table({{results.run_dir, results.scores}}));

  page.heading(2, "Training curves");
  const auto& c = report.curves;
  if (c.step.empty() && c.eval_step.empty()) {
    page.paragraph("The run has no metrics.jsonl rows.");
  } else {
    page.raw(html::line_chart_svg("Training loss", {{"loss", c.step, c.loss}}, "step", "loss"));
    page.raw(
        html::line_chart_svg("Learning rate", {{"lr", c.step, c.lr}}, "step", "learning rate"));
    page.raw(html::line_chart_svg("Valid MeanRecall",
                                  {{"MeanRecall", c.eval_step, c.eval_mean_recall}}, "step",
                                  "MeanRecall (%)"));
  }

  page.heading(2, "Recall by query length");
  page.raw(group_chart("Recall by query length (queries)", report.by_length));
  page.raw(group_table(report.by_length, "length"));
  page.heading(2, "Recall by keyword");
  page.raw(group_chart("Recall by frequent keyword (queries)", report.by_keyword));
  page.raw(group_table(report.by_keyword, "keyword"));

  page.heading(2, fmt::format("The {} worst queries", report.worst.size()));
  page.paragraph(
      "Each query's top 10 in rank order (green: relevant, red: not), then the "
      "relevant images it did not list (dashed).");
  for (const auto* q : report.worst) {
    page.raw(query_heading(*q));
    page.raw(prediction_strip(*q, report.thumbnails, 10, 10));
  }
  page.write(path);
}

// ---- compare ---------------------------------------------------------------------------------

std::set<std::int64_t> comparison_thumbnail_ids(const RunComparison& comparison,
                                                std::size_t max_listed) {
  std::set<std::int64_t> ids;
  for (const auto* changes : {&comparison.lost, &comparison.gained}) {
    const auto it = changes->find(10);
    if (it == changes->end()) continue;
    for (std::size_t n = 0; n < std::min(max_listed, it->second.size()); ++n) {
      const auto i = it->second[n];
      for (const auto* q : {&comparison.a.queries[i], &comparison.b.queries[i]}) {
        for (std::size_t r = 0; r < std::min<std::size_t>(5, q->ranked.size()); ++r)
          ids.insert(q->ranked[r]);
        for (std::size_t r = 0; r < std::min<std::size_t>(3, q->query.image_ids.size()); ++r)
          ids.insert(q->query.image_ids[r]);
      }
    }
  }
  return ids;
}

std::string comparison_text(const RunComparison& comparison, std::size_t max_listed) {
  const auto& a = comparison.a;
  const auto& b = comparison.b;
  const auto& m = comparison.mean_recall;
  std::string out;
  out += fmt::format("{} queries of {}\n", m.pairs, a.split);
  out += fmt::format("  A {:<40} R@1 {:6.2f}  R@5 {:6.2f}  R@10 {:6.2f}  MeanRecall {:6.2f}\n",
                     a.run_dir, a.scores.r1, a.scores.r5, a.scores.r10, a.scores.mean_recall);
  out += fmt::format("  B {:<40} R@1 {:6.2f}  R@5 {:6.2f}  R@10 {:6.2f}  MeanRecall {:6.2f}\n",
                     b.run_dir, b.scores.r1, b.scores.r5, b.scores.r10, b.scores.mean_recall);
  out += fmt::format(
      "MeanRecall B - A: {:+.2f}, {:.0f}% CI [{:+.2f}, {:+.2f}], p = {:.4f} "
      "(paired bootstrap, {} resamples)\n",
      m.mean_difference, 100 * m.confidence, m.ci_low, m.ci_high, m.p_value, m.resamples);
  for (int k : {1, 5, 10}) {
    const auto lost = comparison.lost.count(k) ? comparison.lost.at(k).size() : 0;
    const auto gained = comparison.gained.count(k) ? comparison.gained.at(k).size() : 0;
    out += fmt::format("@{:<2}: {} queries hit in A only (lost), {} in B only (gained)\n", k, lost,
                       gained);
  }
  auto list = [&](const char* title, const std::map<int, std::vector<std::size_t>>& changes) {
    const auto it = changes.find(10);
    if (it == changes.end() || it->second.empty()) return;
    out += fmt::format("{} at @10:\n", title);
    for (std::size_t n = 0; n < std::min(max_listed, it->second.size()); ++n) {
      const auto i = it->second[n];
      out += fmt::format("  {:>8}  {}  (first hit: A {}, B {})\n", a.queries[i].query.id,
                         a.queries[i].query.text, rank_text(a.queries[i]), rank_text(b.queries[i]));
    }
    if (it->second.size() > max_listed)
      out += fmt::format("  ... and {} more\n", it->second.size() - max_listed);
  };
  list("Lost (hit in A, miss in B)", comparison.lost);
  list("Gained (miss in A, hit in B)", comparison.gained);
  return out;
}

void write_compare_page(const RunComparison& comparison,
                        const std::map<std::int64_t, std::string>& thumbnails,
                        std::size_t max_listed, const std::string& path) {
  const auto& a = comparison.a;
  const auto& b = comparison.b;
  const auto& m = comparison.mean_recall;
  html::Page page(fmt::format("Comparison on {}: A = {}, B = {}", a.split, a.run_dir, b.run_dir));
  page.add_style(kExtraStyle);
  page.raw(scores_table({{"A: " + a.run_dir, a.scores}, {"B: " + b.run_dir, b.scores}}));
  const bool significant = m.p_value < 1 - m.confidence;
  page.raw(fmt::format(
      "<p class=\"verdict\">MeanRecall B − A: <b>{:+.2f}</b>, {:.0f}% confidence interval "
      "[{:+.2f}, {:+.2f}], p = {:.4f} ({} queries, paired bootstrap with {} resamples): {}.</p>",
      m.mean_difference, 100 * m.confidence, m.ci_low, m.ci_high, m.p_value, m.pairs, m.resamples,
      significant ? (m.mean_difference > 0 ? "B is better" : "A is better")
                  : "no significant difference"));

  // Per-query MeanRecall difference: each query moves in steps of 33.3 points.
  std::vector<double> edges;
  for (int e = -100; e <= 100; e += 33)
    edges.push_back(e - 16.5);
  edges.push_back(edges.back() + 33);
  html::Bars counts{"queries", std::vector<double>(edges.size() - 1, 0.0)};
  for (std::size_t i = 0; i < a.queries.size(); ++i) {
    const double d = b.queries[i].mean_recall() - a.queries[i].mean_recall();
    const auto bin = std::upper_bound(edges.begin() + 1, edges.end() - 1, d) - (edges.begin() + 1);
    counts.values[static_cast<std::size_t>(bin)] += 1;
  }
  page.raw(html::histogram_svg("Per-query MeanRecall difference (B − A)", edges, {counts}, "points",
                               "queries"));

  std::vector<std::string> labels;
  html::Bars lost{"lost (A only)", {}}, gained{"gained (B only)", {}};
  for (int k : {1, 5, 10}) {
    labels.push_back(fmt::format("hit@{}", k));
    lost.values.push_back(comparison.lost.count(k) ? comparison.lost.at(k).size() : 0);
    gained.values.push_back(comparison.gained.count(k) ? comparison.gained.at(k).size() : 0);
  }
  page.raw(html::bar_chart_svg("Queries that changed", labels, {lost, gained}, "queries"));

  auto section = [&](const std::string& title,
                     const std::map<int, std::vector<std::size_t>>& changes) {
    const auto it = changes.find(10);
    const std::size_t total = it == changes.end() ? 0 : it->second.size();
    page.heading(2, fmt::format("{} at @10: {} queries", title, total));
    if (total == 0) return;
    if (total > max_listed) page.paragraph(fmt::format("The first {} are shown.", max_listed));
    for (std::size_t n = 0; n < std::min(max_listed, total); ++n) {
      const auto i = it->second[n];
      page.raw(query_heading(a.queries[i]));
      page.raw("<p class=\"missed-label\">A</p>" +
               prediction_strip(a.queries[i], thumbnails, 5, 0));
      page.raw("<p class=\"missed-label\">B</p>" +
               prediction_strip(b.queries[i], thumbnails, 5, 3));
    }
  };
  section("Lost (hit in A, miss in B)", comparison.lost);
  section("Gained (miss in A, hit in B)", comparison.gained);
  page.write(path);
}

}  // namespace shopclip
