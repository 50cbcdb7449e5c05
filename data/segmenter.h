#pragma once
// Chinese word segmentation over jieba's dictionary, for analysing search queries (which words a
// query is made of) without Python. The rules are jieba 0.42's dictionary-only mode, reproduced
// exactly so that word lists made here agree with those made by the Python tools of this field.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace shopclip::data {

// Dictionary-based Chinese word segmentation equivalent to jieba.cut(text, HMM=False), except
// that whitespace tokens are dropped. The rules, all on Unicode code points of UTF-8 text:
//  - Text splits into "han" blocks (runs of U+4E00..U+9FD5, ASCII letters and digits, and
//    + # & . _ % -) and other text. Outside han blocks every whitespace character (Python's
//    str.isspace) separates and is dropped, and every other character is a token of its own.
//  - Inside a han block, the candidate words starting at a position are the dictionary words
//    found by walking the dictionary's prefixes from there (a position that starts no word is a
//    one-character candidate). The route maximising the sum of log(freq or 1) - log(total) is
//    chosen from the right, ties going to the longer word (Python's max over (score, end)).
//  - Consecutive one-character route pieces that are ASCII letters or digits are joined into one
//    token ("iPhone13" stays whole when no dictionary word splits it).
// Bytes that are not valid UTF-8 do not throw: each bad byte is a non-han character of its own.
//
// Immutable once loaded; copies share the dictionary, and cut() may run on many threads at once.
class WordSegmenter {
 public:
  // Loads a jieba-format dictionary: UTF-8 lines "word freq [tag]", fields separated by one space,
  // freq a non-negative decimal integer; leading and trailing ASCII whitespace of a line is
  // ignored, as by jieba. A word on several lines keeps its last frequency while the total counts
  // every line (jieba does the same). Only words with frequency > 0 can be chosen; their prefixes
  // are walked through whether or not they are words themselves.
  // Throws DataError naming the file and 1-based line for a malformed line (empty line, missing,
  // non-integer, negative or too large frequency, invalid UTF-8), the path when the file cannot
  // be read, and the file when its frequencies do not sum to a positive number (jieba's scores
  // divide by that total). Takes about 0.3 s for jieba's 349k-word dict.txt; holds the file's
  // bytes and one hash entry per word or prefix (498k entries, ~35 MB in all).
  static WordSegmenter from_file(const std::string& path);

  // $SHOPCLIP_JIEBA_DICT when set and not empty, else Debian python3-jieba's
  // /usr/lib/python3/dist-packages/jieba/dict.txt. Throws DataError when the chosen file does not
  // exist, with the install hint (apt-get install python3-jieba) for the Debian path.
  static std::string default_dictionary_path();

  // The words of UTF-8 text in order, exactly as jieba.cut(text, HMM=False) yields them, except
  // that whitespace tokens are dropped. Concatenated, the words are text minus its whitespace.
  std::vector<std::string> cut(std::string_view text) const;
  // The same words as views into text (every word is a contiguous piece of it), for callers that
  // only look at them while text is alive; no copies.
  std::vector<std::string_view> cut_views(std::string_view text) const;

  // The word's dictionary frequency; 0 when it has no line (a prefix of a word only, or absent).
  std::int64_t frequency(std::string_view word) const;
  // The sum of the frequency fields of all lines; > 0.
  std::int64_t total_frequency() const;
  // Distinct words that have a frequency line (a prefix that is only a prefix does not count).
  std::size_t size() const;

 private:
  struct Dictionary;
  explicit WordSegmenter(std::shared_ptr<const Dictionary> dictionary);

  std::shared_ptr<const Dictionary> dictionary_;  // never null
};

}  // namespace shopclip::data
