// Query-text augmentations: the variants, synonym and word-list files (and the file:line of their
// bad lines), and the word operations on a small jieba-format dictionary.

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "data/error.h"
#include "data/text_augment.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using test_support::Contains;
using test_support::TempDir;
using test_support::write_file;

QuerySet two_queries() {
  QuerySet set;
  set.file = "train_texts.jsonl";
  set.queries = {{7, "红色连衣裙", {1}, 1}, {8, "耐克运动鞋", {2}, 2}};
  return set;
}

// The DataError message of fn, or a failure when it throws none.
template <class Fn>
std::string data_error(Fn&& fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

TEST(TextVariants, ReadsVariantsByQueryTextAndNamesBadLines) {
  TempDir dir;
  write_file(dir.file("aug.jsonl"),
             "{\"text_id\": 7, \"variants\": [\"连衣裙 红\", \"红色的裙子\"]}\n\n"
             "{\"text_id\": 7, \"variants\": [\"红裙\"]}\n");
  const auto variants = read_text_variants(dir.file("aug.jsonl"), two_queries());
  ASSERT_EQ(variants.size(), 1u);
  EXPECT_EQ(variants.at("红色连衣裙"),
            (std::vector<std::string>{"连衣裙 红", "红色的裙子", "红裙"}));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"text_id\": 9, \"variants\": [\"x\"]}", "text_id 9 is not a query of train_texts.jsonl"},
      {"{\"text_id\": \"7\", \"variants\": [\"x\"]}", "'text_id' is not an integer"},
      {"{\"text_id\": 7, \"variants\": \"x\"}", "'variants' is not a list"},
      {"{\"text_id\": 7, \"variants\": [\"\"]}", "non-empty string"},
      {"{\"text_id\": 7}", "expected an object"},
      {"not json", "not JSON"}};
  for (const auto& [line, reason] : bad) {
    write_file(dir.file("bad.jsonl"), "{\"text_id\": 8, \"variants\": [\"鞋\"]}\n" + line + "\n");
    const std::string message =
        data_error([&] { read_text_variants(dir.file("bad.jsonl"), two_queries()); });
    EXPECT_TRUE(Contains(message, dir.file("bad.jsonl") + ":2")) << message;
    EXPECT_TRUE(Contains(message, reason)) << message;
  }
}

TEST(TextVariants, SubstitutionUsesAVariantAtItsProbability) {
  const TextVariants variants = {{"红色连衣裙", {"红裙", "红色的裙子"}}};
  const VariantSubstitution always(variants, 1.0), never(variants, 0.0), some(variants, 0.25);
  std::set<std::string> seen;
  int substituted = 0;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    Rng a(seed), b(seed), c(seed), d(seed);
    const std::string text = always.apply("红色连衣裙", a);
    seen.insert(text);
    EXPECT_EQ(text, always.apply("红色连衣裙", b)) << "deterministic in the seed";
    EXPECT_EQ(never.apply("红色连衣裙", c), "红色连衣裙");
    substituted += some.apply("红色连衣裙", d) != "红色连衣裙";
    Rng e(seed);
    EXPECT_EQ(always.apply("耐克运动鞋", e), "耐克运动鞋") << "no variants: unchanged";
  }
  EXPECT_EQ(seen, (std::set<std::string>{"红裙", "红色的裙子"}));
  EXPECT_NEAR(substituted, 100, 30);
}

TEST(WordFiles, SynonymGroupsAndWordListsNameTheirBadLines) {
  TempDir dir;
  write_file(dir.file("synonyms.txt"), "# colours\n红色\t红\t大红\n\n裙子 连衣裙\n");
  const auto synonyms = read_synonyms(dir.file("synonyms.txt"));
  EXPECT_EQ(synonyms.at("红"), (std::vector<std::string>{"红色", "大红"}));
  EXPECT_EQ(synonyms.at("连衣裙"), (std::vector<std::string>{"裙子"}));
  write_file(dir.file("one.txt"), "红色 红\n孤单\n");
  std::string message = data_error([&] { read_synonyms(dir.file("one.txt")); });
  EXPECT_TRUE(Contains(message, dir.file("one.txt") + ":2")) << message;
  EXPECT_TRUE(Contains(message, "two or more words")) << message;
  write_file(dir.file("utf8.txt"), "红色 \xff\n");
  message = data_error([&] { read_synonyms(dir.file("utf8.txt")); });
  EXPECT_TRUE(Contains(message, dir.file("utf8.txt") + ":1: invalid UTF-8")) << message;

  write_file(dir.file("protected.txt"), "耐克\n  红色  \n# comment\n");
  EXPECT_EQ(read_word_list(dir.file("protected.txt")),
            (std::unordered_set<std::string>{"耐克", "红色"}));
  write_file(dir.file("two.txt"), "耐克\n阿迪 达斯\n");
  message = data_error([&] { read_word_list(dir.file("two.txt")); });
  EXPECT_TRUE(Contains(message, dir.file("two.txt") + ":2: one word per line")) << message;
}

TEST(WordAugmentation, JoinKeepsLatinWordsApart) {
  EXPECT_EQ(join_words({"红色", "iPhone", "13", "手机"}), "红色iPhone 13手机");
  EXPECT_EQ(join_words({}), "");
}

// A dictionary where 红色 / 连衣裙 / 耐克 / 修身 are words: "耐克红色修身连衣裙" cuts into four.
class WordOps : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir.file("dict.txt"), "红色 1000\n连衣裙 1000\n耐克 1000\n修身 1000\n红 10\n");
  }
  WordAugmentation make(WordAugmentOptions options,
                        std::unordered_map<std::string, std::vector<std::string>> synonyms = {},
                        std::unordered_set<std::string> protected_words = {}) {
    return WordAugmentation(WordSegmenter::from_file(dir.file("dict.txt")), options,
                            std::move(synonyms), std::move(protected_words));
  }
  TempDir dir;
  const std::string query = "耐克红色修身连衣裙";
};

TEST_F(WordOps, DeletionRemovesUpToKWordsButNeverAProtectedOrTheLastOne) {
  WordAugmentOptions options;
  options.deletion = 1.0;
  options.max_deleted = 2;
  const auto deleting = make(options, {}, {"耐克"});
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed);
    const std::string text = deleting.apply(query, rng);
    seen.insert(text);
    EXPECT_EQ(text.rfind("耐克", 0), 0u) << text;  // the protected word stays, and first
    EXPECT_LT(text.size(), query.size());
    EXPECT_GE(text.size(), query.size() - 15) << "at most two words go (the longest: 9 + 6 bytes)";
  }
  EXPECT_GT(seen.size(), 3u);
  Rng rng(1);
  EXPECT_EQ(deleting.apply("连衣裙", rng), "连衣裙") << "the last word stays";
}

TEST_F(WordOps, SynonymReplacesOneUnprotectedWord) {
  WordAugmentOptions options;
  options.synonym = 1.0;
  const auto replacing = make(options, {{"红色", {"大红"}}, {"耐克", {"NIKE"}}}, {"耐克"});
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    EXPECT_EQ(replacing.apply(query, rng), "耐克大红修身连衣裙");
  }
}

TEST_F(WordOps, SwapExchangesTwoWordsAndNothingChangesAtProbabilityZero) {
  WordAugmentOptions options;
  options.swap = 1.0;
  const auto swapping = make(options);
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    const std::string text = swapping.apply(query, rng);
    EXPECT_NE(text, query);
    std::string sorted_text = text, sorted_query = query;
    std::sort(sorted_text.begin(), sorted_text.end());
    std::sort(sorted_query.begin(), sorted_query.end());
    EXPECT_EQ(sorted_text, sorted_query) << "the same words";
  }
  const auto idle = make(WordAugmentOptions{});
  Rng rng(3);
  EXPECT_EQ(idle.apply("耐克 红色  连衣裙", rng), "耐克 红色  连衣裙") << "returned as it came";
  WordAugmentOptions bad;
  bad.swap = 1.5;
  EXPECT_THROW(make(bad), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip::data
