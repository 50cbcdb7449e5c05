// BERT tokenization (BasicTokenizer + WordpieceTokenizer) as in Chinese-CLIP's bert_tokenizer.py,
// which is Google's tokenization.py. Unicode properties come from ICU (libicuuc) so that general
// categories, full lower-case mapping and NFD follow the Unicode tables rather than hand-made
// approximations; ASCII and the common CJK blocks take fast paths that never reach ICU.

#include "data/tokenizer.h"

#include <torch/torch.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "data/files.h"
#include "data/utf8.h"

namespace shopclip::data {
namespace {

constexpr const char* kPad = "[PAD]";
constexpr const char* kUnk = "[UNK]";
constexpr const char* kCls = "[CLS]";
constexpr const char* kSep = "[SEP]";
constexpr const char* kMask = "[MASK]";

// ---- UTF-8 ----------------------------------------------------------------------------------

// Decodes one code point at s[i], advancing i. Returns false on malformed input: stray
// continuation bytes, truncated sequences, overlong forms, surrogates and values past U+10FFFF
// (exactly the byte strings Python's strict "utf-8" codec rejects).
bool next_code_point(std::string_view s, std::size_t& i, char32_t& cp) {
  const std::size_t length = data::decode_utf8(s, i, &cp);
  i += length;
  return length > 0;
}

[[noreturn]] void throw_bad_utf8(std::string_view text, std::size_t offset) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "invalid UTF-8 at byte %zu (0x%02X) of a %zu-byte string", offset,
                static_cast<unsigned>(static_cast<unsigned char>(text[offset])), text.size());
  throw std::invalid_argument(buf);
}

// ---- character classes ----------------------------------------------------------------------

std::uint32_t category_mask(char32_t cp) {
  return U_GET_GC_MASK(static_cast<UChar32>(cp));
}

// The CJK blocks of BERT's _is_chinese_char. Hangul, kana and CJK punctuation are not in it.
bool is_cjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// CJK ideographs whose lower-case form and NFD are themselves (no case, no canonical
// decomposition), so the accent-stripping step can skip ICU. The compatibility ideograph blocks
// (F900-FAFF, 2F800-2FA1F) are excluded: they decompose to unified ideographs under NFD.
bool is_plain_cjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2CEAF);
}

// BERT's _is_control: categories Cc and Cf only (private-use and unassigned code points are kept),
// with \t \n \r excluded because they count as whitespace.
bool is_control(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  if (cp < 0x80) return cp < 0x20 || cp == 0x7F;
  return (category_mask(cp) & (U_GC_CC_MASK | U_GC_CF_MASK)) != 0;
}

// BERT's _is_whitespace: space, \t, \n, \r and category Zs.
bool is_bert_whitespace(char32_t cp) {
  if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
  if (cp < 0x80) return false;
  return (category_mask(cp) & U_GC_ZS_MASK) != 0;
}

// Python's str.isspace() set, which str.split()/strip() in whitespace_tokenize use. After
// _clean_text only U+2028 and U+2029 of it survive that are not already spaces, but they do split
// tokens in Python, so they must here too. The set is fixed by bidi classes that no longer change.
bool is_python_space(char32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// BERT's _is_punctuation: all ASCII symbols (so "$", "^", "`" split too) and Unicode P*.
bool is_punctuation(char32_t cp) {
  if (cp < 0x80) {
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
  }
  return (category_mask(cp) & U_GC_P_MASK) != 0;
}

// ---- lower-casing and accent stripping --------------------------------------------------------

const UNormalizer2* nfd_normalizer() {
  static const UNormalizer2* nfd = [] {
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2* n = unorm2_getNFDInstance(&err);
    if (U_FAILURE(err)) {
      throw std::runtime_error(std::string("ICU NFD normalizer unavailable: ") + u_errorName(err));
    }
    return n;
  }();
  return nfd;
}

void check_icu(UErrorCode err, const char* what) {
  if (U_FAILURE(err)) throw std::runtime_error(std::string(what) + ": " + u_errorName(err));
}

// Python's token.lower() then _run_strip_accents (NFD, drop Mn), for one whitespace-delimited
// token. The token is handed to ICU whole, not character by character, because full lower-casing
// is context-sensitive (final sigma) and NFD reorders combining marks across characters.
void lower_strip_accents(const std::u32string& in, std::u32string& out) {
  out.clear();
  bool simple = true;
  for (char32_t cp : in) {
    if (cp >= 0x80 && !is_plain_cjk(cp)) {
      simple = false;
      break;
    }
  }
  if (simple) {
    for (char32_t cp : in)
      out.push_back(cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp);
    return;
  }

  // Per-thread scratch buffers: this path runs once per non-ASCII word.
  thread_local std::u16string src, lowered, nfd;
  src.clear();
  for (char32_t cp : in) {
    if (cp < 0x10000) {
      src.push_back(static_cast<char16_t>(cp));
    } else {
      src.push_back(static_cast<char16_t>(U16_LEAD(cp)));
      src.push_back(static_cast<char16_t>(U16_TRAIL(cp)));
    }
  }
  const auto src_len = static_cast<int32_t>(src.size());

  // Full lower-case mapping never grows a string more than 3x; retry once on overflow anyway.
  lowered.resize(src.size() * 3 + 4);
  UErrorCode err = U_ZERO_ERROR;
  // Root locale "": no Turkish/Lithuanian tailoring, like Python's locale-independent lower().
  int32_t n =
      u_strToLower(reinterpret_cast<UChar*>(lowered.data()), static_cast<int32_t>(lowered.size()),
                   reinterpret_cast<const UChar*>(src.data()), src_len, "", &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    lowered.resize(static_cast<std::size_t>(n));
    err = U_ZERO_ERROR;
    n = u_strToLower(reinterpret_cast<UChar*>(lowered.data()), n,
                     reinterpret_cast<const UChar*>(src.data()), src_len, "", &err);
  }
  check_icu(err, "u_strToLower");
  lowered.resize(static_cast<std::size_t>(n));

  // Canonical decompositions expand by at most a small factor; retry once on overflow anyway.
  nfd.resize(lowered.size() * 4 + 4);
  err = U_ZERO_ERROR;
  n = unorm2_normalize(nfd_normalizer(), reinterpret_cast<const UChar*>(lowered.data()),
                       static_cast<int32_t>(lowered.size()), reinterpret_cast<UChar*>(nfd.data()),
                       static_cast<int32_t>(nfd.size()), &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    nfd.resize(static_cast<std::size_t>(n));
    err = U_ZERO_ERROR;
    n = unorm2_normalize(nfd_normalizer(), reinterpret_cast<const UChar*>(lowered.data()),
                         static_cast<int32_t>(lowered.size()), reinterpret_cast<UChar*>(nfd.data()),
                         n, &err);
  }
  check_icu(err, "unorm2_normalize(NFD)");

  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(nfd.data(), i, n, c);
    if (u_charType(c) == U_NON_SPACING_MARK) continue;
    out.push_back(static_cast<char32_t>(c));
  }
}

// The tail of BasicTokenizer.tokenize for one whitespace-delimited token: optional lower-casing
// and accent stripping, _run_split_on_punc, and the final whitespace_tokenize (which can only
// matter if lower-casing or NFD produced a space, but costs nothing to honour).
void finish_word(const std::u32string& word, bool do_lower_case, std::u32string& scratch,
                 std::vector<std::string>& out) {
  const std::u32string* chars = &word;
  if (do_lower_case) {
    lower_strip_accents(word, scratch);
    chars = &scratch;
  }
  std::string piece;
  const auto flush = [&] {
    if (!piece.empty()) {
      out.push_back(std::move(piece));
      piece.clear();
    }
  };
  for (char32_t cp : *chars) {
    if (is_python_space(cp)) {
      flush();
    } else if (is_punctuation(cp)) {
      flush();
      std::string p;
      append_utf8(p, cp);
      out.push_back(std::move(p));
    } else {
      append_utf8(piece, cp);
    }
  }
  flush();
}

// ---- vocab helpers --------------------------------------------------------------------------

std::string in_quotes(std::string_view token) {
  std::string q = "\"";
  q.append(token);
  q.push_back('"');
  return q;
}

// Python's str.strip() as load_vocab applies it to each line. It matters for the real
// bert-base-chinese vocab: lines 343 and 13502 are "\u2028" and "##\u2028", which Python reads
// as "" and "##".
std::string_view strip_python_space(std::string_view s) {
  const auto space_at_front = [](std::string_view v, std::size_t& len) {
    std::size_t i = 0;
    char32_t cp;
    if (!next_code_point(v, i, cp) || !is_python_space(cp)) return false;
    len = i;
    return true;
  };
  std::size_t len = 0;
  while (!s.empty() && space_at_front(s, len))
    s.remove_prefix(len);
  while (!s.empty()) {
    // Step back to the start of the last code point (skip continuation bytes).
    std::size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
      --start;
    std::size_t i = start;
    char32_t cp;
    if (!next_code_point(s, i, cp) || i != s.size() || !is_python_space(cp)) break;
    s.remove_suffix(s.size() - start);
  }
  return s;
}

}  // namespace

// ---- Vocab ----------------------------------------------------------------------------------

Vocab Vocab::from_tokens(std::vector<std::string> tokens) {
  Vocab v;
  v.ids_.reserve(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    // save() writes one token per line, so a line break inside a token could never load back.
    if (t.find_first_of("\r\n") != std::string::npos) {
      throw std::runtime_error("vocab line " + std::to_string(i + 1) + ": token " + in_quotes(t) +
                               " contains a line break");
    }
    const auto [it, inserted] = v.ids_.emplace(t, static_cast<std::int64_t>(i));
    if (!inserted) {
      throw std::runtime_error("vocab line " + std::to_string(i + 1) + ": duplicate token " +
                               in_quotes(t) + " (first on line " + std::to_string(it->second + 1) +
                               ")");
    }
  }
  const auto special = [&](const char* name) {
    const auto it = v.ids_.find(name);
    if (it == v.ids_.end()) {
      throw std::runtime_error(std::string("vocab lacks the special token ") + name);
    }
    return it->second;
  };
  v.pad_id_ = special(kPad);
  v.unk_id_ = special(kUnk);
  v.cls_id_ = special(kCls);
  v.sep_id_ = special(kSep);
  v.tokens_ = std::move(tokens);
  return v;
}

Vocab Vocab::load(const std::string& path) {
  // A directory opens as an ifstream on Linux and reads as empty; say what is wrong instead of
  // reporting missing special tokens.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw std::runtime_error("cannot read vocab file " + path + ": is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open vocab file " + path);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read vocab file " + path);
  const std::string data = std::move(buf).str();

  // Line breaks as Python's text-mode readline sees them (universal newlines: \n, \r\n, \r).
  std::vector<std::string> tokens;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t end = data.find_first_of("\r\n", pos);
    if (end == std::string::npos) end = data.size();
    const std::string_view line(data.data() + pos, end - pos);
    for (std::size_t i = 0; i < line.size();) {
      char32_t cp;
      if (!next_code_point(line, i, cp)) {
        throw std::runtime_error(path + ": line " + std::to_string(tokens.size() + 1) +
                                 ": invalid UTF-8");
      }
    }
    tokens.emplace_back(strip_python_space(line));
    pos = end;
    if (pos < data.size())
      pos += (data[pos] == '\r' && pos + 1 < data.size() && data[pos + 1] == '\n') ? 2 : 1;
  }
  try {
    return from_tokens(std::move(tokens));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

Vocab Vocab::build(const std::vector<std::string>& texts, int min_count) {
  std::unordered_map<std::string, std::int64_t> counts;
  for (const std::string& text : texts) {
    for (std::string& t : basic_tokenize(text))
      ++counts[std::move(t)];
  }
  std::vector<std::string> tokens = {kPad, kUnk, kCls, kSep, kMask};
  std::vector<std::pair<std::int64_t, const std::string*>> kept;
  for (const auto& [token, count] : counts) {
    // Punctuation splitting makes "[PAD]" and friends impossible as basic tokens; the check only
    // guards the id contract should that ever change.
    if (count >= min_count && std::find(tokens.begin(), tokens.end(), token) == tokens.end()) {
      kept.emplace_back(count, &token);
    }
  }
  // std::string's operator< compares as unsigned char, i.e. byte (= code point) order.
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  });
  tokens.reserve(tokens.size() + kept.size());
  for (const auto& [count, token] : kept)
    tokens.push_back(*token);
  return from_tokens(std::move(tokens));
}

void Vocab::save(const std::string& path) const {
  AtomicFileWriter out(path);
  for (const std::string& t : tokens_) {
    out.write(t);
    out.write("\n");
  }
  out.commit();
}

bool Vocab::contains(std::string_view token) const {
  return ids_.find(std::string(token)) != ids_.end();
}

std::int64_t Vocab::id(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  return it == ids_.end() ? unk_id_ : it->second;
}

const std::string& Vocab::token(std::int64_t id) const {
  if (id < 0 || id >= size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " outside vocab of size " +
                            std::to_string(size()));
  }
  return tokens_[static_cast<std::size_t>(id)];
}

// ---- tokenization ---------------------------------------------------------------------------

std::vector<std::string> basic_tokenize(std::string_view text, bool do_lower_case) {
  std::vector<std::string> out;
  std::u32string word, scratch;
  const auto flush = [&] {
    if (!word.empty()) {
      finish_word(word, do_lower_case, scratch, out);
      word.clear();
    }
  };
  // One pass does _clean_text, _tokenize_chinese_chars and the first whitespace_tokenize.
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t at = i;
    char32_t cp;
    if (!next_code_point(text, i, cp)) throw_bad_utf8(text, at);
    if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
    if (is_bert_whitespace(cp) || is_python_space(cp)) {
      flush();
    } else if (is_cjk(cp)) {
      flush();
      word.push_back(cp);
      flush();
    } else {
      word.push_back(cp);
    }
  }
  flush();
  return out;
}

std::vector<std::string> wordpiece_tokenize(std::string_view word, const Vocab& vocab,
                                            int max_chars) {
  std::vector<std::string> out;
  // Byte offsets of the current word's code points plus its end, so that candidate substrings
  // are cut at code point boundaries.
  std::vector<std::size_t> bounds;
  std::vector<std::string> pieces;
  std::string candidate;

  const auto run = [&] {
    const std::size_t n = bounds.size() - 1;  // code points
    if (n > static_cast<std::size_t>(std::max(max_chars, 0))) {
      out.emplace_back(kUnk);
      return;
    }
    pieces.clear();
    for (std::size_t start = 0; start < n;) {
      std::size_t end = n;
      for (; end > start; --end) {
        candidate.assign(start > 0 ? "##" : "");
        candidate.append(word.substr(bounds[start], bounds[end] - bounds[start]));
        if (vocab.contains(candidate)) break;
      }
      if (end == start) {  // no piece covers this position: the whole word is unknown
        out.emplace_back(kUnk);
        return;
      }
      pieces.push_back(candidate);
      start = end;
    }
    for (std::string& p : pieces)
      out.push_back(std::move(p));
  };

  // Python's WordpieceTokenizer whitespace-splits its input first; a basic token has no spaces,
  // so this normally yields one word.
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t at = i;
    char32_t cp;
    if (!next_code_point(word, i, cp)) throw_bad_utf8(word, at);
    if (is_python_space(cp)) {
      if (!bounds.empty()) {
        bounds.push_back(at);
        run();
        bounds.clear();
      }
    } else {
      bounds.push_back(at);
    }
  }
  if (!bounds.empty()) {
    bounds.push_back(word.size());
    run();
  }
  return out;
}

std::vector<std::string> Tokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (const std::string& token : basic_tokenize(text, do_lower_case_)) {
    for (std::string& piece : wordpiece_tokenize(token, vocab_))
      out.push_back(std::move(piece));
  }
  return out;
}

std::vector<std::int64_t> Tokenizer::encode(std::string_view text, int context_length) const {
  if (context_length < 2) {
    throw std::invalid_argument("context_length must be at least 2 (for [CLS] and [SEP]), got " +
                                std::to_string(context_length));
  }
  const std::vector<std::string> pieces = tokenize(text);
  const std::size_t keep = std::min(pieces.size(), static_cast<std::size_t>(context_length - 2));
  std::vector<std::int64_t> ids;
  ids.reserve(static_cast<std::size_t>(context_length));
  ids.push_back(vocab_.cls_id());
  for (std::size_t k = 0; k < keep; ++k)
    ids.push_back(vocab_.id(pieces[k]));
  ids.push_back(vocab_.sep_id());
  ids.resize(static_cast<std::size_t>(context_length), vocab_.pad_id());
  return ids;
}

torch::Tensor Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                      int context_length) const {
  auto tokens =
      torch::empty({static_cast<std::int64_t>(texts.size()), context_length}, torch::kLong);
  auto* out = tokens.data_ptr<std::int64_t>();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto ids = encode(texts[i], context_length);
    std::copy(ids.begin(), ids.end(), out + i * context_length);
  }
  return tokens;
}

}  // namespace shopclip::data
