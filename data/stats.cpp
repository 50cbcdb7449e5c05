#include "data/stats.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/files.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/segmenter.h"
#include "data/utf8.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Decodes one UTF-8 sequence at text[i]; returns the code point and advances i. An invalid byte
// decodes to itself (as U+FFFD would hide which byte it was) and advances by one.
char32_t next_code_point(std::string_view text, std::size_t& i) {
  char32_t code_point = 0;
  const std::size_t length = decode_utf8(text, i, &code_point);
  if (length == 0) return static_cast<unsigned char>(text[i++]);
  i += length;
  return code_point;
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0xF900 && c <= 0xFAFF);
}

bool is_alnum_ascii(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Full-width letters and digits (Ａ-Ｚ, ａ-ｚ, ０-９) and Latin letters with accents count as
// letters too.
bool is_letter_or_digit(char32_t c) {
  return is_alnum_ascii(c) || is_cjk(c) || (c >= 0xFF10 && c <= 0xFF19) ||
         (c >= 0xFF21 && c <= 0xFF3A) || (c >= 0xFF41 && c <= 0xFF5A) ||
         (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7);
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

std::int64_t file_size_or_zero(const std::string& path) {
  std::error_code error;
  const auto size = fs::file_size(path, error);
  return error ? 0 : static_cast<std::int64_t>(size);
}

// Reports progress across all files: each file adds its own offset to what came before.
class ProgressCounter {
 public:
  ProgressCounter(const StatsProgress& progress, std::int64_t total)
      : progress_(progress), total_(total) {}
  void at(std::int64_t file_offset) {
    if (progress_) progress_(done_before_ + file_offset, total_);
  }
  void file_done(std::int64_t file_size) { done_before_ += file_size; }

 private:
  const StatsProgress& progress_;
  std::int64_t total_, done_before_ = 0;
};

void add_query_stats(const std::string& path, QuerySchema schema, const WordSegmenter& segmenter,
                     SplitStats& stats, ProgressCounter& progress) {
  LineReader reader(path);
  const QueryFields fields = query_fields(schema);
  const char* id_key = fields.id;
  const char* text_key = fields.text;
  const char* images_key = fields.images;
  Line line;
  while (reader.next(&line)) {
    if (line.number % 4096 == 0) progress.at(reader.bytes_read());
    if (line.blank()) continue;
    json row;
    parse_json_line(line.text, &row);  // not JSON: null, counted as a bad line below
    if (!row.is_object() || !row.contains(id_key) || !row.contains(text_key) ||
        !row[text_key].is_string() || !is_valid_utf8(row[text_key].get_ref<const std::string&>())) {
      ++stats.bad_query_lines;
      continue;
    }
    const std::string text = trim(row[text_key].get_ref<const std::string&>());
    ++stats.queries;
    stats.query_chars.add(static_cast<double>(count_code_points(text)));
    std::int64_t words = 0;
    for (const auto& word : segmenter.cut(text)) {
      if (!is_countable_word(word)) continue;
      ++words;
      ++stats.word_counts[word];
    }
    stats.word_tokens += words;
    stats.query_words.add(static_cast<double>(words));
    if (row.contains(images_key) && row[images_key].is_array() && !row[images_key].empty())
      stats.relevant_images.add(static_cast<double>(row[images_key].size()));
  }
}

// What one image contributes; computed in parallel, added in file order.
struct ImageFacts {
  bool ok = false;
  int width = 0, height = 0;
  std::int64_t bytes = 0;
  Histogram hue = Histogram::uniform(0, 360, 36);
  Histogram saturation = Histogram::uniform(0, 1, 20);
};

void hue_and_saturation(const Image& image, int stride, ImageFacts& facts) {
  for (int y = stride / 2; y < image.height; y += stride) {
    for (int x = stride / 2; x < image.width; x += stride) {
      const std::uint8_t* p = &image.rgb[(static_cast<std::size_t>(y) * image.width + x) * 3];
      const int r = p[0], g = p[1], b = p[2];
      const int high = std::max({r, g, b}), low = std::min({r, g, b});
      const double saturation = high == 0 ? 0.0 : double(high - low) / high;
      facts.saturation.add(saturation);
      if (saturation < 0.15 || high < 0.15 * 255) continue;  // grey: no meaningful hue
      facts.hue.add(hue_degrees(r, g, b));
    }
  }
}

}  // namespace

double hue_degrees(int r, int g, int b) {
  const int high = std::max({r, g, b}), low = std::min({r, g, b});
  const double delta = high - low;
  // 60 * difference is an exact integer: one division, one rounding (the textbook form with
  // fmod(x + 6, 6) rounds twice and put exact multiples of 10 degrees just below their bin).
  if (high == r) {
    const double hue = 60.0 * (g - b) / delta;
    return hue < 0 ? hue + 360.0 : hue;
  }
  if (high == g) return 60.0 * (b - r) / delta + 120.0;
  return 60.0 * (r - g) / delta + 240.0;
}

namespace {

void add_image_stats(const std::string& path, const StatsOptions& options, SplitStats& stats,
                     ProgressCounter& progress) {
  LineReader reader(path);
  std::vector<std::string> fields;
  auto flush = [&] {
    std::vector<ImageFacts> facts(fields.size());
    parallel_for(0, fields.size(), resolve_threads(options.threads), [&](std::size_t i) {
      try {
        const std::string bytes = decode_base64(fields[i]);
        const Image image = decode_image(bytes);
        facts[i].ok = true;
        facts[i].width = image.width;
        facts[i].height = image.height;
        facts[i].bytes = static_cast<std::int64_t>(bytes.size());
        hue_and_saturation(image, std::max(1, options.pixel_stride), facts[i]);
      } catch (const DataError&) {
        facts[i].ok = false;  // corrupt: counted below, reported by `data check`
      }
    });
    for (const auto& f : facts) {
      if (!f.ok) {
        ++stats.bad_image_lines;
        continue;
      }
      ++stats.images;
      stats.width.add(f.width);
      stats.height.add(f.height);
      stats.aspect.add(double(f.width) / std::max(1, f.height));
      stats.file_kib.add(f.bytes / 1024.0);
      stats.hue.merge(f.hue);
      stats.saturation.merge(f.saturation);
    }
    fields.clear();
    progress.at(reader.bytes_read());
  };
  Line read;
  while (reader.next(&read)) {
    if (read.blank()) continue;
    const std::string_view line = read.text;
    const auto tab = line.find('\t');
    if (tab == std::string_view::npos || tab + 1 == line.size()) {
      ++stats.bad_image_lines;
      continue;
    }
    fields.emplace_back(line.substr(tab + 1));
    if (static_cast<int>(fields.size()) >= std::max(1, options.image_batch)) flush();
  }
  flush();
}

std::vector<WordCount> most_frequent(const std::map<std::string, std::int64_t>& counts,
                                     std::size_t limit) {
  std::vector<WordCount> words;
  words.reserve(counts.size());
  for (const auto& [word, count] : counts)
    words.push_back({word, count});
  // Ties in a fixed order (the word), so reports never depend on hash order.
  std::sort(words.begin(), words.end(), [](const WordCount& a, const WordCount& b) {
    return a.count != b.count ? a.count > b.count : a.word < b.word;
  });
  if (words.size() > limit) words.resize(limit);
  return words;
}

std::set<char32_t> characters_of(const std::map<std::string, std::int64_t>& counts) {
  std::set<char32_t> chars;
  for (const auto& item : counts) {
    std::size_t i = 0;
    while (i < item.first.size())
      chars.insert(next_code_point(item.first, i));
  }
  return chars;
}

json words_json(const std::vector<WordCount>& words) {
  json out = json::array();
  for (const auto& w : words)
    out.push_back({{"word", w.word}, {"count", w.count}});
  return out;
}

}  // namespace

// ---- Histogram -------------------------------------------------------------------------------

Histogram Histogram::uniform(double low, double high, int bins) {
  if (!(high > low) || bins < 1)
    throw std::invalid_argument("Histogram: need high > low, bins >= 1");
  Histogram h;
  for (int i = 0; i <= bins; ++i)
    h.edges.push_back(low + (high - low) * i / bins);
  h.counts.assign(bins, 0);
  return h;
}

Histogram Histogram::geometric(double low, double high, int bins) {
  if (!(low > 0) || !(high > low) || bins < 1)
    throw std::invalid_argument("Histogram: need high > low > 0, bins >= 1");
  Histogram h;
  for (int i = 0; i <= bins; ++i)
    h.edges.push_back(low * std::pow(high / low, double(i) / bins));
  h.counts.assign(bins, 0);
  return h;
}

void Histogram::add(double value, std::int64_t weight) {
  if (std::isnan(value) || counts.empty()) return;
  const auto bin =
      std::upper_bound(edges.begin() + 1, edges.end() - 1, value) - (edges.begin() + 1);
  if (weight <= 0) return;
  counts[static_cast<std::size_t>(bin)] += weight;
  min = values == 0 ? value : std::min(min, value);
  max = values == 0 ? value : std::max(max, value);
  values += weight;
  sum += value * static_cast<double>(weight);
}

void Histogram::merge(const Histogram& other) {
  if (other.edges != edges) throw std::invalid_argument("Histogram::merge: different bin edges");
  if (other.values == 0) return;
  for (std::size_t i = 0; i < counts.size(); ++i)
    counts[i] += other.counts[i];
  min = values == 0 ? other.min : std::min(min, other.min);
  max = values == 0 ? other.max : std::max(max, other.max);
  values += other.values;
  sum += other.sum;
}

double Histogram::mean() const {
  const auto n = total();
  return n ? sum / static_cast<double>(n) : 0.0;
}

double Histogram::quantile(double q) const {
  const auto n = total();
  if (n == 0) return 0.0;
  const double target = std::clamp(q, 0.0, 1.0) * static_cast<double>(n);
  double seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    if (seen + static_cast<double>(counts[i]) >= target) {
      // Interpolate inside the bin, clamped to the observed range (open-ended outer bins).
      const double low = std::max(edges[i], min), high = std::min(edges[i + 1], max);
      const double within = (target - seen) / static_cast<double>(counts[i]);
      return std::clamp(low + (high - low) * within, min, max);
    }
    seen += static_cast<double>(counts[i]);
  }
  return max;
}

json Histogram::to_json() const {
  const auto n = total();
  return {{"edges", edges},          {"counts", counts},     {"total", n},
          {"mean", mean()},          {"min", n ? min : 0.0}, {"max", n ? max : 0.0},
          {"median", quantile(0.5)}, {"p90", quantile(0.9)}};
}

double UnseenVocabulary::unseen_type_share() const {
  return word_types ? double(unseen_word_types) / double(word_types) : 0.0;
}

double UnseenVocabulary::unseen_token_share() const {
  return word_tokens ? double(unseen_word_tokens) / double(word_tokens) : 0.0;
}

// ---- helpers ---------------------------------------------------------------------------------

std::int64_t count_code_points(std::string_view text) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < text.size(); ++n)
    next_code_point(text, i);
  return n;
}

bool is_countable_word(const std::string& token) {
  for (std::size_t i = 0; i < token.size();)
    if (is_letter_or_digit(next_code_point(token, i))) return true;
  return false;
}

// ---- the whole dataset -----------------------------------------------------------------------

DatasetStats compute_dataset_stats(const std::string& root, const WordSegmenter& segmenter,
                                   const StatsOptions& options, const StatsProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  DatasetStats result;
  result.root = root;
  struct Plan {
    SplitStats stats;
    QuerySchema schema = QuerySchema::kChineseClip;
  };
  std::vector<Plan> plans;
  std::int64_t total_bytes = 0;
  for (const std::string split : {"train", "valid", "test"}) {
    Plan plan;
    plan.stats.split = split;
    const SplitFiles files = find_split_files(root, split);
    // find_queries_file refuses a split with both schemas, naming the two files.
    if (files.has_queries()) plan.stats.queries_file = find_queries_file(root, split, &plan.schema);
    if (files.has_images) plan.stats.images_file = files.images;
    if (plan.stats.queries_file.empty() && plan.stats.images_file.empty()) continue;
    total_bytes +=
        file_size_or_zero(plan.stats.queries_file) + file_size_or_zero(plan.stats.images_file);
    plans.push_back(std::move(plan));
  }
  if (plans.empty()) {
    throw DataError(fmt::format(
        "{}: no MUGE split files ({{train,valid,test}}_texts.jsonl, _queries.jsonl or _imgs.tsv)",
        root));
  }

  ProgressCounter counter(progress, total_bytes);
  for (auto& plan : plans) {
    auto& stats = plan.stats;
    if (!stats.queries_file.empty()) {
      add_query_stats(stats.queries_file, plan.schema, segmenter, stats, counter);
      counter.file_done(file_size_or_zero(stats.queries_file));
    }
    if (!stats.images_file.empty()) {
      add_image_stats(stats.images_file, options, stats, counter);
      counter.file_done(file_size_or_zero(stats.images_file));
    }
    result.top_words[stats.split] = most_frequent(stats.word_counts, options.top_words);
    result.splits.push_back(std::move(stats));
  }

  // Domain terms over all queries: relative frequency against the dictionary's (add-one, so a
  // word the dictionary lacks, such as a brand, gets a large but finite ratio).
  std::map<std::string, std::int64_t> all_words;
  std::int64_t all_tokens = 0;
  for (const auto& split : result.splits) {
    for (const auto& [word, count] : split.word_counts)
      all_words[word] += count;
    all_tokens += split.word_tokens;
  }
  const double dictionary_total = static_cast<double>(segmenter.total_frequency()) + 1.0;
  for (const auto& [word, count] : all_words) {
    if (count < options.min_domain_count || all_tokens == 0) continue;
    DomainTerm term;
    term.word = word;
    term.count = count;
    term.query_per_million = 1e6 * double(count) / double(all_tokens);
    term.general_per_million = 1e6 * (double(segmenter.frequency(word)) + 1.0) / dictionary_total;
    term.ratio = term.query_per_million / term.general_per_million;
    result.domain_terms.push_back(term);
  }
  std::sort(result.domain_terms.begin(), result.domain_terms.end(),
            [](const DomainTerm& a, const DomainTerm& b) {
              return a.ratio != b.ratio ? a.ratio > b.ratio : a.word < b.word;
            });
  if (result.domain_terms.size() > static_cast<std::size_t>(options.domain_terms))
    result.domain_terms.resize(options.domain_terms);

  // Vocabulary of valid/test that train never shows.
  const SplitStats* train = nullptr;
  for (const auto& split : result.splits)
    if (split.split == "train") train = &split;
  if (train) {
    const auto train_chars = characters_of(train->word_counts);
    for (const auto& split : result.splits) {
      if (&split == train) continue;
      UnseenVocabulary unseen;
      unseen.split = split.split;
      std::map<std::string, std::int64_t> unseen_counts;
      for (const auto& [word, count] : split.word_counts) {
        ++unseen.word_types;
        unseen.word_tokens += count;
        if (train->word_counts.count(word)) continue;
        ++unseen.unseen_word_types;
        unseen.unseen_word_tokens += count;
        unseen_counts[word] = count;
      }
      const auto chars = characters_of(split.word_counts);
      unseen.char_types = static_cast<std::int64_t>(chars.size());
      for (char32_t c : chars)
        if (!train_chars.count(c)) ++unseen.unseen_char_types;
      unseen.examples = most_frequent(unseen_counts, 20);
      result.unseen.push_back(std::move(unseen));
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

json DatasetStats::to_json() const {
  json out;
  out["format_version"] = 1;
  out["root"] = root;
  out["seconds"] = seconds;
  out["splits"] = json::array();
  for (const auto& s : splits) {
    json split = {{"split", s.split},
                  {"queries_file", s.queries_file},
                  {"images_file", s.images_file},
                  {"queries", s.queries},
                  {"images", s.images},
                  {"bad_query_lines", s.bad_query_lines},
                  {"bad_image_lines", s.bad_image_lines},
                  {"word_tokens", s.word_tokens},
                  {"word_types", s.word_counts.size()},
                  {"query_chars", s.query_chars.to_json()},
                  {"query_words", s.query_words.to_json()},
                  {"relevant_images", s.relevant_images.to_json()},
                  {"width", s.width.to_json()},
                  {"height", s.height.to_json()},
                  {"aspect", s.aspect.to_json()},
                  {"file_kib", s.file_kib.to_json()},
                  {"hue", s.hue.to_json()},
                  {"saturation", s.saturation.to_json()}};
    const auto top = top_words.find(s.split);
    split["top_words"] =
        words_json(top == top_words.end() ? std::vector<WordCount>{} : top->second);
    out["splits"].push_back(split);
  }
  out["domain_terms"] = json::array();
  for (const auto& t : domain_terms) {
    out["domain_terms"].push_back({{"word", t.word},
                                   {"count", t.count},
                                   {"query_per_million", t.query_per_million},
                                   {"general_per_million", t.general_per_million},
                                   {"ratio", t.ratio}});
  }
  out["unseen"] = json::array();
  for (const auto& u : unseen) {
    out["unseen"].push_back({{"split", u.split},
                             {"word_types", u.word_types},
                             {"unseen_word_types", u.unseen_word_types},
                             {"unseen_type_share", u.unseen_type_share()},
                             {"word_tokens", u.word_tokens},
                             {"unseen_word_tokens", u.unseen_word_tokens},
                             {"unseen_token_share", u.unseen_token_share()},
                             {"char_types", u.char_types},
                             {"unseen_char_types", u.unseen_char_types},
                             {"examples", words_json(u.examples)}});
  }
  return out;
}

}  // namespace shopclip::data
