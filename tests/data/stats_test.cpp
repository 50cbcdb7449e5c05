#include "data/stats.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/segmenter.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

// ---- Histogram -------------------------------------------------------------------------------

TEST(Histogram, UniformBinsCatchEverythingAndIgnoreNaN) {
  auto h = Histogram::uniform(0, 10, 5);  // [0,2) [2,4) [4,6) [6,8) [8,10+)
  ASSERT_EQ(h.edges, (std::vector<double>{0, 2, 4, 6, 8, 10}));
  for (double v : {-3.0, 0.0, 1.9, 2.0, 7.5, 10.0, 99.0, std::nan("")})
    h.add(v);
  EXPECT_EQ(h.counts, (std::vector<std::int64_t>{3, 1, 0, 1, 2}));
  EXPECT_EQ(h.total(), 7);
  EXPECT_DOUBLE_EQ(h.min, -3.0);
  EXPECT_DOUBLE_EQ(h.max, 99.0);
  EXPECT_DOUBLE_EQ(h.mean(), (-3.0 + 0 + 1.9 + 2 + 7.5 + 10 + 99) / 7);
  EXPECT_THROW(Histogram::uniform(1, 1, 3), std::invalid_argument);
}

TEST(Histogram, GeometricBinsDoubleInEqualSteps) {
  auto h = Histogram::geometric(16, 256, 4);  // 16 32 64 128 256
  ASSERT_EQ(h.edges.size(), 5u);
  for (std::size_t i = 0; i < h.edges.size(); ++i)
    EXPECT_NEAR(h.edges[i], 16.0 * std::pow(2.0, double(i)), 1e-9);
  for (double v : {20.0, 64.0, 100.0, 5000.0})
    h.add(v);
  EXPECT_EQ(h.counts, (std::vector<std::int64_t>{1, 0, 2, 1}));
  EXPECT_THROW(Histogram::geometric(0, 10, 3), std::invalid_argument);
}

TEST(Histogram, WeightsMergeAndQuantiles) {
  auto a = Histogram::uniform(0, 4, 4), b = Histogram::uniform(0, 4, 4);
  a.add(0.5, 2);  // two values in [0, 1)
  b.add(2.5, 2);  // two in [2, 3)
  a.merge(b);
  EXPECT_EQ(a.counts, (std::vector<std::int64_t>{2, 0, 2, 0}));
  EXPECT_EQ(a.total(), 4);
  EXPECT_DOUBLE_EQ(a.mean(), 1.5);
  EXPECT_DOUBLE_EQ(a.min, 0.5);
  EXPECT_DOUBLE_EQ(a.max, 2.5);
  // Half the mass lies in the first bin, clamped to the observed minimum: the median is the top
  // of that bin's observed range (1.0); 3/4 of the mass sits halfway through [2, 2.5].
  EXPECT_DOUBLE_EQ(a.quantile(0.5), 1.0);
  EXPECT_DOUBLE_EQ(a.quantile(0.75), 2.25);
  EXPECT_DOUBLE_EQ(Histogram::uniform(0, 1, 2).quantile(0.5), 0.0);  // empty
  EXPECT_THROW(a.merge(Histogram::uniform(0, 4, 2)), std::invalid_argument);
}

TEST(TextStats, CodePointsAndCountableWords) {
  EXPECT_EQ(count_code_points("连衣裙a"), 4);
  EXPECT_EQ(count_code_points(""), 0);
  EXPECT_EQ(count_code_points("\xff\xfe"), 2);  // invalid bytes count one each
  EXPECT_TRUE(is_countable_word("连衣裙"));
  EXPECT_TRUE(is_countable_word("T恤"));
  EXPECT_TRUE(is_countable_word("2024"));
  EXPECT_TRUE(is_countable_word("ＸＬ"));  // full-width letters
  EXPECT_FALSE(is_countable_word("，"));
  EXPECT_FALSE(is_countable_word("!"));
  EXPECT_FALSE(is_countable_word("❤"));
}

// ---- the whole dataset -----------------------------------------------------------------------

Image solid(int width, int height, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  Image image{width, height, {}};
  for (int i = 0; i < width * height; ++i)
    image.rgb.insert(image.rgb.end(), {r, g, b});
  return image;
}

// A dictionary where 连衣裙 and 红色 are words and 爆款 is not (a "domain term").
constexpr const char* kDictionary =
    "连衣裙 2000 n\n红色 3000 n\n蓝色 2500 n\n女 90000 n\n夏季 1500 t\n新款 800 n\n"
    "衬衫 1200 n\n男 80000 n\n的 900000 uj\n";

class DatasetStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir.file("dict.txt"), kDictionary);
    std::filesystem::create_directories(dir.file("data"));
    // train: 3 queries over 3 images; valid: 2 queries (one with an unseen word 夏季) over 2.
    write_queries(dir.file("data/train_texts.jsonl"), QuerySchema::kChineseClip,
                  {{1, "红色连衣裙女", {10, 11}, 0},
                   {2, "蓝色衬衫男", {12}, 0},
                   {3, "爆款红色连衣裙", {10}, 0}});
    write_queries(dir.file("data/valid_texts.jsonl"), QuerySchema::kChineseClip,
                  {{4, "夏季新款连衣裙", {20}, 0}, {5, "爆款红色衬衫", {20, 21}, 0}});
    write_images_tsv(
        dir.file("data/train_imgs.tsv"),
        {{10, encode_base64(encode_png(solid(40, 20, 255, 0, 0)))},  // red, 2:1
         {11, encode_base64(encode_png(solid(40, 20, 255, 0, 0)))},
         {12, encode_base64(encode_png(solid(30, 30, 128, 128, 128)))}});  // grey, square
    write_images_tsv(dir.file("data/valid_imgs.tsv"),
                     {{20, encode_base64(encode_png(solid(20, 40, 0, 0, 255)))},  // blue, 1:2
                      {21, encode_base64(encode_png(solid(20, 40, 0, 0, 255)))}});
    segmenter = std::make_unique<WordSegmenter>(WordSegmenter::from_file(dir.file("dict.txt")));
  }

  DatasetStats compute(int threads = 1) {
    StatsOptions options;
    options.threads = threads;
    options.min_domain_count = 2;
    options.pixel_stride = 1;
    return compute_dataset_stats(dir.file("data"), *segmenter, options);
  }

  TempDir dir;
  std::unique_ptr<WordSegmenter> segmenter;
};

TEST_F(DatasetStatsTest, CountsQueriesWordsAndRelevantImages) {
  const auto stats = compute();
  ASSERT_EQ(stats.splits.size(), 2u);
  const auto& train = stats.splits[0];
  const auto& valid = stats.splits[1];
  EXPECT_EQ(train.split, "train");
  EXPECT_EQ(train.queries, 3);
  EXPECT_EQ(valid.queries, 2);
  // Characters 6, 5, 7 -> mean 6; words: 红色|连衣裙|女, 蓝色|衬衫|男, 爆|款|红色|连衣裙.
  EXPECT_DOUBLE_EQ(train.query_chars.mean(), 6.0);
  EXPECT_EQ(train.query_words.total(), 3);
  EXPECT_DOUBLE_EQ(train.query_words.mean(), (3 + 3 + 4) / 3.0);
  EXPECT_EQ(train.word_counts.at("连衣裙"), 2);
  EXPECT_EQ(train.word_counts.at("红色"), 2);
  EXPECT_EQ(train.word_tokens, 10);
  EXPECT_DOUBLE_EQ(train.relevant_images.mean(), (2 + 1 + 1) / 3.0);
  EXPECT_DOUBLE_EQ(valid.relevant_images.mean(), 1.5);
  ASSERT_FALSE(stats.top_words.at("train").empty());
  EXPECT_TRUE(stats.top_words.at("train")[0].word == "红色" ||
              stats.top_words.at("train")[0].word == "连衣裙");
  EXPECT_EQ(stats.top_words.at("train")[0].count, 2);
}

TEST_F(DatasetStatsTest, MeasuresImagesAndColours) {
  const auto stats = compute();
  const auto& train = stats.splits[0];
  const auto& valid = stats.splits[1];
  EXPECT_EQ(train.images, 3);
  EXPECT_DOUBLE_EQ(train.width.mean(), (40 + 40 + 30) / 3.0);
  EXPECT_DOUBLE_EQ(train.height.mean(), (20 + 20 + 30) / 3.0);
  EXPECT_DOUBLE_EQ(train.aspect.mean(), (2 + 2 + 1) / 3.0);
  EXPECT_GT(train.file_kib.mean(), 0.0);
  // Red pixels: hue 0 (first bin); grey pixels: saturation 0 and no hue. Blue: hue 240.
  EXPECT_EQ(train.hue.total(), 2 * 40 * 20);
  EXPECT_EQ(train.hue.counts[0], 2 * 40 * 20);
  EXPECT_EQ(train.saturation.counts[0], 30 * 30);
  EXPECT_EQ(train.saturation.counts.back(), 2 * 40 * 20);
  EXPECT_EQ(valid.hue.counts[24], 2 * 20 * 40);  // [240, 250)
  EXPECT_DOUBLE_EQ(valid.aspect.mean(), 0.5);
}

// Exact multiples of 10 degrees belong to the bin they start (found by the independent check in
// tests/e2e/inspect_pages.sh: 20 degrees used to come out as 19.999999999999982).
TEST(HueDegrees, BinEdgesAreExact) {
  EXPECT_EQ(hue_degrees(255, 85, 0), 20.0);
  EXPECT_EQ(hue_degrees(85, 255, 0), 100.0);
  EXPECT_EQ(hue_degrees(0, 85, 255), 220.0);
  EXPECT_EQ(hue_degrees(255, 0, 85), 340.0);
  EXPECT_EQ(hue_degrees(255, 0, 0), 0.0);
  EXPECT_EQ(hue_degrees(0, 255, 0), 120.0);
  EXPECT_EQ(hue_degrees(0, 0, 255), 240.0);
  EXPECT_EQ(hue_degrees(255, 255, 0), 60.0);
  EXPECT_EQ(hue_degrees(255, 0, 255), 300.0);
  EXPECT_NEAR(hue_degrees(255, 0, 1), 360.0 - 60.0 / 255, 1e-12);
  Histogram bins = Histogram::uniform(0, 360, 36);
  bins.add(hue_degrees(255, 85, 0));
  EXPECT_EQ(bins.counts[2], 1);  // [20, 30)
}

TEST_F(DatasetStatsTest, FindsDomainTermsAndUnseenVocabulary) {
  const auto stats = compute();
  // 爆 and 款 are not dictionary words (single characters, dictionary count 0) yet occur twice:
  // they beat every dictionary word on the ratio.
  ASSERT_GE(stats.domain_terms.size(), 2u);
  EXPECT_TRUE(stats.domain_terms[0].word == "爆" || stats.domain_terms[0].word == "款");
  EXPECT_EQ(stats.domain_terms[0].count, 2);
  for (std::size_t i = 1; i < stats.domain_terms.size(); ++i)
    EXPECT_GE(stats.domain_terms[i - 1].ratio, stats.domain_terms[i].ratio);
  // 女 (90000 in the dictionary, once in the queries) is too rare here to be a domain term.
  for (const auto& term : stats.domain_terms)
    EXPECT_NE(term.word, "女");
  // valid's words: 夏季 新款 连衣裙 爆 款 红色 衬衫; 夏季 and 新款 are unseen in train.
  ASSERT_EQ(stats.unseen.size(), 1u);
  const auto& unseen = stats.unseen[0];
  EXPECT_EQ(unseen.split, "valid");
  EXPECT_EQ(unseen.word_types, 7);
  EXPECT_EQ(unseen.unseen_word_types, 2);
  EXPECT_EQ(unseen.word_tokens, 7);
  EXPECT_EQ(unseen.unseen_word_tokens, 2);
  EXPECT_EQ(unseen.char_types, 12);
  EXPECT_EQ(unseen.unseen_char_types, 3);  // 夏 季 新
  EXPECT_DOUBLE_EQ(unseen.unseen_type_share(), 2.0 / 7.0);
}

TEST_F(DatasetStatsTest, BadLinesAreCountedNotFatalAndThreadsDoNotMatter) {
  write_file(dir.file("data/test_texts.jsonl"),
             "{\"text_id\": 9, \"text\": \"红色\", \"image_ids\": []}\nnot json\n");
  write_file(dir.file("data/test_imgs.tsv"), "30\t!!!notbase64\nno tab here\n");
  const auto one = compute(1), many = compute(3);
  ASSERT_EQ(one.splits.size(), 3u);
  const auto& test = one.splits[2];
  EXPECT_EQ(test.queries, 1);
  EXPECT_EQ(test.bad_query_lines, 1);
  EXPECT_EQ(test.images, 0);
  EXPECT_EQ(test.bad_image_lines, 2);
  EXPECT_EQ(test.relevant_images.total(), 0);  // test lists no ground truth
  auto without_time = [](nlohmann::json j) {
    j.erase("seconds");
    return j;
  };
  EXPECT_EQ(without_time(one.to_json()), without_time(many.to_json()));
}

TEST_F(DatasetStatsTest, JsonHasEveryStatistic) {
  const auto j = compute().to_json();
  EXPECT_EQ(j["format_version"], 1);
  ASSERT_EQ(j["splits"].size(), 2u);
  for (const char* key : {"query_chars", "query_words", "relevant_images", "width", "height",
                          "aspect", "file_kib", "hue", "saturation"}) {
    EXPECT_TRUE(j["splits"][0].contains(key)) << key;
    EXPECT_EQ(j["splits"][0][key]["counts"].size() + 1, j["splits"][0][key]["edges"].size());
  }
  EXPECT_EQ(j["splits"][0]["queries"], 3);
  EXPECT_FALSE(j["domain_terms"].empty());
  EXPECT_EQ(j["unseen"][0]["unseen_word_types"], 2);
}

TEST(DatasetStats, AFolderWithoutSplitsIsAnError) {
  TempDir dir;
  write_file(dir.file("dict.txt"), kDictionary);
  const auto segmenter = WordSegmenter::from_file(dir.file("dict.txt"));
  try {
    compute_dataset_stats(dir.path(), segmenter, {});
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_TRUE(shopclip::test_support::Contains(e.what(), dir.path()));
  }
}

}  // namespace
}  // namespace shopclip::data
