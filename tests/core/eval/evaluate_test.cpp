// evaluate_split through the Encoder seam, on a split built by hand: 12 prepared images whose
// pixels name their row, 4 queries, and an Encoder whose embeddings are a table (image row r ->
// e_r; query q -> a vector that ranks the rows in an order fixed below), so every top-10 list and
// R@1/5/10 are known by hand. Also: raw (not unit-norm) embeddings are ranked by cosine, an
// approximate index still gives 10 distinct ids, the encoder is called in eval.batch_size batches
// of the documented shapes, the DualEncoder overload (what the trainer calls) equals the adapter
// and restores the training flag, and a pool smaller than top_k is refused.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/config.h"
#include "core/eval/evaluate.h"
#include "core/model/encoder.h"
#include "core/model/encoders.h"
#include "data/error.h"
#include "data/loader.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "test_support.h"

namespace shopclip {
namespace {

using Ids = std::vector<std::int64_t>;
using test_support::TempDir;

constexpr int kImages = 12;

// Storage order of the pool: row r holds image id kPoolIds[r] (not sorted, not contiguous, so
// that a row/id mix-up shows).
const Ids kPoolIds = {907, 12, 455, 3, 78, 1001, 64, 250, 333, 19, 700, 5};

// A prepared split (shard + manifest) at `resolution` whose image r has every pixel = 10 * r, and
// its ImageStore.
std::unique_ptr<data::ImageStore> make_store(const std::string& dir, const Ids& ids,
                                             int resolution) {
  const data::PrepParams params{resolution, "bicubic", "RGB"};
  data::ShardWriter writer(dir + "/shard-00000.h5", params, 4);
  std::vector<std::uint8_t> pixels;
  for (std::size_t r = 0; r < ids.size(); ++r)
    pixels.insert(pixels.end(), static_cast<std::size_t>(resolution) * resolution * 3,
                  static_cast<std::uint8_t>(10 * r));
  writer.append(ids, pixels.data());
  writer.finish();
  data::Manifest manifest;
  manifest.split = "hand";
  manifest.params = params;
  manifest.shards = {{"shard-00000.h5", static_cast<std::int64_t>(ids.size())}};
  manifest.num_images = static_cast<std::int64_t>(ids.size());
  manifest.source_file = "hand_imgs.tsv";
  data::write_manifest(dir, manifest);
  return std::make_unique<data::ImageStore>(dir, params);
}

// Query q ranks the pool rows in kOrders[q] (best first) and its relevant rows are kRelevant[q]:
//   q0: relevant row 3 ranked 1st             -> hit at 1, 5, 10
//   q1: relevant row 9 ranked 3rd             -> hit at 5, 10
//   q2: relevant rows 6 (7th) and 11 (12th)   -> hit at 10 (any relevant id counts)
//   q3: relevant rows 10 (11th) and 11 (12th) -> no hit
// R@1 = 1/4, R@5 = 2/4, R@10 = 3/4: 25, 50, 75; MeanRecall 50.
const std::vector<Ids> kOrders = {{3, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11},
                                  {11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
                                  {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                                  {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}};
const std::vector<Ids> kRelevant = {{3}, {9}, {6, 11}, {10, 11}};
const Ids kQueryIds = {11, 22, 33, 44};

// Image row r -> e_r (times r + 1 when raw: the norms then differ, and an inner product of raw
// rows would rank differently from the cosine). Query q -> weights 12, 11, ... 1 along its
// order (times 3 when raw). Texts "q0".."q3" are one token each after [CLS].
class TableEncoder final : public Encoder {
 public:
  explicit TableEncoder(bool unit)
      : unit_(unit),
        tokenizer_(data::Vocab::from_tokens(
            {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "q0", "q1", "q2", "q3"})) {}

  torch::Tensor encode_images(const torch::Tensor& images) override {
    check_image_batch(images, image_resolution(), "TableEncoder");
    image_batches.push_back(images.size(0));
    auto out = torch::zeros({images.size(0), kImages});
    for (std::int64_t b = 0; b < images.size(0); ++b) {
      // Undo the CLIP normalisation of channel 0 to read the pixel value 10 * row.
      const double x = images[b][0][0][0].item<double>();
      const double value = (x * data::kClipStd[0] + data::kClipMean[0]) * 255.0;
      const auto row = static_cast<std::int64_t>(std::lround(value / 10.0));
      out[b][row] = unit_ ? 1.0f : static_cast<float>(row + 1);
    }
    return out;
  }

  torch::Tensor encode_texts(const torch::Tensor& tokens) override {
    check_token_batch(tokens, context_length(), "TableEncoder");
    text_batches.push_back(tokens.size(0));
    auto out = torch::zeros({tokens.size(0), kImages});
    for (std::int64_t b = 0; b < tokens.size(0); ++b) {
      const auto q = static_cast<std::size_t>(tokens[b][1].item<std::int64_t>() - 5);
      for (std::size_t i = 0; i < kOrders[q].size(); ++i)
        out[b][kOrders[q][i]] = static_cast<float>(kImages - i);
    }
    return unit_ ? out / out.norm(2, 1, true) : out * 3.0f;
  }

  std::int64_t dim() const override { return kImages; }
  bool normalized() const override { return unit_; }
  int image_resolution() const override { return 4; }
  int context_length() const override { return 4; }
  const data::Tokenizer& tokenizer() const override { return tokenizer_; }

  std::vector<std::int64_t> image_batches, text_batches;

 private:
  bool unit_;
  data::Tokenizer tokenizer_;
};

struct HandSplit {
  TempDir dir;
  SplitData split;

  explicit HandSplit(int resolution = 4, const std::vector<std::string>& texts = {}) {
    split.name = "hand";
    split.images = make_store(dir.path(), kPoolIds, resolution);
    split.queries.schema = data::QuerySchema::kChineseClip;
    for (std::size_t q = 0; q < kQueryIds.size(); ++q) {
      data::Query query;
      query.id = kQueryIds[q];
      query.text = texts.empty() ? "q" + std::to_string(q) : texts[q];
      for (const auto row : kRelevant[q])
        query.image_ids.push_back(kPoolIds[row]);
      query.line = static_cast<std::int64_t>(q) + 1;
      split.queries.queries.push_back(query);
    }
    split.has_ground_truth = true;
  }
};

Config eval_config(const std::string& index = "Flat") {
  Config config;
  config.eval.index = index;
  config.eval.batch_size = 5;
  config.eval.top_k = 10;
  return config;
}

// The expected top 10 of query q: the first 10 rows of its order, as ids.
Ids expected_top10(std::size_t q) {
  Ids ids;
  for (int i = 0; i < 10; ++i)
    ids.push_back(kPoolIds[kOrders[q][i]]);
  return ids;
}

void expect_hand_results(const EvalResult& result) {
  ASSERT_EQ(result.predictions.size(), 4u);
  for (std::size_t q = 0; q < 4; ++q) {
    EXPECT_EQ(result.predictions[q].query_id, kQueryIds[q]);
    EXPECT_EQ(result.predictions[q].image_ids, expected_top10(q)) << "query " << q;
  }
  ASSERT_TRUE(result.scores.has_value());
  EXPECT_DOUBLE_EQ(result.scores->r1, 25.0);
  EXPECT_DOUBLE_EQ(result.scores->r5, 50.0);
  EXPECT_DOUBLE_EQ(result.scores->r10, 75.0);
  EXPECT_DOUBLE_EQ(result.scores->mean_recall, 50.0);
  EXPECT_EQ(result.scores->queries, 4);
}

TEST(EvaluateSplit, HandBuiltSplitGivesTheHandWorkedTop10AndRecalls) {
  HandSplit hand;
  TableEncoder encoder(/*unit=*/true);
  dist::SingleProcessCommunicator comm;
  expect_hand_results(evaluate_split(encoder, hand.split, eval_config(), comm));
  // eval.batch_size 5: the 12 images in 5 + 5 + 2, the 4 queries in one batch.
  EXPECT_EQ(encoder.image_batches, (std::vector<std::int64_t>{5, 5, 2}));
  EXPECT_EQ(encoder.text_batches, (std::vector<std::int64_t>{4}));
}

TEST(EvaluateSplit, RawEmbeddingsAreRankedByCosine) {
  HandSplit hand;
  TableEncoder encoder(/*unit=*/false);
  dist::SingleProcessCommunicator comm;
  expect_hand_results(evaluate_split(encoder, hand.split, eval_config(), comm));
}

TEST(EvaluateSplit, ApproximateIndexStillGivesTenDistinctIdsOfThePool) {
  HandSplit hand;
  TableEncoder encoder(/*unit=*/true);
  dist::SingleProcessCommunicator comm;
  // 4 lists over 12 images, one probed: every query gets about 3 rows from the index.
  const auto result = evaluate_split(encoder, hand.split, eval_config("IVF4,Flat"), comm);
  ASSERT_EQ(result.predictions.size(), 4u);
  const std::set<std::int64_t> pool(kPoolIds.begin(), kPoolIds.end());
  for (const auto& prediction : result.predictions) {
    const std::set<std::int64_t> ids(prediction.image_ids.begin(), prediction.image_ids.end());
    EXPECT_EQ(prediction.image_ids.size(), 10u);
    EXPECT_EQ(ids.size(), 10u);
    for (const auto id : ids)
      EXPECT_TRUE(pool.count(id)) << id;
  }
  EXPECT_TRUE(result.scores.has_value());
}

TEST(EvaluateSplit, PoolSmallerThanTopKIsRefused) {
  HandSplit hand;
  TableEncoder encoder(/*unit=*/true);
  dist::SingleProcessCommunicator comm;
  Config config = eval_config();
  config.eval.top_k = 13;
  try {
    evaluate_split(encoder, hand.split, config, comm);
    ADD_FAILURE() << "evaluated 12 images for top 13";
  } catch (const data::DataError& e) {
    EXPECT_TRUE(test_support::Contains(e.what(), "fewer than eval.top_k = 13"));
  }
}

TEST(EvaluateSplit, DualEncoderOverloadEqualsTheAdapterAndRestoresTraining) {
  torch::manual_seed(11);
  Config config = eval_config();
  config.model = test_support::tiny_model_config(ImageTowerType::kCnn);
  const std::vector<std::string> texts = {"红色 连衣裙", "白色 条纹", "黑色 波点 裙", "蓝色"};
  HandSplit hand(config.model.image.resolution, texts);
  const data::Tokenizer tokenizer(data::Vocab::build(texts));
  DualEncoder model(config.model, tokenizer.vocab().size(), tokenizer.vocab().pad_id());
  model->train();
  dist::SingleProcessCommunicator comm;
  const auto through_overload = evaluate_split(model, tokenizer, hand.split, config, comm);
  EXPECT_TRUE(model->is_training());
  DualEncoderAdapter adapter(model, tokenizer, config.model.text.context_length);
  const auto through_adapter = evaluate_split(adapter, hand.split, config, comm);
  ASSERT_EQ(through_overload.predictions.size(), through_adapter.predictions.size());
  for (std::size_t q = 0; q < through_adapter.predictions.size(); ++q) {
    EXPECT_EQ(through_overload.predictions[q].image_ids, through_adapter.predictions[q].image_ids);
  }
  EXPECT_DOUBLE_EQ(through_overload.scores->mean_recall, through_adapter.scores->mean_recall);
}

}  // namespace
}  // namespace shopclip
