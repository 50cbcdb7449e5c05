#include "data/segmenter.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "data/error.h"
#include "data/utf8.h"

namespace shopclip::data {
namespace {

// Entry value of a prefix of some word that has no line of its own. jieba stores 0 for these,
// which a frequency-0 line also gives; the distinction only matters to size().
constexpr std::int64_t kPrefixOnly = -1;

// Stands for a byte that does not start a valid UTF-8 sequence; not a code point, so it is
// neither han nor whitespace.
constexpr char32_t kBadByte = 0xFFFFFFFF;

const char* const kDebianDictionary = "/usr/lib/python3/dist-packages/jieba/dict.txt";

// Decodes the UTF-8 sequence starting at text[i] into cp and returns its length in bytes. Strict
// (no overlong forms, surrogates or values above U+10FFFF), as Python's decoder: anything else
// gives cp = kBadByte and length 1, so decoding resumes at the next byte.
std::size_t decode_one(std::string_view text, std::size_t i, char32_t& cp) {
  const std::size_t length = decode_utf8(text, i, &cp);
  if (length > 0) return length;
  cp = kBadByte;
  return 1;
}

bool is_valid_utf8(std::string_view text) {
  char32_t cp = 0;
  for (std::size_t i = 0; i < text.size(); i += decode_one(text, i, cp))
    if (cp == kBadByte) return false;
  return true;
}

// jieba's re_eng: [a-zA-Z0-9], ASCII only.
bool is_ascii_alnum(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// jieba's re_han_default: [\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-].
bool is_han(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FD5) || is_ascii_alnum(c) || c == '+' || c == '#' || c == '&' ||
         c == '.' || c == '_' || c == '%' || c == '-';
}

// Python's \s on str patterns, i.e. str.isspace() (listed from CPython's tables).
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// bytes.strip()'s whitespace, which is what jieba strips from a dictionary line.
bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw DataError(fmt::format("cannot open jieba dictionary '{}'", path));
  const std::streamoff size = in.tellg();
  std::string bytes(static_cast<std::size_t>(size > 0 ? size : 0), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size())))
    throw DataError(fmt::format("cannot read jieba dictionary '{}'", path));
  return bytes;
}

// Parses a frequency field: ASCII digits only, within int64. Returns false otherwise.
bool parse_frequency(std::string_view field, std::int64_t& value) {
  if (field.empty()) return false;
  value = 0;
  for (char c : field) {
    if (c < '0' || c > '9') return false;
    const int digit = c - '0';
    if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  return true;
}

}  // namespace

struct WordSegmenter::Dictionary {
  std::string bytes;  // the dictionary file; every key of entries views into it
  // Every word with a line -> its frequency (>= 0), and every prefix of such a word without a
  // line of its own -> kPrefixOnly. Both walk on (jieba's FREQ); only frequency > 0 ends a word.
  std::unordered_map<std::string_view, std::int64_t> entries;
  std::int64_t total = 0;
  double log_total = 0;
  std::size_t words = 0;

  // Calls emit(word) for each word of text in order (views into text). Work buffers are local,
  // so concurrent calls are safe.
  template <class Emit>
  void segment(std::string_view text, Emit&& emit) const {
    // Code points of text and their byte offsets; offsets[n] == text.size().
    std::vector<char32_t> chars;
    std::vector<std::size_t> offsets;
    chars.reserve(text.size());
    offsets.reserve(text.size() + 1);
    for (std::size_t i = 0; i < text.size();) {
      char32_t cp = 0;
      const std::size_t length = decode_one(text, i, cp);
      chars.push_back(cp);
      offsets.push_back(i);
      i += length;
    }
    offsets.push_back(text.size());

    std::vector<Step> route;
    const std::size_t n = chars.size();
    for (std::size_t i = 0; i < n;) {
      if (is_han(chars[i])) {
        std::size_t end = i + 1;
        while (end < n && is_han(chars[end]))
          ++end;
        cut_block(text, chars, offsets, i, end, route, emit);
        i = end;
      } else {
        if (!is_space(chars[i])) emit(text.substr(offsets[i], offsets[i + 1] - offsets[i]));
        ++i;
      }
    }
  }

 private:
  // Best route from a position of a block to its end: the total score and where the first
  // word ends (the position of its last character, as jieba's route[idx] = (score, x)).
  struct Step {
    double score = 0;
    std::size_t last = 0;
  };

  // Segments the han block chars[begin, end) (jieba's __cut_DAG_NO_HMM).
  template <class Emit>
  void cut_block(std::string_view text, const std::vector<char32_t>& chars,
                 const std::vector<std::size_t>& offsets, std::size_t begin, std::size_t end,
                 std::vector<Step>& route, Emit& emit) const {
    const std::size_t n = end - begin;
    const auto piece = [&](std::size_t from, std::size_t to) {  // block positions [from, to)
      return text.substr(offsets[begin + from], offsets[begin + to] - offsets[begin + from]);
    };
    route.assign(n + 1, Step{});
    // Right to left, as jieba's calc: each position's DAG (the words starting there) is walked
    // here instead of being stored. Candidates come in increasing end order, so ">=" keeps the
    // largest end among equal scores, which is what Python's max over (score, end) picks. The
    // expression keeps jieba's evaluation order so that every double rounds the same way.
    for (std::size_t idx = n; idx-- > 0;) {
      bool found = false;
      Step best;
      const auto consider = [&](std::int64_t frequency, std::size_t last) {
        const double score =
            std::log(static_cast<double>(frequency)) - log_total + route[last + 1].score;
        if (!found || score >= best.score) best = Step{score, last};
        found = true;
      };
      for (std::size_t last = idx; last < n; ++last) {
        const auto it = entries.find(piece(idx, last + 1));
        if (it == entries.end()) break;  // no dictionary word continues this way
        if (it->second > 0) consider(it->second, last);
      }
      if (!found) consider(1, idx);  // no word starts here: the character alone, freq "or 1"
      route[idx] = best;
    }
    // Emit the route, joining runs of one-character ASCII letter/digit pieces.
    std::size_t run_begin = 0, run_end = 0;  // block positions of the pending run; empty if equal
    for (std::size_t x = 0; x < n;) {
      const std::size_t next = route[x].last + 1;
      if (next == x + 1 && is_ascii_alnum(chars[begin + x])) {
        if (run_begin == run_end) run_begin = x;
        run_end = next;
      } else {
        if (run_begin != run_end) emit(piece(run_begin, run_end));
        run_begin = run_end = 0;
        emit(piece(x, next));
      }
      x = next;
    }
    if (run_begin != run_end) emit(piece(run_begin, run_end));
  }
};

WordSegmenter::WordSegmenter(std::shared_ptr<const Dictionary> dictionary)
    : dictionary_(std::move(dictionary)) {}

WordSegmenter WordSegmenter::from_file(const std::string& path) {
  auto dictionary = std::make_shared<Dictionary>();
  dictionary->bytes = read_whole_file(path);
  const std::string_view bytes = dictionary->bytes;
  auto& entries = dictionary->entries;
  // Most words are 2-3 characters, so words plus their prefixes come to about 1.5 entries a line.
  const auto lines = static_cast<std::size_t>(std::count(bytes.begin(), bytes.end(), '\n')) + 1;
  entries.reserve(lines + lines / 2);

  std::int64_t line_number = 0;
  for (std::size_t start = 0; start < bytes.size();) {
    ++line_number;
    std::size_t stop = bytes.find('\n', start);
    if (stop == std::string_view::npos) stop = bytes.size();
    std::string_view line = bytes.substr(start, stop - start);
    start = stop + 1;
    while (!line.empty() && is_ascii_space(line.front()))
      line.remove_prefix(1);
    while (!line.empty() && is_ascii_space(line.back()))
      line.remove_suffix(1);
    const auto fail = [&](const std::string& what) {
      return DataError(
          fmt::format("{}:{}: {} (expected 'word frequency [tag]')", path, line_number, what));
    };
    if (line.empty()) throw fail("empty line");
    if (!is_valid_utf8(line)) throw fail("not valid UTF-8");
    // Fields are separated by single spaces as in jieba (line.split(' ')). The line starts with
    // a non-space after stripping, so the word is never empty.
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos) throw fail(fmt::format("no frequency after '{}'", line));
    const std::string_view word = line.substr(0, space);
    std::string_view field = line.substr(space + 1);
    field = field.substr(0, field.find(' '));
    std::int64_t frequency = 0;
    if (!parse_frequency(field, frequency)) {
      const bool negative = field.size() > 1 && field[0] == '-' &&
                            field.find_first_not_of("0123456789", 1) == std::string_view::npos;
      throw fail(fmt::format("frequency '{}' of '{}' is {}", field, word,
                             negative ? "negative" : "not a non-negative integer within int64"));
    }
    if (frequency > std::numeric_limits<std::int64_t>::max() - dictionary->total)
      throw fail("the frequencies sum beyond int64");
    dictionary->total += frequency;

    auto [it, inserted] = entries.try_emplace(word, frequency);
    if (inserted || it->second == kPrefixOnly) ++dictionary->words;
    it->second = frequency;  // a repeated word keeps its last line's frequency, as in jieba
    char32_t cp = 0;
    for (std::size_t end = decode_one(word, 0, cp); end < word.size();
         end += decode_one(word, end, cp))
      entries.try_emplace(word.substr(0, end), kPrefixOnly);
  }
  if (dictionary->total <= 0)
    throw DataError(
        fmt::format("jieba dictionary '{}' has no word with a positive frequency ({} lines)", path,
                    line_number));
  dictionary->log_total = std::log(static_cast<double>(dictionary->total));
  return WordSegmenter(std::move(dictionary));
}

std::string WordSegmenter::default_dictionary_path() {
  const char* chosen = std::getenv("SHOPCLIP_JIEBA_DICT");
  if (chosen != nullptr && *chosen != '\0') {
    if (!std::filesystem::exists(chosen))
      throw DataError(fmt::format(
          "SHOPCLIP_JIEBA_DICT is '{}', which does not exist: point it at a jieba-format "
          "dict.txt, or unset it to use Debian's {}",
          chosen, kDebianDictionary));
    return chosen;
  }
  if (!std::filesystem::exists(kDebianDictionary))
    throw DataError(fmt::format(
        "jieba's dictionary {} is missing: install Debian's python3-jieba (apt-get install "
        "python3-jieba) or set SHOPCLIP_JIEBA_DICT to a jieba-format dict.txt",
        kDebianDictionary));
  return kDebianDictionary;
}

std::vector<std::string> WordSegmenter::cut(std::string_view text) const {
  std::vector<std::string> words;
  dictionary_->segment(text, [&](std::string_view word) { words.emplace_back(word); });
  return words;
}

std::vector<std::string_view> WordSegmenter::cut_views(std::string_view text) const {
  std::vector<std::string_view> words;
  dictionary_->segment(text, [&](std::string_view word) { words.push_back(word); });
  return words;
}

std::int64_t WordSegmenter::frequency(std::string_view word) const {
  const auto it = dictionary_->entries.find(word);
  return it == dictionary_->entries.end() || it->second == kPrefixOnly ? 0 : it->second;
}

std::int64_t WordSegmenter::total_frequency() const {
  return dictionary_->total;
}

std::size_t WordSegmenter::size() const {
  return dictionary_->words;
}

}  // namespace shopclip::data
