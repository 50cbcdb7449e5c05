// Tests for the BERT tokenizer: BasicTokenizer rules one by one, WordPiece on hand-made
// vocabularies, encode() framing, Vocab I/O, and parity with Python BERT on a golden file.
//
// Golden fixture (tests/fixtures/tokenizer_golden.tsv): written by tests/fixtures/
// make_tokenizer_golden.py, a plain-Python BERT BasicTokenizer + WordPiece (Python 3.11
// unicodedata, Unicode 14), over the ~400 queries of tests/fixtures/tokenizer_queries.txt,
// against tests/fixtures/vocab_small.txt, which holds the lines of bert-base-chinese's vocab.txt
// that WordPiece can try on those queries (so its choices equal those on the full vocab). Columns:
// query (backslash escapes: "\\" and "\u{HEX}" for non-printable code points), ids for context
// length 52, and the untruncated pieces separated by spaces ("(none)" when there are none).

#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "data/utf8.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using Strings = std::vector<std::string>;

// The UTF-8 bytes of one code point (data/utf8.h's encoder, shared with the tokenizer).
std::string utf8(char32_t cp) {
  return encode_utf8(cp);
}

Strings split(const std::string& s, char sep) {
  Strings out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

const Strings kSpecials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

Vocab make_vocab(const Strings& extra) {
  Strings tokens = kSpecials;
  tokens.insert(tokens.end(), extra.begin(), extra.end());
  return Vocab::from_tokens(tokens);
}

// ---- BasicTokenizer -------------------------------------------------------------------------

TEST(BasicTokenize, SplitsEveryCjkCharacter) {
  EXPECT_EQ(basic_tokenize("我爱北京"), (Strings{"我", "爱", "北", "京"}));
  EXPECT_EQ(basic_tokenize("abc中文def"), (Strings{"abc", "中", "文", "def"}));
  // Extension B and compatibility ideographs are CJK too; Hangul and kana are not.
  EXPECT_EQ(basic_tokenize("a\U00020000b"), (Strings{"a", "\U00020000", "b"}));
  EXPECT_EQ(basic_tokenize("カメラ東京"), (Strings{"カメラ", "東", "京"}));
}

TEST(BasicTokenize, LowerCasesAndStripsAccents) {
  EXPECT_EQ(basic_tokenize("Héllo"), (Strings{"hello"}));
  EXPECT_EQ(basic_tokenize("ÅNGSTRÖM Crème"), (Strings{"angstrom", "creme"}));
  EXPECT_EQ(basic_tokenize("e\u0301"), (Strings{"e"}));  // already decomposed
  // Full lower-casing like Python: U+0130 becomes "i" + U+0307, whose mark is then stripped.
  EXPECT_EQ(basic_tokenize("İstanbul"), (Strings{"istanbul"}));
  // Final sigma is context-sensitive: only the word-final capital sigma becomes U+03C2.
  EXPECT_EQ(basic_tokenize("ΟΔΟΣ ΣΑ"), (Strings{"οδος", "σα"}));
  // NFD maps compatibility ideographs to unified ones; kana lose their voicing marks (Mn).
  EXPECT_EQ(basic_tokenize("\uF900"), (Strings{"\u8C48"}));
  EXPECT_EQ(basic_tokenize("がぎ"), (Strings{"かき"}));
  // Full-width letters have lower-case forms of their own (not ASCII).
  EXPECT_EQ(basic_tokenize("ＡＢＣ"), (Strings{"ａｂｃ"}));
}

TEST(BasicTokenize, KeepsCaseAndAccentsWithoutLowerCasing) {
  EXPECT_EQ(basic_tokenize("Héllo WORLD", false), (Strings{"Héllo", "WORLD"}));
  EXPECT_EQ(basic_tokenize("\uF900", false), (Strings{"\uF900"}));
}

TEST(BasicTokenize, SplitsPunctuation) {
  EXPECT_EQ(basic_tokenize("你好，世界！【包邮】"),
            (Strings{"你", "好", "，", "世", "界", "！", "【", "包", "邮", "】"}));
  EXPECT_EQ(basic_tokenize("《三体》“全集”…"),
            (Strings{"《", "三", "体", "》", "“", "全", "集", "”", "…"}));
  EXPECT_EQ(basic_tokenize("don't stop."), (Strings{"don", "'", "t", "stop", "."}));
  // Every ASCII symbol splits, including those outside Unicode's P* ($ ^ ` + < = > | ~).
  EXPECT_EQ(basic_tokenize("$5^2`a+b<c"),
            (Strings{"$", "5", "^", "2", "`", "a", "+", "b", "<", "c"}));
  // Non-ASCII symbols (S*) such as currency, emoji and degree signs stay attached.
  EXPECT_EQ(basic_tokenize("¥99包邮 😀ok ℃"), (Strings{"¥99", "包", "邮", "😀ok", "℃"}));
  EXPECT_EQ(basic_tokenize("SK-II"), (Strings{"sk", "-", "ii"}));
}

TEST(BasicTokenize, MixedQueries) {
  EXPECT_EQ(basic_tokenize("2024新款iPhone15手机壳"),
            (Strings{"2024", "新", "款", "iphone15", "手", "机", "壳"}));
  EXPECT_EQ(basic_tokenize("iPhone 15 Pro Max 256GB"),
            (Strings{"iphone", "15", "pro", "max", "256gb"}));
  EXPECT_EQ(basic_tokenize("SPF50+防晒霜 1.5L"),
            (Strings{"spf50", "+", "防", "晒", "霜", "1", ".", "5l"}));
}

TEST(BasicTokenize, CleansWhitespaceAndControlCharacters) {
  EXPECT_EQ(basic_tokenize("  a\tb\nc\r\nd\u3000e\u00A0f  "),
            (Strings{"a", "b", "c", "d", "e", "f"}));
  // Cc/Cf code points, U+0000 and U+FFFD vanish without splitting the word.
  EXPECT_EQ(basic_tokenize(std::string("a\u200Bb\u00ADc\uFEFFd\x07") + '\0' + "e\uFFFDf"),
            (Strings{"abcdef"}));
  // Line and paragraph separators survive _clean_text but split under Python's str.split().
  EXPECT_EQ(basic_tokenize("x\u2028y\u2029z"), (Strings{"x", "y", "z"}));
  // Private-use and unassigned code points are kept (BERT removes only Cc and Cf).
  EXPECT_EQ(basic_tokenize("a\uE000\u0378"), (Strings{"a\uE000\u0378"}));
  EXPECT_TRUE(basic_tokenize("").empty());
  EXPECT_TRUE(basic_tokenize(" \t\u200B\n").empty());
}

TEST(BasicTokenize, RejectsInvalidUtf8) {
  for (const std::string bad : {"\xFF", "ab\xC3", "\x80", "\xC0\xAF", "\xE0\x80\xAF",
                                "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE4\xB8"}) {
    EXPECT_THROW(basic_tokenize(bad), std::invalid_argument) << ::testing::PrintToString(bad);
  }
  EXPECT_NO_THROW(basic_tokenize("\xF4\x8F\xBF\xBF\xEF\xBF\xBD"));  // U+10FFFF, U+FFFD
}

// ---- WordPiece ------------------------------------------------------------------------------

TEST(WordPiece, GreedyLongestMatchWithContinuationPieces) {
  const Vocab v = make_vocab({"un", "##aff", "##able", "run", "runn", "##ing", "##n", "##s", "手"});
  EXPECT_EQ(wordpiece_tokenize("unaffable", v), (Strings{"un", "##aff", "##able"}));
  // Longest first: "runn" wins over "run" + "##n".
  EXPECT_EQ(wordpiece_tokenize("running", v), (Strings{"runn", "##ing"}));
  EXPECT_EQ(wordpiece_tokenize("runs", v), (Strings{"run", "##s"}));
  EXPECT_EQ(wordpiece_tokenize("手", v), (Strings{"手"}));
}

TEST(WordPiece, UnknownWhenNotFullyCovered) {
  const Vocab v = make_vocab({"un", "##aff", "##able"});
  EXPECT_EQ(wordpiece_tokenize("xyz", v), (Strings{"[UNK]"}));
  // A covered prefix does not help: the whole word becomes one [UNK].
  EXPECT_EQ(wordpiece_tokenize("unaffablex", v), (Strings{"[UNK]"}));
  // Continuation pieces must carry "##": "able" alone does not cover "unable".
  const Vocab w = make_vocab({"un", "able"});
  EXPECT_EQ(wordpiece_tokenize("unable", w), (Strings{"[UNK]"}));
}

TEST(WordPiece, UnknownWhenLongerThanMaxChars) {
  const Vocab v = make_vocab({"a", "##a", "中", "##中"});
  // 200 code points, as Chinese-CLIP's tokenizer (Hugging Face's 100 would make these [UNK]).
  EXPECT_EQ(wordpiece_tokenize(std::string(122, 'a'), v).size(), 122u);
  EXPECT_EQ(wordpiece_tokenize(std::string(200, 'a'), v).size(), 200u);
  EXPECT_EQ(wordpiece_tokenize(std::string(201, 'a'), v), (Strings{"[UNK]"}));
  // The limit counts code points, not bytes.
  std::string cjk;
  for (int i = 0; i < 200; ++i)
    cjk += "中";
  EXPECT_EQ(wordpiece_tokenize(cjk, v).size(), 200u);
  EXPECT_EQ(wordpiece_tokenize(cjk + "中", v), (Strings{"[UNK]"}));
  EXPECT_EQ(wordpiece_tokenize("aaa", v, 2), (Strings{"[UNK]"}));
}

TEST(WordPiece, EmptyWordGivesNothing) {
  EXPECT_TRUE(wordpiece_tokenize("", make_vocab({})).empty());
}

// ---- Tokenizer ------------------------------------------------------------------------------

TEST(Tokenizer, TokenizeRunsBasicThenWordPiece) {
  const Tokenizer tok(make_vocab({"iphone", "##15", "新", "款", "，", "hello"}));
  EXPECT_EQ(tok.tokenize("Héllo，新款iPhone15 xyz"),
            (Strings{"hello", "，", "新", "款", "iphone", "##15", "[UNK]"}));
}

TEST(Tokenizer, EncodeAddsClsSepAndPads) {
  const Vocab v = make_vocab({"a", "b", "c"});  // ids 5 6 7
  const Tokenizer tok(v);
  EXPECT_EQ(tok.encode("a b c", 8), (std::vector<std::int64_t>{2, 5, 6, 7, 3, 0, 0, 0}));
  EXPECT_EQ(tok.encode("", 4), (std::vector<std::int64_t>{2, 3, 0, 0}));
  EXPECT_EQ(tok.encode("zzz", 3), (std::vector<std::int64_t>{2, 1, 3}));
}

TEST(Tokenizer, EncodeTruncatesPiecesButKeepsSep) {
  const Tokenizer tok(make_vocab({"a", "b", "c"}));
  EXPECT_EQ(tok.encode("a b c a b c", 5), (std::vector<std::int64_t>{2, 5, 6, 7, 3}));
  EXPECT_EQ(tok.encode("a b c", 5), (std::vector<std::int64_t>{2, 5, 6, 7, 3}));
  EXPECT_EQ(tok.encode("a b c", 2), (std::vector<std::int64_t>{2, 3}));
  EXPECT_THROW(tok.encode("a", 1), std::invalid_argument);
}

TEST(Tokenizer, SpecialIdsFollowTheVocabFile) {
  // Ids are positions, wherever the special tokens sit (bert-base-chinese: [UNK] = 100).
  const Vocab v = Vocab::from_tokens({"x", "[SEP]", "[CLS]", "y", "[UNK]", "[PAD]"});
  EXPECT_EQ(v.pad_id(), 5);
  EXPECT_EQ(v.unk_id(), 4);
  EXPECT_EQ(v.cls_id(), 2);
  EXPECT_EQ(v.sep_id(), 1);
  const Tokenizer tok(v);
  EXPECT_EQ(tok.encode("x q", 5), (std::vector<std::int64_t>{2, 0, 4, 1, 5}));
}

// ---- Vocab ----------------------------------------------------------------------------------

TEST(Vocab, LoadSaveRoundTrip) {
  test_support::TempDir dir;
  const std::string path = dir.file("vocab.txt");
  // CRLF and a final line without a newline, as Python's universal-newline readline accepts.
  test_support::write_file(path, "[PAD]\r\n[UNK]\r\n[CLS]\n[SEP]\n[MASK]\n你\n##好");
  const Vocab v = Vocab::load(path);
  ASSERT_EQ(v.size(), 7);
  EXPECT_EQ(v.id("你"), 5);
  EXPECT_EQ(v.id("##好"), 6);
  EXPECT_EQ(v.id("nope"), v.unk_id());
  EXPECT_TRUE(v.contains("[MASK]"));
  EXPECT_FALSE(v.contains("nope"));
  EXPECT_EQ(v.token(1), "[UNK]");
  EXPECT_THROW(v.token(7), std::out_of_range);
  EXPECT_THROW(v.token(-1), std::out_of_range);

  const std::string copy = dir.file("copy.txt");
  v.save(copy);
  EXPECT_EQ(test_support::read_file(copy), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n你\n##好\n");
  EXPECT_EQ(Vocab::load(copy).tokens(), v.tokens());
}

TEST(Vocab, LoadStripsWhitespaceLikePython) {
  // bert-base-chinese has lines "\u2028" and "##\u2028"; Python's strip() reads them as "" and
  // "##". Ids still follow line numbers.
  test_support::TempDir dir;
  const std::string path = dir.file("vocab.txt");
  test_support::write_file(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n\u2028\n##\u2028\n  x \t\n");
  const Vocab v = Vocab::load(path);
  EXPECT_EQ(v.tokens(), (Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "", "##", "x"}));
  EXPECT_EQ(v.id("x"), 6);
}

TEST(Vocab, LoadRejectsDuplicateNamingFileAndLine) {
  test_support::TempDir dir;
  const std::string path = dir.file("dup.txt");
  test_support::write_file(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n好\n坏\n好\n");
  try {
    Vocab::load(path);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 5"), std::string::npos) << msg;  // the first occurrence
    EXPECT_NE(msg.find("duplicate"), std::string::npos) << msg;
  }
}

TEST(Vocab, LoadRejectsMissingSpecialTokens) {
  test_support::TempDir dir;
  const std::string path = dir.file("nounk.txt");
  test_support::write_file(path, "[PAD]\n[CLS]\n[SEP]\n[MASK]\na\n");
  try {
    Vocab::load(path);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("[UNK]"), std::string::npos) << msg;
  }
  // [MASK] is optional; each of the other four is required.
  EXPECT_NO_THROW(Vocab::from_tokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]"}));
  EXPECT_THROW(Vocab::from_tokens({"[UNK]", "[CLS]", "[SEP]"}), std::runtime_error);
  EXPECT_THROW(Vocab::from_tokens({"[PAD]", "[UNK]", "[SEP]"}), std::runtime_error);
  EXPECT_THROW(Vocab::from_tokens({"[PAD]", "[UNK]", "[CLS]"}), std::runtime_error);
}

TEST(Vocab, LoadRejectsUnreadableAndInvalidFiles) {
  test_support::TempDir dir;
  EXPECT_THROW(Vocab::load(dir.file("missing.txt")), std::runtime_error);
  EXPECT_THROW(Vocab::load(dir.path()), std::runtime_error);  // a directory
  const std::string path = dir.file("bad.txt");
  test_support::write_file(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n\xFF\n");
  try {
    Vocab::load(path);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 5"), std::string::npos) << e.what();
  }
}

TEST(Vocab, FromTokensRejectsDuplicatesAndLineBreaks) {
  EXPECT_THROW(make_vocab({"a", "b", "a"}), std::runtime_error);
  EXPECT_THROW(make_vocab({"a\nb"}), std::runtime_error);
}

TEST(Vocab, BuildOrdersByCountThenBytes) {
  const Vocab v = Vocab::build({"b a a", "c B A", "D 中 中, z"}, 1);
  // a:3 b:2 中:2 then count 1 in byte order: "," < "c" < "d" < "z".
  EXPECT_EQ(v.tokens(), (Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "中", ",",
                                 "c", "d", "z"}));
  EXPECT_EQ(v.pad_id(), 0);
  EXPECT_EQ(v.unk_id(), 1);
  EXPECT_EQ(v.cls_id(), 2);
  EXPECT_EQ(v.sep_id(), 3);

  const Vocab common = Vocab::build({"b a a", "c B A", "D 中 中, z"}, 2);
  EXPECT_EQ(common.tokens(),
            (Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "中"}));
  // Bracketed words are split by punctuation, so they never collide with special tokens.
  const Vocab brackets = Vocab::build({"[PAD] [UNK]"}, 1);
  EXPECT_EQ(brackets.size(), 9);
}

TEST(Vocab, BuildThenTokenize) {
  const Vocab v = Vocab::build({"新款 手机壳", "新款连衣裙"}, 1);
  const Tokenizer tok(v);
  const std::vector<std::int64_t> ids = tok.encode("新款手机", 6);
  EXPECT_EQ(ids[0], v.cls_id());
  EXPECT_EQ(v.token(ids[1]), "新");
  EXPECT_EQ(v.token(ids[2]), "款");
  EXPECT_EQ(v.token(ids[3]), "手");
  EXPECT_EQ(v.token(ids[4]), "机");
  EXPECT_EQ(ids[5], v.sep_id());
}

// ---- parity with Python BERT ----------------------------------------------------------------

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
    } else if (i + 1 < s.size() && s[i + 1] == '\\') {
      out.push_back('\\');
      ++i;
    } else if (s.compare(i, 3, "\\u{") == 0) {
      const std::size_t close = s.find('}', i);
      if (close == std::string::npos) throw std::runtime_error("bad escape in " + s);
      out += utf8(static_cast<char32_t>(std::stoul(s.substr(i + 3, close - i - 3), nullptr, 16)));
      i = close;
    } else {
      throw std::runtime_error("bad escape in " + s);
    }
  }
  return out;
}

TEST(Parity, MatchesPythonBertOnGoldenQueries) {
  const std::string fixtures = std::string(SHOPCLIP_SOURCE_DIR) + "/tests/fixtures/";
  const Tokenizer tok(Vocab::load(fixtures + "vocab_small.txt"));
  std::istringstream golden(test_support::read_file(fixtures + "tokenizer_golden.tsv"));
  std::string line;
  ASSERT_TRUE(std::getline(golden, line));  // header
  ASSERT_EQ(line, "query\tids_ctx52\tpieces");
  int checked = 0, with_unk = 0, with_hash = 0;
  while (std::getline(golden, line)) {
    const Strings cols = split(line, '\t');
    ASSERT_EQ(cols.size(), 3u) << line;
    const std::string query = unescape(cols[0]);
    std::vector<std::int64_t> want_ids;
    for (const std::string& id : split(cols[1], ' '))
      want_ids.push_back(std::stoll(id));
    const Strings want_pieces = cols[2] == "(none)" ? Strings{} : split(cols[2], ' ');

    const Strings pieces = tok.tokenize(query);
    EXPECT_EQ(pieces, want_pieces) << "query: " << cols[0];
    EXPECT_EQ(tok.encode(query, 52), want_ids) << "query: " << cols[0];
    ++checked;
    for (const std::string& p : pieces) {
      with_unk += p == "[UNK]";
      with_hash += p.rfind("##", 0) == 0;
    }
  }
  // Guard against a truncated fixture silently weakening the test.
  EXPECT_GE(checked, 300);
  EXPECT_GT(with_unk, 10);
  EXPECT_GT(with_hash, 50);
}

// The same queries with the real 21128-token bert-base-chinese vocabulary that Chinese-CLIP
// ships: the same pieces, and ids that are those pieces' lines in the real file, framed as
// Chinese-CLIP frames them ([CLS] 101 ... [SEP] 102, zero padding to 52).
TEST(Parity, FullChineseClipVocabularyGivesTheSamePieces) {
  const std::string fixtures = std::string(SHOPCLIP_SOURCE_DIR) + "/tests/fixtures/";
  const Vocab full =
      Vocab::load(std::string(SHOPCLIP_SOURCE_DIR) + "/configs/chinese_clip/vocab.txt");
  ASSERT_EQ(full.size(), 21128);
  EXPECT_EQ(full.pad_id(), 0);
  const Tokenizer tok(full);
  std::istringstream golden(test_support::read_file(fixtures + "tokenizer_golden.tsv"));
  std::string line;
  ASSERT_TRUE(std::getline(golden, line));  // header
  int checked = 0;
  while (std::getline(golden, line)) {
    const Strings cols = split(line, '\t');
    const std::string query = unescape(cols[0]);
    const Strings want_pieces = cols[2] == "(none)" ? Strings{} : split(cols[2], ' ');
    EXPECT_EQ(tok.tokenize(query), want_pieces) << "query: " << cols[0];
    std::vector<std::int64_t> want_ids{101};
    for (std::size_t i = 0; i < want_pieces.size() && i < 50; ++i)
      want_ids.push_back(full.id(want_pieces[i]));
    want_ids.push_back(102);
    want_ids.resize(52, 0);
    EXPECT_EQ(tok.encode(query, 52), want_ids) << "query: " << cols[0];
    ++checked;
  }
  EXPECT_GE(checked, 300);
}

}  // namespace
}  // namespace shopclip::data
