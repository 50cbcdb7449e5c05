#include "core/report/analysis.h"

#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/report/pages.h"
#include "data/base64.h"
#include "data/error.h"
#include "data/image.h"
#include "data/segmenter.h"
#include "data/thumbnails.h"
#include "test_support.h"

namespace shopclip {
namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

QueryResult result(std::int64_t id, const std::string& text, int first_hit_rank,
                   std::vector<std::int64_t> truth = {1}) {
  QueryResult q;
  q.query.id = id;
  q.query.text = text;
  q.query.image_ids = std::move(truth);
  q.first_hit_rank = first_hit_rank;
  return q;
}

// ---- paired bootstrap ------------------------------------------------------------------------

TEST(PairedBootstrap, TwoQueryCaseMatchesItsExactDistribution) {
  // Differences {0, 1}: a resample's mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4. The
  // observed mean is 0.5; shifted to the null, means 0 and 1 are as extreme: p = 1/2. The 95%
  // interval spans [0, 1].
  const auto r = paired_bootstrap({0, 0}, {0, 1}, 20000, 7);
  EXPECT_DOUBLE_EQ(r.mean_difference, 0.5);
  EXPECT_NEAR(r.p_value, 0.5, 0.02);
  EXPECT_DOUBLE_EQ(r.ci_low, 0.0);
  EXPECT_DOUBLE_EQ(r.ci_high, 1.0);
  EXPECT_EQ(r.pairs, 2);
}

TEST(PairedBootstrap, ConstantAndZeroDifferences) {
  const std::vector<double> a{10, 20, 30, 40, 50};
  std::vector<double> b = a;
  const auto same = paired_bootstrap(a, b, 1000, 1);
  EXPECT_DOUBLE_EQ(same.mean_difference, 0.0);
  EXPECT_DOUBLE_EQ(same.p_value, 1.0);
  for (auto& v : b)
    v += 5;
  const auto shifted = paired_bootstrap(a, b, 999, 1);
  EXPECT_DOUBLE_EQ(shifted.ci_low, 5.0);
  EXPECT_DOUBLE_EQ(shifted.ci_high, 5.0);
  EXPECT_DOUBLE_EQ(shifted.p_value, 1.0 / 1000);  // no resample is as extreme under the null
}

TEST(PairedBootstrap, IntervalAgreesWithTheNormalApproximationForManyPairs) {
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0.3, 2.0);
  const std::size_t n = 2000;
  std::vector<double> a(n, 0.0), b(n);
  for (auto& v : b)
    v = noise(rng);
  const double mean = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double variance = 0;
  for (double v : b)
    variance += (v - mean) * (v - mean);
  const double standard_error = std::sqrt(variance / n / n);
  const auto r = paired_bootstrap(a, b, 4000, 11);
  EXPECT_NEAR(r.ci_low, mean - 1.96 * standard_error, 0.15 * standard_error);
  EXPECT_NEAR(r.ci_high, mean + 1.96 * standard_error, 0.15 * standard_error);
  // mean / se is about 6.7: no resample shifted to the null gets that far.
  EXPECT_LT(r.p_value, 0.001);
  EXPECT_THROW(paired_bootstrap({1}, {1, 2}, 10, 1), std::invalid_argument);
  EXPECT_THROW(paired_bootstrap({}, {}, 10, 1), std::invalid_argument);
}

// ---- breakdowns ------------------------------------------------------------------------------

TEST(RunAnalysis, PerQueryMeanRecallAndGroups) {
  EXPECT_DOUBLE_EQ(result(1, "a", 1).mean_recall(), 100.0);
  EXPECT_DOUBLE_EQ(result(1, "a", 3).mean_recall(), 200.0 / 3);
  EXPECT_DOUBLE_EQ(result(1, "a", 7).mean_recall(), 100.0 / 3);
  EXPECT_DOUBLE_EQ(result(1, "a", 0).mean_recall(), 0.0);
  const std::vector<QueryResult> queries{result(1, "短裙", 1), result(2, "红色长裙", 0),
                                         result(3, "红色连衣裙", 6), result(4, "蓝色连衣裙女", 2)};
  const auto by_length = recall_by_length(queries, {1, 3, 5});
  ASSERT_EQ(by_length.size(), 3u);
  EXPECT_EQ(by_length[0].group, "1-2 chars");
  EXPECT_EQ(by_length[0].queries, 1);
  EXPECT_DOUBLE_EQ(by_length[0].r1, 100.0);
  EXPECT_EQ(by_length[1].group, "3-4 chars");
  EXPECT_DOUBLE_EQ(by_length[1].mean_recall, 0.0);
  EXPECT_EQ(by_length[2].group, "5+ chars");
  EXPECT_EQ(by_length[2].queries, 2);
  EXPECT_DOUBLE_EQ(by_length[2].r1, 0.0);
  EXPECT_DOUBLE_EQ(by_length[2].r5, 50.0);
  EXPECT_DOUBLE_EQ(by_length[2].r10, 100.0);
  EXPECT_DOUBLE_EQ(by_length[2].mean_recall, 50.0);

  TempDir dir;
  write_file(dir.file("dict.txt"), "红色 100 n\n蓝色 100 n\n连衣裙 100 n\n长裙 50 n\n短裙 50 n\n");
  const auto segmenter = data::WordSegmenter::from_file(dir.file("dict.txt"));
  const auto by_keyword = recall_by_keyword(queries, segmenter, 10, 2);
  ASSERT_EQ(by_keyword.size(), 2u);  // 红色 and 连衣裙 appear in two queries each
  for (const auto& g : by_keyword) {
    EXPECT_EQ(g.queries, 2);
    if (g.group == "红色")
      EXPECT_DOUBLE_EQ(g.r10, 50.0);
    else if (g.group == "连衣裙")
      EXPECT_DOUBLE_EQ(g.r10, 100.0);
    else
      ADD_FAILURE() << g.group;
  }
}

TEST(RunAnalysis, WorstQueriesComeFirst) {
  const std::vector<QueryResult> queries{result(1, "a", 1), result(2, "b", 0, {1, 2, 3}),
                                         result(3, "c", 8), result(4, "d", 0), result(5, "e", 4)};
  const auto worst = worst_queries(queries, 4);
  ASSERT_EQ(worst.size(), 4u);
  EXPECT_EQ(worst[0]->query.id, 2);  // missed with the most ground truth
  EXPECT_EQ(worst[1]->query.id, 4);
  EXPECT_EQ(worst[2]->query.id, 3);  // hit only at 8
  EXPECT_EQ(worst[3]->query.id, 5);
}

TEST(RunAnalysis, TrainingCurvesAndTheirErrors) {
  TempDir dir;
  write_file(dir.file("metrics.jsonl"),
             "{\"type\":\"train\",\"step\":10,\"loss\":2.5,\"lr\":0.001}\n"
             "{\"type\":\"eval\",\"step\":20,\"mean_recall\":31.5,\"r1\":1}\n"
             "{\"type\":\"train\",\"step\":20,\"loss\":2.0,\"lr\":0.0005}\n");
  const auto curves = read_training_curves(dir.file("metrics.jsonl"));
  EXPECT_EQ(curves.step, (std::vector<double>{10, 20}));
  EXPECT_EQ(curves.loss, (std::vector<double>{2.5, 2.0}));
  EXPECT_EQ(curves.lr, (std::vector<double>{0.001, 0.0005}));
  EXPECT_EQ(curves.eval_step, (std::vector<double>{20}));
  EXPECT_EQ(curves.eval_mean_recall, (std::vector<double>{31.5}));
  write_file(dir.file("bad.jsonl"),
             "{\"type\":\"train\",\"step\":1,\"loss\":2,\"lr\":1}\n"
             "{\"type\":\"train\",\"step\":2,\"lr\":1}\n");
  try {
    read_training_curves(dir.file("bad.jsonl"));
    FAIL() << "no error";
  } catch (const data::DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "bad.jsonl:2"));
    EXPECT_TRUE(Contains(e.what(), "loss"));
  }
}

// ---- a run folder on disk --------------------------------------------------------------------

class RunFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir.file("data"));
    std::filesystem::create_directories(dir.file("other"));
    // Three valid queries over images 1..12; run A finds query 1 at rank 1 and query 2 at rank
    // 6; run B finds query 2 at rank 1 and query 3 at rank 2.
    data::write_queries(
        dir.file("data/valid_texts.jsonl"), data::QuerySchema::kChineseClip,
        {{101, "红色连衣裙", {1}, 0}, {102, "蓝色衬衫", {2, 3}, 0}, {103, "黑色皮鞋", {4}, 0}});
    data::write_queries(dir.file("data/test_texts.jsonl"), data::QuerySchema::kChineseClip,
                        {{201, "白色帽子", {}, 0}});
    std::vector<std::pair<std::int64_t, std::string>> images;
    for (std::int64_t id = 1; id <= 12; ++id)
      images.emplace_back(id, data::encode_base64(data::encode_jpeg(
                                  shopclip::test_support::random_image(40, 20, id), 90)));
    data::write_images_tsv(dir.file("data/valid_imgs.tsv"), images);
    write_run("a", {{101, {1, 5, 6, 7, 8, 9, 10, 11, 12, 4}},
                    {102, {5, 6, 7, 8, 9, 2, 10, 11, 12, 1}},
                    {103, {5, 6, 7, 8, 9, 10, 11, 12, 1, 2}}});
    write_run("b", {{101, {5, 6, 7, 8, 9, 10, 11, 12, 2, 3}},
                    {102, {3, 5, 6, 7, 8, 9, 10, 11, 12, 1}},
                    {103, {5, 4, 6, 7, 8, 9, 10, 11, 12, 1}}});
  }
  void write_run(const std::string& name, const std::vector<data::Prediction>& predictions) {
    std::filesystem::create_directories(dir.file(name + "/predictions"));
    write_file(dir.file(name + "/config.yaml"), "data:\n  root: " + dir.file("data") + "\n");
    data::write_predictions(dir.file(name + "/predictions/valid.jsonl"),
                            data::QuerySchema::kChineseClip, predictions);
  }
  TempDir dir;
};

TEST_F(RunFolderTest, LoadsAndScoresARun) {
  const auto a = load_run_results(dir.file("a"), "valid");
  EXPECT_EQ(a.data_root, dir.file("data"));
  ASSERT_EQ(a.queries.size(), 3u);
  EXPECT_EQ(a.queries[0].first_hit_rank, 1);
  EXPECT_EQ(a.queries[1].first_hit_rank, 6);
  EXPECT_EQ(a.queries[2].first_hit_rank, 0);
  EXPECT_EQ(a.queries[1].ranked.size(), 10u);
  EXPECT_DOUBLE_EQ(a.scores.r1, 100.0 / 3);
  EXPECT_DOUBLE_EQ(a.scores.r10, 200.0 / 3);
  // The mean of the per-query MeanRecall is the split's MeanRecall.
  double sum = 0;
  for (const auto& q : a.queries)
    sum += q.mean_recall();
  EXPECT_NEAR(sum / 3, a.scores.mean_recall, 1e-9);
}

TEST_F(RunFolderTest, MissingFilesAndTestSplitsGiveClearErrors) {
  try {
    load_run_results(dir.file("a"), "test");
    FAIL() << "no error";
  } catch (const data::DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "predictions/test.jsonl"));
    EXPECT_TRUE(Contains(e.what(), "shopclip eval"));
  }
  data::write_predictions(dir.file("a/predictions/test.jsonl"), data::QuerySchema::kChineseClip,
                          {{201, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}});
  try {
    load_run_results(dir.file("a"), "test");
    FAIL() << "no error";
  } catch (const data::DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "test_texts.jsonl:1"));
    EXPECT_TRUE(Contains(e.what(), "--ref"));
  }
  EXPECT_THROW(load_run_results(dir.file("nowhere"), "valid"), data::DataError);
}

TEST_F(RunFolderTest, ComparesTwoRunsQueryByQuery) {
  const auto comparison = compare_runs(load_run_results(dir.file("a"), "valid"),
                                       load_run_results(dir.file("b"), "valid"), 2000, 5);
  // Per query MeanRecall A: 100, 33.3, 0; B: 0, 100, 66.7 -> mean difference +11.1.
  EXPECT_NEAR(comparison.mean_recall.mean_difference, 100.0 / 9, 1e-9);
  EXPECT_NEAR(comparison.mean_recall.mean_difference,
              comparison.b.scores.mean_recall - comparison.a.scores.mean_recall, 1e-9);
  EXPECT_EQ(comparison.lost.at(1), (std::vector<std::size_t>{0}));
  EXPECT_EQ(comparison.lost.at(10), (std::vector<std::size_t>{0}));
  EXPECT_EQ(comparison.gained.at(1), (std::vector<std::size_t>{1}));
  EXPECT_EQ(comparison.gained.at(5), (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(comparison.gained.at(10), (std::vector<std::size_t>{2}));
  const auto text = comparison_text(comparison, 10);
  EXPECT_TRUE(Contains(text, "黑色皮鞋"));
  EXPECT_TRUE(Contains(text, "+11.11"));

  // The page shows both runs' top predictions for every changed query.
  const auto ids = comparison_thumbnail_ids(comparison, 10);
  EXPECT_TRUE(ids.count(1) && ids.count(4) && ids.count(5));
  const auto thumbnails = data::load_thumbnails(comparison.a.images_file, ids, 16, 2);
  ASSERT_EQ(thumbnails.size(), ids.size());
  const auto small = data::decode_image(thumbnails.at(1));
  EXPECT_EQ(small.width, 16);  // 40 x 20 fitted into 16 x 16 keeps its aspect ratio
  EXPECT_EQ(small.height, 8);
  write_compare_page(comparison, thumbnails, 10, dir.file("compare.html"));
  const auto page = shopclip::test_support::read_file(dir.file("compare.html"));
  EXPECT_TRUE(Contains(page, "data-chart=\"histogram\""));
  EXPECT_TRUE(Contains(page, "黑色皮鞋"));
  EXPECT_TRUE(Contains(page, "data:image/jpeg;base64,"));
}

TEST_F(RunFolderTest, RunsOnDifferentQueriesAreNotCompared) {
  data::write_queries(
      dir.file("other/valid_texts.jsonl"), data::QuerySchema::kChineseClip,
      {{101, "红色连衣裙", {1}, 0}, {109, "蓝色衬衫", {2, 3}, 0}, {103, "黑色皮鞋", {4}, 0}});
  write_run("c", {{101, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
                  {109, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
                  {103, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}});
  RunResultsOptions other;
  other.data_root = dir.file("other");
  try {
    compare_runs(load_run_results(dir.file("a"), "valid"),
                 load_run_results(dir.file("c"), "valid", other), 10, 1);
    FAIL() << "no error";
  } catch (const data::DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "different queries"));
  }
}

}  // namespace
}  // namespace shopclip
