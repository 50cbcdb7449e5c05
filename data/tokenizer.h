#pragma once
// BERT-style tokenization for Chinese search queries: BasicTokenizer (clean-up, lower-casing,
// accent stripping, one token per CJK character, punctuation split) followed by greedy
// longest-match-first WordPiece with "##" continuation pieces, as in Google's BERT
// tokenization.py, which Chinese-CLIP uses unchanged with bert-base-chinese's vocab.txt.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <torch/types.h>

namespace shopclip::data {

// Token <-> id table. Ids are line numbers of a vocab.txt file (from 0).
class Vocab {
 public:
  // Loads a bert-base-chinese-format vocab.txt: one token per line, id = line index. Throws
  // std::runtime_error naming the file (and line) when it cannot be read, has a duplicate token,
  // or lacks one of [PAD], [UNK], [CLS], [SEP].
  static Vocab load(const std::string& path);

  // Builds a vocabulary from training texts: the special tokens [PAD] [UNK] [CLS] [SEP] [MASK]
  // first (ids 0..4), then every basic token (after BasicTokenizer) that occurs at least
  // min_count times, most frequent first, ties broken by the token's bytes (deterministic).
  static Vocab build(const std::vector<std::string>& texts, int min_count = 1);

  // Builds from an explicit token list (id = position); same checks as load().
  static Vocab from_tokens(std::vector<std::string> tokens);

  // Writes one token per line, loadable by load(), atomically and durably (data/files.h); throws
  // DataError naming the file.
  void save(const std::string& path) const;

  std::int64_t size() const { return static_cast<std::int64_t>(tokens_.size()); }
  bool contains(std::string_view token) const;
  // Id of a token, or unk_id() when absent.
  std::int64_t id(std::string_view token) const;
  const std::string& token(std::int64_t id) const;  // throws std::out_of_range

  std::int64_t pad_id() const { return pad_id_; }
  std::int64_t unk_id() const { return unk_id_; }
  std::int64_t cls_id() const { return cls_id_; }
  std::int64_t sep_id() const { return sep_id_; }
  const std::vector<std::string>& tokens() const { return tokens_; }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int64_t> ids_;
  std::int64_t pad_id_ = 0, unk_id_ = 0, cls_id_ = 0, sep_id_ = 0;
};

// BERT BasicTokenizer: removes control characters and U+0000/U+FFFD, maps whitespace to spaces,
// puts spaces around every CJK ideograph (the CJK Unified Ideograph blocks BERT lists),
// lower-cases and strips accents (NFD, drop combining marks) when do_lower_case, and splits off
// every punctuation character (ASCII symbol ranges and Unicode P* categories) as its own token.
// Input must be valid UTF-8; invalid bytes throw std::invalid_argument.
std::vector<std::string> basic_tokenize(std::string_view text, bool do_lower_case = true);

// WordPiece over one basic token: greedy longest match from the left, continuation pieces
// prefixed "##"; the whole word becomes [UNK] if any part has no match or the word is longer
// than max_chars code points (200, as in Google's BERT and Chinese-CLIP's tokenizer; Hugging
// Face's uses 100, which made a 122-character run [UNK] here but word pieces in Chinese-CLIP).
std::vector<std::string> wordpiece_tokenize(std::string_view word, const Vocab& vocab,
                                            int max_chars = 200);

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab, bool do_lower_case = true)
      : vocab_(std::move(vocab)), do_lower_case_(do_lower_case) {}

  // Full tokenization to string pieces (basic then WordPiece), without [CLS]/[SEP].
  std::vector<std::string> tokenize(std::string_view text) const;

  // [CLS] pieces [SEP], truncated so the whole sequence fits context_length (pieces are cut,
  // [SEP] is kept), then padded with [PAD] ids to exactly context_length.
  std::vector<std::int64_t> encode(std::string_view text, int context_length) const;
  // encode() of every text: int64 [texts.size(), context_length] on the CPU.
  torch::Tensor encode_batch(const std::vector<std::string>& texts, int context_length) const;

  const Vocab& vocab() const { return vocab_; }

 private:
  Vocab vocab_;
  bool do_lower_case_;
};

}  // namespace shopclip::data
