#pragma once
// Query-text augmentations for training (the loader's TextAugmentation interface, data/loader.h),
// applied before tokenization with the sample's own generator:
//   - variants made elsewhere (back-translations, paraphrases): {split}_texts.aug.jsonl;
//   - on the words of the jieba segmenter (data/segmenter.h): synonym replacement from a user file,
//     random deletion of at most k words, a random swap of two words (MUGE queries are bags of
//     attributes, so their order carries little); protected words (brands, colours) are never
//     deleted or replaced.
// Bad lines in the files stop with a DataError naming file:line.

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "data/loader.h"
#include "data/muge.h"
#include "data/segmenter.h"

namespace shopclip::data {

// Query text -> its variants (queries with the same text share them).
using TextVariants = std::unordered_map<std::string, std::vector<std::string>>;

// Reads a variants file: JSON lines {"text_id": <int>, "variants": [<non-empty string>, ...]}.
// text_id must be a query of `queries` (the split the file belongs to). Blank lines are skipped.
TextVariants read_text_variants(const std::string& path, const QuerySet& queries);

// With probability p, the text is replaced by one of its variants (uniformly); texts without
// variants stay.
class VariantSubstitution : public TextAugmentation {
 public:
  VariantSubstitution(TextVariants variants, double probability);
  std::string apply(std::string_view text, Rng& rng) const override;

 private:
  TextVariants variants_;
  double probability_;
};

// Synonym groups: one group per line, two or more words separated by tabs or spaces; blank lines
// and lines starting with '#' are skipped. A word in several groups may become any word of any of
// them.
std::unordered_map<std::string, std::vector<std::string>> read_synonyms(const std::string& path);
// One word per line (surrounding whitespace trimmed); blank lines and '#' lines skipped.
std::unordered_set<std::string> read_word_list(const std::string& path);

struct WordAugmentOptions {
  double synonym = 0;   // probability of replacing one word that has synonyms
  double deletion = 0;  // probability of deleting 1..max_deleted words
  int max_deleted = 1;  // (never the last word, never a protected one)
  double swap = 0;      // probability of swapping two words' places
};

// Synonym replacement, then deletion, then the swap, on the segmenter's words; the words are
// joined back without spaces, except between two ASCII letters or digits ("iPhone 13").
class WordAugmentation : public TextAugmentation {
 public:
  // synonyms: word -> the words it may become (read_synonyms); protected_words never change.
  WordAugmentation(WordSegmenter segmenter, WordAugmentOptions options,
                   std::unordered_map<std::string, std::vector<std::string>> synonyms,
                   std::unordered_set<std::string> protected_words);
  std::string apply(std::string_view text, Rng& rng) const override;

 private:
  WordSegmenter segmenter_;
  WordAugmentOptions options_;
  std::unordered_map<std::string, std::vector<std::string>> synonyms_;
  std::unordered_set<std::string> protected_;
};

// Joins words as WordAugmentation does.
std::string join_words(const std::vector<std::string>& words);

}  // namespace shopclip::data
