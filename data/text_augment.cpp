#include "data/text_augment.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "data/files.h"

namespace shopclip::data {
namespace {

using nlohmann::json;

// A line without surrounding ASCII white space.
std::string_view trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

// The lines of a word file that carry words: not blank, not a '#' comment, valid UTF-8.
template <class Fn>
void for_each_word_line(const std::string& path, Fn&& fn) {
  LineReader reader(path);
  Line line;
  while (reader.next(&line)) {
    const std::string_view text = trimmed(line.text);
    if (text.empty() || text.front() == '#') continue;
    std::size_t bad_byte = 0;
    if (!is_valid_utf8(text, &bad_byte)) {
      reader.fail(line, fmt::format("invalid UTF-8 at byte {}", bad_byte + 1));
    }
    fn(reader, line, text);
  }
}

bool ascii_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

}  // namespace

TextVariants read_text_variants(const std::string& path, const QuerySet& queries) {
  std::unordered_map<std::int64_t, const std::string*> text_of;
  for (const auto& query : queries.queries)
    text_of[query.id] = &query.text;
  TextVariants variants;
  LineReader reader(path);
  Line line;
  while (reader.next(&line)) {
    if (line.blank()) continue;
    const json row = reader.parse_json(line);
    if (!row.is_object() || !row.contains("text_id") || !row.contains("variants")) {
      reader.fail(line, "expected an object with 'text_id' and 'variants'");
    }
    if (!row["text_id"].is_number_integer()) reader.fail(line, "'text_id' is not an integer");
    const auto id = row["text_id"].get<std::int64_t>();
    const auto query = text_of.find(id);
    if (query == text_of.end()) {
      reader.fail(line, fmt::format("text_id {} is not a query of {}", id, queries.file));
    }
    if (!row["variants"].is_array()) reader.fail(line, "'variants' is not a list");
    auto& list = variants[*query->second];
    for (const auto& variant : row["variants"]) {
      if (!variant.is_string() || variant.get<std::string>().empty()) {
        reader.fail(line, "every variant must be a non-empty string");
      }
      list.push_back(variant.get<std::string>());
    }
  }
  return variants;
}

VariantSubstitution::VariantSubstitution(TextVariants variants, double probability)
    : variants_(std::move(variants)), probability_(probability) {
  if (probability < 0 || probability > 1) {
    throw std::invalid_argument("variant substitution: probability must be in [0, 1]");
  }
}

std::string VariantSubstitution::apply(std::string_view text, Rng& rng) const {
  // Draw first, whatever the text: the stream of draws does not depend on the file's contents.
  const bool substitute = rng.chance(probability_);
  const std::uint64_t pick = rng.next();
  const auto found = variants_.find(std::string(text));
  if (!substitute || found == variants_.end() || found->second.empty()) return std::string(text);
  return found->second[pick % found->second.size()];
}

std::unordered_map<std::string, std::vector<std::string>> read_synonyms(const std::string& path) {
  std::unordered_map<std::string, std::vector<std::string>> synonyms;
  for_each_word_line(path, [&](const LineReader& reader, const Line& line, std::string_view text) {
    std::vector<std::string> group;
    std::size_t start = 0;
    while (start < text.size()) {
      const auto end = std::min(text.find_first_of(" \t", start), text.size());
      if (end > start) group.emplace_back(text.substr(start, end - start));
      start = end + 1;
    }
    if (group.size() < 2) reader.fail(line, "a synonym group needs two or more words");
    for (const auto& word : group) {
      auto& others = synonyms[word];
      for (const auto& other : group)
        if (other != word && std::find(others.begin(), others.end(), other) == others.end())
          others.push_back(other);
    }
  });
  return synonyms;
}

std::unordered_set<std::string> read_word_list(const std::string& path) {
  std::unordered_set<std::string> words;
  for_each_word_line(path, [&](const LineReader& reader, const Line& line, std::string_view text) {
    if (text.find_first_of(" \t") != std::string_view::npos) {
      reader.fail(line, "one word per line");
    }
    words.emplace(text);
  });
  return words;
}

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& word : words) {
    if (!out.empty() && !word.empty() && ascii_alnum(out.back()) && ascii_alnum(word.front())) {
      out += ' ';
    }
    out += word;
  }
  return out;
}

WordAugmentation::WordAugmentation(
    WordSegmenter segmenter, WordAugmentOptions options,
    std::unordered_map<std::string, std::vector<std::string>> synonyms,
    std::unordered_set<std::string> protected_words)
    : segmenter_(std::move(segmenter)),
      options_(options),
      synonyms_(std::move(synonyms)),
      protected_(std::move(protected_words)) {
  for (const double p : {options.synonym, options.deletion, options.swap}) {
    if (p < 0 || p > 1) throw std::invalid_argument("word augmentation: probabilities in [0, 1]");
  }
  if (options.max_deleted < 1) throw std::invalid_argument("word augmentation: max_deleted >= 1");
}

std::string WordAugmentation::apply(std::string_view text, Rng& rng) const {
  std::vector<std::string> words = segmenter_.cut(text);
  bool changed = false;  // an unchanged text is returned as it came (its spaces kept)
  const auto changeable = [&](const std::string& word) { return !protected_.count(word); };

  if (rng.chance(options_.synonym)) {
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < words.size(); ++i)
      if (changeable(words[i]) && synonyms_.count(words[i])) candidates.push_back(i);
    if (!candidates.empty()) {
      const std::size_t i = rng.pick(candidates);
      words[i] = rng.pick(synonyms_.at(words[i]));
      changed = true;
    }
  }
  if (rng.chance(options_.deletion) && words.size() > 1) {
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < words.size(); ++i)
      if (changeable(words[i])) candidates.push_back(i);
    const auto most = std::min(
        {static_cast<std::size_t>(options_.max_deleted), candidates.size(), words.size() - 1});
    if (most > 0) {
      rng.shuffle(candidates);
      const auto count = static_cast<std::size_t>(rng.between(1, static_cast<int>(most)));
      std::vector<bool> gone(words.size(), false);
      for (std::size_t k = 0; k < count; ++k)
        gone[candidates[k]] = true;
      std::vector<std::string> kept;
      for (std::size_t i = 0; i < words.size(); ++i)
        if (!gone[i]) kept.push_back(std::move(words[i]));
      words = std::move(kept);
      changed = true;
    }
  }
  if (rng.chance(options_.swap) && words.size() > 1) {
    const auto i = rng.below(words.size());
    auto j = rng.below(words.size() - 1);
    if (j >= i) ++j;  // a different place
    std::swap(words[i], words[j]);
    changed = changed || words[i] != words[j];
  }
  return changed ? join_words(words) : std::string(text);
}

}  // namespace shopclip::data
