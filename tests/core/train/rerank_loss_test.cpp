// Tests for the learned reranker's training loss (core/train/rerank_loss.h) and its place in the
// step: the pairs chosen on a hand-built batch (with and without relevant pairs), the loss equal
// to binary cross-entropy on those pairs scored one at a time, shares of a split batch summing to
// the whole batch's loss and gradients, and single-process steps where the towers learn through
// the reranker alone or stay frozen while only the reranker learns.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "core/model/reranker.h"
#include "core/train/loss.h"
#include "core/train/optim.h"
#include "core/train/rerank_loss.h"
#include "core/train/step.h"
#include "dist/communicator.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip {
namespace {

using Longs = std::vector<std::int64_t>;

Longs as_vector(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return Longs(c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel());
}

// Three pairs in 2-D. s(text j, image i) = texts[j] . images[i]:
//            image 0  image 1  image 2
//   text 0     .8       .6       .96
//   text 1     0        1        .8
//   text 2     1        0        .6
struct HandBatch {
  torch::Tensor images = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {0.6f, 0.8f}});
  torch::Tensor texts = torch::tensor({{0.8f, 0.6f}, {0.0f, 1.0f}, {1.0f, 0.0f}});
};

TEST(RerankPairs, HardestNonRelevantImageOfEachTextAndTextOfEachImage) {
  HandBatch h;
  const auto pairs = rerank_training_pairs(ContrastiveBatch::whole(h.images, h.texts, {}));
  // Matches; then each text's hardest other image (0 -> 2, 1 -> 2, 2 -> 0); then each image's
  // hardest other text (0 -> 2, 1 -> 0, 2 -> 0).
  EXPECT_EQ(as_vector(pairs.texts), (Longs{0, 1, 2, 0, 1, 2, 2, 0, 0}));
  EXPECT_EQ(as_vector(pairs.images), (Longs{0, 1, 2, 2, 2, 0, 0, 1, 2}));
  EXPECT_TRUE(
      torch::equal(pairs.labels, torch::tensor({1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f})));
}

TEST(RerankPairs, RelevantPairsAreNeverNegatives) {
  HandBatch h;
  // Text 0 also answers image 2. Text 0's candidates are then image 1 only (image 0 is its
  // match, image 2 relevant): .6; image 2's are text 1 (.8) and not text 0 (relevant).
  auto relevant = torch::zeros({3, 3}, torch::kBool);
  relevant[2][0] = true;
  const auto pairs = rerank_training_pairs(ContrastiveBatch::whole(h.images, h.texts, relevant));
  EXPECT_EQ(as_vector(pairs.texts), (Longs{0, 1, 2, 0, 1, 2, 2, 0, 1}));
  EXPECT_EQ(as_vector(pairs.images), (Longs{0, 1, 2, 1, 2, 0, 0, 1, 2}));
  // Everything relevant: no negative is left, only the matches.
  const auto all = torch::ones({3, 3}, torch::kBool);
  const auto only_matches = rerank_training_pairs(ContrastiveBatch::whole(h.images, h.texts, all));
  EXPECT_EQ(as_vector(only_matches.texts), (Longs{0, 1, 2}));
  EXPECT_EQ(as_vector(only_matches.images), (Longs{0, 1, 2}));
}

RerankerConfig small_reranker() {
  RerankerConfig config;
  config.layers = 1;
  config.width = 8;
  config.heads = 2;
  config.mlp = 16;
  return config;
}

// A batch of `rows` random unit embeddings with random token features (text width 6, 5 tokens
// with trailing padding; image width 4, 3 tokens), every feature a leaf with gradient.
struct RandomBatch {
  torch::Tensor images, texts, image_tokens, text_states, padding, relevant;
  explicit RandomBatch(std::int64_t rows) {
    torch::manual_seed(21);
    images = torch::nn::functional::normalize(torch::randn({rows, 4}),
                                              torch::nn::functional::NormalizeFuncOptions().dim(1));
    texts = torch::nn::functional::normalize(torch::randn({rows, 4}),
                                             torch::nn::functional::NormalizeFuncOptions().dim(1));
    image_tokens = torch::randn({rows, 3, 4}).requires_grad_(true);
    text_states = torch::randn({rows, 5, 6}).requires_grad_(true);
    padding = torch::zeros({rows, 5}, torch::kBool);
    padding.index_put_({torch::indexing::Slice(), torch::indexing::Slice(3)}, true);
    relevant = torch::zeros({rows, rows}, torch::kBool);
    relevant[0][3] = true;
    relevant[3][0] = true;
  }
  // Rows [begin, begin + count) as one rank's share.
  ContrastiveBatch share(std::int64_t begin, std::int64_t count) const {
    ContrastiveBatch batch{images.narrow(0, begin, count),
                           texts.narrow(0, begin, count),
                           images,
                           texts,
                           begin,
                           relevant,
                           {}};
    batch.tokens = {image_tokens.narrow(0, begin, count),
                    text_states.narrow(0, begin, count),
                    padding.narrow(0, begin, count),
                    image_tokens,
                    text_states,
                    padding};
    return batch;
  }
};

TEST(RerankLoss, EqualsBinaryCrossEntropyOfTheChosenPairsScoredOneByOne) {
  RandomBatch b(6);
  torch::manual_seed(2);
  Reranker reranker(small_reranker(), 6, 4);
  const auto batch = b.share(0, 6);
  const auto loss = rerank_matching_loss(batch, *reranker);
  const auto pairs = rerank_training_pairs(batch);
  ASSERT_GT(pairs.texts.size(0), 6);  // negatives exist
  double expected = 0;
  for (std::int64_t p = 0; p < pairs.texts.size(0); ++p) {
    const auto t = pairs.texts[p].item<std::int64_t>(), i = pairs.images[p].item<std::int64_t>();
    const double logit = reranker
                             ->forward(b.text_states.narrow(0, t, 1), b.padding.narrow(0, t, 1),
                                       b.image_tokens.narrow(0, i, 1))
                             .item<double>();
    const double label = pairs.labels[p].item<double>();
    // -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]
    expected += std::log1p(std::exp(-logit)) + (1 - label) * logit;
  }
  expected /= 3.0 * 6;
  EXPECT_NEAR(loss.item<double>(), expected, 1e-5);
}

TEST(RerankLoss, SharesOfASplitBatchSumToTheWholeBatch) {
  RandomBatch b(8);
  torch::manual_seed(3);
  Reranker reranker(small_reranker(), 6, 4);
  const auto whole = rerank_matching_loss(b.share(0, 8), *reranker);
  const auto whole_grads = torch::autograd::grad({whole}, {b.image_tokens, b.text_states});
  for (const int ranks : {2, 4}) {
    SCOPED_TRACE(ranks);
    torch::Tensor total = torch::zeros({});
    const std::int64_t rows = 8 / ranks;
    for (int r = 0; r < ranks; ++r)
      total = total + rerank_matching_loss(b.share(r * rows, rows), *reranker);
    const auto grads = torch::autograd::grad({total}, {b.image_tokens, b.text_states});
    EXPECT_NEAR(total.item<double>(), whole.item<double>(), 1e-6);
    EXPECT_TRUE(torch::allclose(grads[0], whole_grads[0], 1e-5, 1e-7));
    EXPECT_TRUE(torch::allclose(grads[1], whole_grads[1], 1e-5, 1e-7));
  }
}

TEST(RerankLoss, RefusesABatchWithoutTokenFeatures) {
  HandBatch h;
  Reranker reranker(small_reranker(), 6, 4);
  test_support::expect_throw_containing<std::invalid_argument>(
      [&] { rerank_matching_loss(ContrastiveBatch::whole(h.images, h.texts, {}), *reranker); },
      "no token features");
}

// ---- in the step ----

struct StepCase {
  std::vector<std::pair<std::string, torch::Tensor>> gradients;
  double rerank = 0;
};

StepCase one_step(FrozenTower freeze, double infonce_weight) {
  ModelConfig model_config = test_support::tiny_model_config(ImageTowerType::kCnn);
  model_config.reranker = small_reranker();
  model_config.reranker.image_tokens = 4;
  TrainConfig train;
  train.infonce_weight = infonce_weight;
  train.rerank_weight = 1.0;
  train.freeze = freeze;
  torch::manual_seed(7);
  DualEncoder model(model_config, 16, 0);
  model->train();
  model->freeze(freeze);
  auto optimizer = make_adamw(model, train);
  dist::SingleProcessCommunicator single;
  StepRunner runner(model, *optimizer, single, train);
  StepInputs inputs;
  inputs.images = torch::randn({6, 3, 16, 16});
  inputs.tokens = torch::randint(4, 16, {6, 10}, torch::kLong);
  inputs.tokens.index_put_({torch::indexing::Slice(), torch::indexing::Slice(6)}, 0);
  StepCase out;
  out.rerank = runner.forward_backward(inputs).part("rerank");
  for (const auto& item : model->named_parameters(true)) {
    const auto& grad = item.value().grad();
    out.gradients.emplace_back(item.key(), grad.defined() ? grad.abs().max() : torch::zeros({}));
  }
  return out;
}

TEST(RerankStep, GradCacheAndChineseClipTowersAreRefused) {
  ModelConfig model_config = test_support::tiny_model_config(ImageTowerType::kCnn);
  model_config.reranker = small_reranker();
  DualEncoder model(model_config, 16, 0);
  TrainConfig train;
  train.rerank_weight = 1.0;
  train.micro_batch = 2;
  auto optimizer = make_adamw(model, train);
  dist::SingleProcessCommunicator single;
  test_support::expect_throw_containing<ConfigError>(
      [&] { StepRunner runner(model, *optimizer, single, train); }, "train.micro_batch");
  ModelConfig clip;
  clip.embed_dim = 24;
  clip.image.resolution = 32;
  clip.text.context_length = 8;
  clip.chinese_clip.vision_config =
      SHOPCLIP_SOURCE_DIR "/tests/fixtures/chinese_clip_tiny/vision.json";
  clip.chinese_clip.text_config = SHOPCLIP_SOURCE_DIR "/tests/fixtures/chinese_clip_tiny/text.json";
  clip.reranker = small_reranker();
  test_support::expect_throw_containing<std::invalid_argument>([&] { DualEncoder(clip, 21128, 0); },
                                                               "model.reranker.layers");
}

TEST(RerankStep, TheTowersLearnThroughTheRerankerAlone) {
  // InfoNCE off: every tower gradient comes from the reranker's loss through the token features.
  const StepCase step = one_step(FrozenTower::kNone, 0.0);
  EXPECT_GT(step.rerank, 0.0);
  for (const auto& [name, size] : step.gradients) {
    if (name == "log_logit_scale" || name.find("projection") != std::string::npos) {
      // Neither the scale nor the embedding projections feed the reranker.
      EXPECT_EQ(size.item<double>(), 0.0) << name;
    } else if (name.find("weight") != std::string::npos) {
      EXPECT_GT(size.item<double>(), 0.0) << name;
    }
  }
}

TEST(RerankStep, FrozenTowersLeaveOnlyTheRerankerAndTheScaleToLearn) {
  const StepCase step = one_step(FrozenTower::kBoth, 1.0);
  EXPECT_GT(step.rerank, 0.0);
  for (const auto& [name, size] : step.gradients) {
    const bool learns = name.rfind("reranker.", 0) == 0 || name == "log_logit_scale";
    if (!learns) {
      EXPECT_EQ(size.item<double>(), 0.0) << name;
    } else if (name.find("bias") == std::string::npos) {
      EXPECT_GT(size.item<double>(), 0.0) << name;
    }
  }
}

}  // namespace
}  // namespace shopclip
