#include "data/segmenter.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;
using Words = std::vector<std::string>;

// Every expectation on this dictionary was checked against jieba 0.42.1 itself
// (jieba.Tokenizer(dictionary=...).cut(text, HMM=False)).
constexpr const char* kSmallDictionary =
    "北京 100 ns\n"
    "大学 80 n\n"
    "北京大学 50 nt\n"
    "研究 200\n"
    "生命 200\n"
    "研究生 50\n"
    "命 1\n"
    "中华人民共和国 1000\n"
    "华人 0\n"
    "连衣裙 300 n\n"
    "手机壳 40\n"
    "新款 60\n"
    "T恤 50\n"
    "c++ 3 nz\n"
    "甲 5\n"
    "甲乙 5\n"
    "乙丙 7\n"
    "丙 7\n"
    "女 20\n"
    "Wi-Fi 9\n"
    "AT&T 3\n"
    "C# 3\n"
    "3.5mm 2\n"
    "my_bag 2\n"
    "100% 2\n"
    "中\u9fd5 5\n"                          // U+9FD5: the last character of jieba's han range
    "中\u9fd6 5\n"                          // U+9FD6: the first past it
    "\u4dff一 5\n";                         // U+4DFF: the last before it
constexpr std::int64_t kSmallTotal = 2214;  // the sum of the frequencies above

// Writes dictionary text to a file of dir and loads it.
WordSegmenter load(const TempDir& dir, const std::string& text) {
  const std::string path = dir.file("dict.txt");
  write_file(path, text);
  return WordSegmenter::from_file(path);
}

// from_file's DataError message for a dictionary file with this text, or "" (and a failure).
std::string load_error(const TempDir& dir, const std::string& text) {
  const std::string path = dir.file("bad_dict.txt");
  write_file(path, text);
  try {
    WordSegmenter::from_file(path);
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "loading a dictionary of " << ::testing::PrintToString(text) << " did not throw";
  return "";
}

// Sets or unsets SHOPCLIP_JIEBA_DICT for one scope, restoring the previous value after.
class DictionaryVariable {
 public:
  explicit DictionaryVariable(const char* value) {
    if (const char* old = std::getenv(kName)) previous_ = old;
    if (value)
      setenv(kName, value, 1);
    else
      unsetenv(kName);
  }
  ~DictionaryVariable() {
    if (previous_)
      setenv(kName, previous_->c_str(), 1);
    else
      unsetenv(kName);
  }
  DictionaryVariable(const DictionaryVariable&) = delete;
  DictionaryVariable& operator=(const DictionaryVariable&) = delete;

 private:
  static constexpr const char* kName = "SHOPCLIP_JIEBA_DICT";
  std::optional<std::string> previous_;
};

class SegmenterTest : public ::testing::Test {
 protected:
  TempDir dir_;
  WordSegmenter segmenter_ = load(dir_, kSmallDictionary);
};

TEST_F(SegmenterTest, ChoosesTheMostProbableSplit) {
  // One word beats two when its frequency beats theirs over the total: 50 > 100 * 80 / 2214.
  EXPECT_EQ(segmenter_.cut("北京大学"), (Words{"北京大学"}));
  // Not greedy longest match: 研究/生命 (200 * 200) beats 研究生/命 (50 * 1).
  EXPECT_EQ(segmenter_.cut("研究生命"), (Words{"研究", "生命"}));
  // Lowering the long word's frequency flips the first choice.
  TempDir other;
  std::string lowered = kSmallDictionary;
  lowered.replace(lowered.find("北京大学 50"), std::string("北京大学 50").size(), "北京大学 1");
  EXPECT_EQ(load(other, lowered).cut("北京大学"), (Words{"北京", "大学"}));
}

TEST_F(SegmenterTest, BreaksExactTiesTowardTheLongerFirstWord) {
  // 甲/乙丙 and 甲乙/丙 are both frequencies 5 then 7, so their scores are the same double;
  // Python's max over (score, end) picks the larger end.
  EXPECT_EQ(segmenter_.cut("甲乙丙"), (Words{"甲乙", "丙"}));
}

TEST_F(SegmenterTest, WalksPrefixesThatAreNotWords) {
  // 中华, 中华人, ... are prefixes only, yet the walk reaches the 7-character word through them.
  EXPECT_EQ(segmenter_.cut("中华人民共和国"), (Words{"中华人民共和国"}));
  // A prefix alone is not a word, nor is a word with frequency 0.
  EXPECT_EQ(segmenter_.cut("中华人民"), (Words{"中", "华", "人", "民"}));
  EXPECT_EQ(segmenter_.cut("华人"), (Words{"华", "人"}));
}

TEST_F(SegmenterTest, HanBlocksHoldTheAsciiSymbolsOfWordsAndEndAtTheRangeLimits) {
  for (const std::string word : {"Wi-Fi", "AT&T", "C#", "3.5mm", "my_bag", "100%", "c++"})
    EXPECT_EQ(segmenter_.cut(word), Words{word});
  EXPECT_EQ(segmenter_.cut("Wi-Fi连衣裙3.5mm"), (Words{"Wi-Fi", "连衣裙", "3.5mm"}));
  // A dictionary word reaching past the range cannot match: the block ends before it.
  EXPECT_EQ(segmenter_.cut("中\u9fd5中\u9fd6"), (Words{"中\u9fd5", "中", "\u9fd6"}));
  EXPECT_EQ(segmenter_.cut("\u4dff一"), (Words{"\u4dff", "一"}));
}

TEST_F(SegmenterTest, UnknownCharactersStandAlone) {
  EXPECT_EQ(segmenter_.cut("龘"), (Words{"龘"}));
  EXPECT_EQ(segmenter_.cut("中华人民共和国龘连衣裙"), (Words{"中华人民共和国", "龘", "连衣裙"}));
}

TEST_F(SegmenterTest, JoinsAsciiLetterAndDigitRuns) {
  EXPECT_EQ(segmenter_.cut("iPhone13手机壳"), (Words{"iPhone13", "手机壳"}));
  // A dictionary word with letters ends the run; digits before it stay one token.
  EXPECT_EQ(segmenter_.cut("2023新款T恤"), (Words{"2023", "新款", "T恤"}));
  EXPECT_EQ(segmenter_.cut("T恤T恤tt"), (Words{"T恤", "T恤", "tt"}));
  EXPECT_EQ(segmenter_.cut("c++"), (Words{"c++"}));
  // + . - _ % # & belong to the block but are not letters or digits: they split runs.
  EXPECT_EQ(segmenter_.cut("abc+def"), (Words{"abc", "+", "def"}));
  EXPECT_EQ(segmenter_.cut("a1b2.c3"), (Words{"a1b2", ".", "c3"}));
  EXPECT_EQ(segmenter_.cut("x-y_z%1#2&3"),
            (Words{"x", "-", "y", "_", "z", "%", "1", "#", "2", "&", "3"}));
  // Full-width letters are not ASCII: not joined, and outside han blocks.
  EXPECT_EQ(segmenter_.cut("ＡＢ"), (Words{"Ａ", "Ｂ"}));
}

TEST_F(SegmenterTest, PunctuationIsOneTokenPerCharacterAndWhitespaceIsDropped) {
  EXPECT_EQ(segmenter_.cut("连衣裙，女！"), (Words{"连衣裙", "，", "女", "！"}));
  EXPECT_EQ(segmenter_.cut("！？"), (Words{"！", "？"}));
  EXPECT_EQ(segmenter_.cut("ab c"), (Words{"ab", "c"}));
  EXPECT_EQ(segmenter_.cut(" 连衣裙\u3000女\t\r\n新款\u00a0 "), (Words{"连衣裙", "女", "新款"}));
  // U+200B is not whitespace to Python (str.isspace), so it is a token.
  EXPECT_EQ(segmenter_.cut("连衣裙\u200b女"), (Words{"连衣裙", "\u200b", "女"}));
  EXPECT_EQ(segmenter_.cut("😀连衣裙"), (Words{"😀", "连衣裙"}));
  // U+9FD6 is just past jieba's han range: it ends the block.
  EXPECT_EQ(segmenter_.cut("中\u9fd6华"), (Words{"中", "\u9fd6", "华"}));
  EXPECT_EQ(segmenter_.cut(""), Words{});
  EXPECT_EQ(segmenter_.cut(" \t\u3000"), Words{});
}

TEST_F(SegmenterTest, InvalidUtf8BytesAreTokensOfTheirOwn) {
  // A stray byte, a surrogate, an overlong '/', and a sequence cut short at the end.
  EXPECT_EQ(segmenter_.cut("\xff连衣裙"), (Words{"\xff", "连衣裙"}));
  EXPECT_EQ(segmenter_.cut("女\xed\xa0\x80"), (Words{"女", "\xed", "\xa0", "\x80"}));
  EXPECT_EQ(segmenter_.cut("\xc0\xaf"
                           "ab"),
            (Words{"\xc0", "\xaf", "ab"}));
  EXPECT_EQ(segmenter_.cut("新款\xe4\xb8"), (Words{"新款", "\xe4", "\xb8"}));
}

TEST_F(SegmenterTest, ViewsMatchCopiesAndPointIntoTheText) {
  const std::string text = "2023新款T恤，iPhone13手机壳 研究生命";
  const auto views = segmenter_.cut_views(text);
  const auto words = segmenter_.cut(text);
  ASSERT_EQ(views.size(), words.size());
  std::string joined;
  for (std::size_t i = 0; i < views.size(); ++i) {
    EXPECT_EQ(std::string(views[i]), words[i]);
    EXPECT_GE(views[i].data(), text.data());
    EXPECT_LE(views[i].data() + views[i].size(), text.data() + text.size());
    joined += words[i];
  }
  EXPECT_EQ(joined, "2023新款T恤，iPhone13手机壳研究生命");  // the text minus its whitespace
}

TEST_F(SegmenterTest, ReportsFrequencies) {
  EXPECT_EQ(segmenter_.frequency("北京大学"), 50);
  EXPECT_EQ(segmenter_.frequency("c++"), 3);
  EXPECT_EQ(segmenter_.frequency("华人"), 0);  // a line with frequency 0
  EXPECT_EQ(segmenter_.frequency("中华"), 0);  // a prefix only
  EXPECT_EQ(segmenter_.frequency("龘"), 0);    // absent
  EXPECT_EQ(segmenter_.total_frequency(), kSmallTotal);
  EXPECT_EQ(segmenter_.size(), 28u);  // every line's word, 华人 included; prefixes are not words
}

TEST(SegmenterLoadTest, RepeatedWordKeepsItsLastFrequencyAndTheTotalCountsEveryLine) {
  // jieba's own dict.txt lists B超 twice; jieba overwrites the frequency and adds both lines.
  TempDir dir;
  const auto segmenter = load(dir, "鞋 5\n女鞋 7 n\n鞋 3\n");
  EXPECT_EQ(segmenter.frequency("鞋"), 3);
  EXPECT_EQ(segmenter.total_frequency(), 15);
  EXPECT_EQ(segmenter.size(), 2u);
}

TEST(SegmenterLoadTest, AcceptsTagsCarriageReturnsAndSurroundingSpaces) {
  TempDir dir;
  const auto segmenter = load(dir, "  连衣裙 30 n\r\n女 2\r\n  夏季 4 t extra\t\n新款 6");
  EXPECT_EQ(segmenter.frequency("连衣裙"), 30);
  EXPECT_EQ(segmenter.frequency("女"), 2);
  EXPECT_EQ(segmenter.frequency("夏季"), 4);
  EXPECT_EQ(segmenter.frequency("新款"), 6);  // a last line without '\n'
  EXPECT_EQ(segmenter.cut("连衣裙女夏季新款"), (Words{"连衣裙", "女", "夏季", "新款"}));
}

TEST(SegmenterLoadTest, MalformedLinesNameTheFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("bad_dict.txt");
  struct Case {
    std::string text;
    std::string line_and_reason;
  };
  const Case cases[] = {
      {"女 1\n连衣裙\n", ":2: no frequency after '连衣裙'"},
      {"女 1\n新款 6\n连衣裙 abc n\n", ":3: frequency 'abc' of '连衣裙' is not a non-negative"},
      {"连衣裙 -5\n", ":1: frequency '-5' of '连衣裙' is negative"},
      {"连衣裙 1.5\n", ":1: frequency '1.5' of '连衣裙' is not a non-negative"},
      {"连衣裙  5\n", ":1: frequency '' of '连衣裙'"},  // two spaces: an empty field, as in jieba
      {"连衣裙\t5\n", ":1: no frequency after '连衣裙\t5'"},
      {"连衣裙 99999999999999999999\n", ":1: frequency '99999999999999999999'"},
      {"女 1\n\n新款 6\n", ":2: empty line"},
      {"女 1\n   \n", ":2: empty line"},
      {"女 1\n\xe8\xa3 3\n", ":2: not valid UTF-8"},
      {"女 9223372036854775807\n新款 1\n", ":2: the frequencies sum beyond int64"},
  };
  for (const auto& c : cases) {
    const std::string message = load_error(dir, c.text);
    EXPECT_TRUE(Contains(message, path + c.line_and_reason)) << c.text;
  }
}

TEST(SegmenterLoadTest, RefusesADictionaryWithoutPositiveFrequencies) {
  // Every score divides by the total, so an all-zero (or empty) dictionary cannot segment.
  TempDir dir;
  EXPECT_TRUE(Contains(load_error(dir, "女 0\n新款 0\n"), "no word with a positive frequency"));
  EXPECT_TRUE(Contains(load_error(dir, ""), "no word with a positive frequency"));
}

TEST(SegmenterLoadTest, MissingFileNamesThePath) {
  TempDir dir;
  const std::string path = dir.file("absent/dict.txt");
  try {
    WordSegmenter::from_file(path);
    FAIL() << "no exception for a missing file";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "cannot open jieba dictionary '" + path + "'"));
  }
}

TEST(SegmenterLoadTest, DefaultDictionaryPathFollowsTheVariableThenDebian) {
  TempDir dir;
  const std::string chosen = dir.file("my_dict.txt");
  write_file(chosen, "女 1\n");
  {
    DictionaryVariable set(chosen.c_str());
    EXPECT_EQ(WordSegmenter::default_dictionary_path(), chosen);
  }
  {
    const std::string missing = dir.file("missing.txt");
    DictionaryVariable set(missing.c_str());
    try {
      WordSegmenter::default_dictionary_path();
      ADD_FAILURE() << "no exception for a missing $SHOPCLIP_JIEBA_DICT";
    } catch (const DataError& e) {
      EXPECT_TRUE(Contains(e.what(), "SHOPCLIP_JIEBA_DICT is '" + missing + "'"));
    }
  }
  const std::string debian = "/usr/lib/python3/dist-packages/jieba/dict.txt";
  for (const char* value : {static_cast<const char*>(nullptr), ""}) {
    DictionaryVariable set(value);
    if (std::filesystem::exists(debian)) {
      EXPECT_EQ(WordSegmenter::default_dictionary_path(), debian);
    } else {
      try {
        WordSegmenter::default_dictionary_path();
        ADD_FAILURE() << "no exception although " << debian << " is missing";
      } catch (const DataError& e) {
        EXPECT_TRUE(Contains(e.what(), "apt-get install python3-jieba"));
      }
    }
  }
}

// The real dictionary against jieba itself: tests/fixtures/jieba_cuts.jsonl holds Debian jieba's
// jieba.cut(text, HMM=False) of a few hundred queries (made by make_jieba_cuts.py); its first
// line describes the dict.txt they were made with.
TEST(SegmenterParityTest, AgreesWithJiebaOnEveryFixtureQuery) {
  const std::string fixture = std::string(SHOPCLIP_SOURCE_DIR) + "/tests/fixtures/jieba_cuts.jsonl";
  std::ifstream in(fixture);
  ASSERT_TRUE(in) << "cannot open " << fixture;
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << fixture << " is empty";
  const auto header = nlohmann::json::parse(line).at("dictionary");

  // Throws with the install hint when python3-jieba is missing.
  const std::string path = WordSegmenter::default_dictionary_path();
  const auto segmenter = WordSegmenter::from_file(path);
  ASSERT_TRUE(segmenter.size() == header.at("words").get<std::size_t>() &&
              segmenter.total_frequency() == header.at("total_frequency").get<std::int64_t>())
      << path << " is not the dictionary " << fixture << " was made with: it has "
      << segmenter.size() << " words summing to " << segmenter.total_frequency()
      << ", the fixture's has " << header.dump()
      << "; regenerate the fixture with /usr/bin/python3 tests/fixtures/make_jieba_cuts.py";

  int queries = 0, mismatches = 0;
  for (int number = 2; std::getline(in, line); ++number) {
    const auto entry = nlohmann::json::parse(line);
    const auto text = entry.at("text").get<std::string>();
    const auto expected = entry.at("words").get<Words>();
    const Words words = segmenter.cut(text);
    ++queries;
    if (words != expected) {
      ++mismatches;
      ADD_FAILURE() << fixture << ":" << number << ": " << ::testing::PrintToString(text)
                    << "\n  jieba: " << ::testing::PrintToString(expected)
                    << "\n  ours:  " << ::testing::PrintToString(words);
    }
  }
  EXPECT_GE(queries, 300) << fixture << " is shorter than expected";
  EXPECT_EQ(mismatches, 0) << "of " << queries << " queries";
}

}  // namespace
}  // namespace shopclip::data
