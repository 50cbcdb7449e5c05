// Tests for MUGE scoring against hand-computed recalls (the official rule: a query is a hit at K
// when ANY of its ground-truth ids is among its first K predictions) and the exact shape of the
// official result JSON.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/eval/metrics.h"
#include "data/error.h"

namespace shopclip {
namespace {

using Ids = std::vector<std::int64_t>;

data::Query query(std::int64_t id, Ids ground_truth) {
  data::Query q;
  q.id = id;
  q.text = "query " + std::to_string(id);
  q.image_ids = std::move(ground_truth);
  return q;
}

// Ten distinct filler ids that match no ground truth, with `hits` placed at 1-based ranks.
data::Prediction prediction(std::int64_t id, std::vector<std::pair<int, std::int64_t>> hits) {
  data::Prediction p;
  p.query_id = id;
  for (int r = 0; r < 10; ++r)
    p.image_ids.push_back(900000 + id * 100 + r);
  for (const auto& [rank, image] : hits)
    p.image_ids[rank - 1] = image;
  return p;
}

// Five queries:
//   1: ground truth {100, 101}; 101 at rank 1                       -> hit at 1, 5, 10
//   2: ground truth {200};      200 at rank 3                       -> hit at 5, 10
//   3: ground truth {300};      300 at rank 7                       -> hit at 10
//   4: ground truth {400};      not predicted                       -> no hit
//   5: ground truth {500, 501}; 501 at rank 5, 500 at rank 9        -> first hit 5: hit at 5, 10
// R@1 = 1/5, R@5 = 3/5, R@10 = 4/5.
struct Case {
  std::vector<data::Query> reference;
  std::vector<data::Prediction> predictions;
};

Case hand_case() {
  Case c;
  c.reference = {query(1, {100, 101}), query(2, {200}), query(3, {300}), query(4, {400}),
                 query(5, {500, 501})};
  // Listed out of reference order: matching is by query id, not by position.
  c.predictions = {prediction(3, {{7, 300}}), prediction(1, {{1, 101}}),
                   prediction(5, {{5, 501}, {9, 500}}), prediction(2, {{3, 200}}),
                   prediction(4, {})};
  return c;
}

TEST(MugeRecall, HandComputedCase) {
  const auto c = hand_case();
  std::vector<QueryOutcome> outcomes;
  const auto scores = muge_recall(c.reference, c.predictions, &outcomes);
  EXPECT_EQ(scores.queries, 5);
  EXPECT_DOUBLE_EQ(scores.r1, 20.0);
  EXPECT_DOUBLE_EQ(scores.r5, 60.0);
  EXPECT_DOUBLE_EQ(scores.r10, 80.0);
  EXPECT_NEAR(scores.mean_recall, (20.0 + 60.0 + 80.0) / 3.0, 1e-12);

  // Outcomes follow the reference order, with the first correct rank (0 = none).
  ASSERT_EQ(outcomes.size(), 5u);
  const std::vector<std::pair<std::int64_t, int>> expected = {
      {1, 1}, {2, 3}, {3, 7}, {4, 0}, {5, 5}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(outcomes[i].query_id, expected[i].first);
    EXPECT_EQ(outcomes[i].first_hit_rank, expected[i].second) << "query " << expected[i].first;
  }
}

TEST(MugeRecall, BoundaryRanks) {
  // A hit at rank 5 counts for R@5 but not R@1; rank 10 only for R@10; rank 6 not for R@5.
  const std::vector<data::Query> reference = {query(1, {11}), query(2, {22}), query(3, {33})};
  const std::vector<data::Prediction> predictions = {
      prediction(1, {{5, 11}}), prediction(2, {{10, 22}}), prediction(3, {{6, 33}})};
  const auto scores = muge_recall(reference, predictions);
  EXPECT_DOUBLE_EQ(scores.r1, 0.0);
  EXPECT_NEAR(scores.r5, 100.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(scores.r10, 100.0);
}

TEST(MugeRecall, AllCorrectScoresHundred) {
  const std::vector<data::Query> reference = {query(7, {70}), query(8, {80, 81})};
  const auto scores = muge_recall(reference, {prediction(7, {{1, 70}}), prediction(8, {{1, 81}})});
  EXPECT_DOUBLE_EQ(scores.r1, 100.0);
  EXPECT_DOUBLE_EQ(scores.r5, 100.0);
  EXPECT_DOUBLE_EQ(scores.r10, 100.0);
  EXPECT_DOUBLE_EQ(scores.mean_recall, 100.0);
}

TEST(MugeRecall, MissingPredictionThrowsNamingQuery) {
  auto c = hand_case();
  // Drop query 4's prediction.
  c.predictions.erase(c.predictions.begin() + 4);
  try {
    muge_recall(c.reference, c.predictions);
    FAIL() << "expected DataError";
  } catch (const data::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("no prediction for reference query 4"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(muge_recall({query(123456, {1})}, {}), data::DataError);
}

TEST(MugeRecall, ExtraPredictionsAreIgnored) {
  auto c = hand_case();
  const auto before = muge_recall(c.reference, c.predictions);
  c.predictions.push_back(prediction(99, {{1, 100}}));  // not a reference query
  std::vector<QueryOutcome> outcomes;
  const auto after = muge_recall(c.reference, c.predictions, &outcomes);
  EXPECT_EQ(after.queries, 5);
  EXPECT_DOUBLE_EQ(after.r1, before.r1);
  EXPECT_DOUBLE_EQ(after.r5, before.r5);
  EXPECT_DOUBLE_EQ(after.r10, before.r10);
  EXPECT_EQ(outcomes.size(), 5u);
}

TEST(MugeRecall, OutcomesVectorIsReplaced) {
  const auto c = hand_case();
  std::vector<QueryOutcome> outcomes(17);  // stale content from an earlier call
  muge_recall(c.reference, c.predictions, &outcomes);
  EXPECT_EQ(outcomes.size(), 5u);
}

TEST(MugeRecall, NoReferenceQueriesScoresZero) {
  const auto scores = muge_recall({}, {prediction(1, {})});
  EXPECT_EQ(scores.queries, 0);
  EXPECT_EQ(scores.mean_recall, 0.0);
}

TEST(OfficialJson, ResultHasExactlyTheOfficialShape) {
  RecallScores scores;
  scores.r1 = 20.0;
  scores.r5 = 60.0;
  scores.r10 = 80.0;
  scores.mean_recall = 160.0 / 3;
  scores.queries = 5;
  const auto json = nlohmann::ordered_json::parse(official_result_json(scores));
  ASSERT_TRUE(json.is_object());
  std::vector<std::string> top_keys;
  for (const auto& item : json.items())
    top_keys.push_back(item.key());
  EXPECT_EQ(top_keys, (std::vector<std::string>{"success", "score", "scoreJson"}));
  EXPECT_EQ(json["success"], true);
  EXPECT_DOUBLE_EQ(json["score"].get<double>(), 160.0 / 3);

  const auto& inner = json["scoreJson"];
  std::vector<std::string> inner_keys;
  for (const auto& item : inner.items())
    inner_keys.push_back(item.key());
  EXPECT_EQ(inner_keys, (std::vector<std::string>{"score", "mean_recall", "r1", "r5", "r10"}));
  EXPECT_DOUBLE_EQ(inner["score"].get<double>(), 160.0 / 3);
  EXPECT_DOUBLE_EQ(inner["mean_recall"].get<double>(), 160.0 / 3);
  EXPECT_DOUBLE_EQ(inner["r1"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(inner["r5"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(inner["r10"].get<double>(), 80.0);
  // The query count is not part of the official output.
  EXPECT_FALSE(inner.contains("queries"));
}

TEST(OfficialJson, ResultFromScoredPredictions) {
  const auto c = hand_case();
  const auto json =
      nlohmann::json::parse(official_result_json(muge_recall(c.reference, c.predictions)));
  EXPECT_NEAR(json["score"].get<double>(), 160.0 / 3, 1e-9);
  EXPECT_DOUBLE_EQ(json["scoreJson"]["r5"].get<double>(), 60.0);
}

TEST(OfficialJson, ErrorShape) {
  const auto json = nlohmann::ordered_json::parse(official_error_json("line 3: not JSON"));
  std::vector<std::string> keys;
  for (const auto& item : json.items())
    keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"success", "score", "errorMsg"}));
  EXPECT_EQ(json["success"], false);
  EXPECT_EQ(json["score"], 0);
  EXPECT_EQ(json["errorMsg"], "line 3: not JSON");
  // A message quoting invalid UTF-8 from a bad file still gives valid JSON.
  EXPECT_NO_THROW(nlohmann::json::parse(official_error_json("bad byte \xff here")));
}

}  // namespace
}  // namespace shopclip
