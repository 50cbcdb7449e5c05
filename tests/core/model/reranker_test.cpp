// Tests for the cross-modal reranker (core/model/reranker.h) and the towers' token features it
// reads: output shapes, padding positions that cannot change a score, image tokens whose order
// cannot change it, trailing padding dropped without changing a bit, a gradient for every
// parameter, frozen towers, config refusals, the token features' shapes, their pooling to
// model.reranker.image_tokens, and encode_with_tokens equal to the separate calls.

#include <gtest/gtest.h>

#include <stdexcept>

#include <torch/torch.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "core/model/reranker.h"
#include "test_support.h"

namespace shopclip {
namespace {

RerankerConfig small_config() {
  RerankerConfig config;
  config.layers = 2;
  config.width = 16;
  config.heads = 2;
  config.mlp = 32;
  return config;
}

TEST(Reranker, OneLogitPerPair) {
  torch::manual_seed(1);
  Reranker reranker(small_config(), 12, 20);
  const auto logits = reranker->forward(torch::randn({3, 5, 12}), {}, torch::randn({3, 4, 20}));
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({3}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
}

TEST(Reranker, PaddingPositionsDoNotChangeTheScore) {
  torch::manual_seed(2);
  Reranker reranker(small_config(), 12, 20);
  auto text = torch::randn({2, 6, 12});
  const auto image = torch::randn({2, 4, 20});
  auto padding = torch::zeros({2, 6}, torch::kBool);
  padding.index_put_({0, torch::indexing::Slice(3, torch::indexing::None)}, true);
  padding.index_put_({1, 5}, true);
  const auto before = reranker->forward(text, padding, image);
  auto changed = text.clone();
  changed.index_put_({0, torch::indexing::Slice(3, torch::indexing::None)},
                     torch::randn({3, 12}) * 100);
  changed.index_put_({1, 5}, torch::randn({12}) * 100);
  EXPECT_TRUE(torch::allclose(reranker->forward(changed, padding, image), before, 1e-5, 1e-6));
  // Without the mask the same change does move the scores: the test can fail.
  EXPECT_FALSE(torch::allclose(reranker->forward(changed, {}, image),
                               reranker->forward(text, {}, image), 1e-3, 1e-4));
}

TEST(Reranker, ImageTokenOrderDoesNotChangeTheScore) {
  torch::manual_seed(3);
  Reranker reranker(small_config(), 12, 20);
  const auto text = torch::randn({2, 5, 12});
  const auto image = torch::randn({2, 6, 20});
  const auto shuffled = image.index_select(1, torch::tensor({4, 2, 0, 5, 1, 3}, torch::kLong));
  EXPECT_TRUE(torch::allclose(reranker->forward(text, {}, shuffled),
                              reranker->forward(text, {}, image), 1e-5, 1e-6));
  // A different image does change it.
  EXPECT_FALSE(torch::allclose(reranker->forward(text, {}, torch::randn({2, 6, 20})),
                               reranker->forward(text, {}, image), 1e-3, 1e-4));
}

TEST(Reranker, EveryParameterGetsAGradient) {
  torch::manual_seed(4);
  Reranker reranker(small_config(), 12, 20);
  const auto logits = reranker->forward(torch::randn({4, 5, 12}), {}, torch::randn({4, 3, 20}));
  const auto labels = torch::tensor({1.0f, 0.0f, 0.0f, 1.0f});
  torch::binary_cross_entropy_with_logits(logits, labels).backward();
  for (const auto& p : reranker->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST(Reranker, RefusesBadConfigAndShapes) {
  RerankerConfig config = small_config();
  config.layers = 5;
  EXPECT_THROW(Reranker(config, 12, 20), std::invalid_argument);
  config = small_config();
  config.heads = 3;  // 16 % 3 != 0
  EXPECT_THROW(Reranker(config, 12, 20), std::invalid_argument);
  Reranker reranker(small_config(), 12, 20);
  EXPECT_THROW(reranker->forward(torch::randn({2, 5, 12}), {}, torch::randn({3, 4, 20})),
               std::invalid_argument);
  EXPECT_THROW(reranker->forward(torch::randn({2, 5, 12}), torch::zeros({2, 4}, torch::kBool),
                                 torch::randn({2, 4, 20})),
               std::invalid_argument);
}

TEST(TowerTokens, ShapesForTheCnnAndTheVit) {
  torch::manual_seed(5);
  const auto images = torch::randn({3, 3, 16, 16});
  const auto tokens =
      torch::tensor({{2, 5, 6, 3, 0, 0}, {2, 7, 3, 0, 0, 0}, {2, 8, 9, 10, 11, 3}}, torch::kLong);
  // test_support's tiny towers: CNN widths {4, 8} at 16 px, ViT patches of 8 and width 16, text
  // width 16.
  DualEncoder cnn(test_support::tiny_model_config(ImageTowerType::kCnn), 16, 0);
  cnn->eval();
  // Two stride-2 stages: 16 -> 8 -> 4, so a 4 x 4 grid of 8 channels.
  EXPECT_EQ(cnn->image_tokens(images).sizes(), torch::IntArrayRef({3, 16, 8}));
  EXPECT_EQ(cnn->text_token_states(tokens).sizes(), torch::IntArrayRef({3, 6, 16}));
  DualEncoder vit(test_support::tiny_model_config(ImageTowerType::kVit), 16, 0);
  vit->eval();
  // (16 / 8)^2 = 4 patches and the class token.
  EXPECT_EQ(vit->image_tokens(images).sizes(), torch::IntArrayRef({3, 5, 16}));
  // The features feed a reranker end to end, with the text padding mask from the tokens.
  Reranker reranker(small_config(), 16, 8);
  const auto logits =
      reranker->forward(cnn->text_token_states(tokens), tokens.eq(0), cnn->image_tokens(images));
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({3}));
}

// Frozen towers: the reranker trains on their features and the towers get no gradient.
TEST(TowerTokens, FrozenTowersGiveFeaturesWithoutGradient) {
  torch::manual_seed(6);
  DualEncoder model(test_support::tiny_model_config(ImageTowerType::kCnn), 16, 0);
  model->eval();
  Reranker reranker(small_config(), 16, 8);
  const auto tokens = torch::tensor({{2, 5, 6, 3, 0, 0}, {2, 7, 3, 0, 0, 0}}, torch::kLong);
  torch::Tensor text, image;
  {
    torch::NoGradGuard no_grad;
    text = model->text_token_states(tokens);
    image = model->image_tokens(torch::randn({2, 3, 16, 16}));
  }
  reranker->forward(text, tokens.eq(0), image).sum().backward();
  for (const auto& p : model->named_parameters())
    EXPECT_FALSE(p.value().grad().defined()) << p.key();
  for (const auto& p : reranker->named_parameters())
    EXPECT_TRUE(p.value().grad().defined()) << p.key();
}

// Columns that are padding in every row are cut before the blocks: the logits equal those of
// the batch without them, bit for bit.
TEST(Reranker, TrailingPaddingColumnsAreDroppedExactly) {
  torch::manual_seed(8);
  Reranker reranker(small_config(), 12, 20);
  reranker->eval();
  const auto text = torch::randn({2, 7, 12});
  const auto image = torch::randn({2, 4, 20});
  auto padding = torch::zeros({2, 7}, torch::kBool);
  padding.index_put_({0, torch::indexing::Slice(3, torch::indexing::None)}, true);
  padding.index_put_({1, torch::indexing::Slice(5, torch::indexing::None)}, true);
  const auto full = reranker->forward(text, padding, image);
  const auto cut = reranker->forward(text.narrow(1, 0, 5), padding.narrow(1, 0, 5), image);
  EXPECT_TRUE(torch::equal(full, cut));
}

TEST(TowerTokens, EncodeWithTokensEqualsTheSeparateCalls) {
  const auto tokens =
      torch::tensor({{2, 5, 6, 3, 0, 0}, {2, 7, 3, 0, 0, 0}, {2, 8, 9, 10, 11, 3}}, torch::kLong);
  for (const auto type : {ImageTowerType::kCnn, ImageTowerType::kVit}) {
    SCOPED_TRACE(enum_name(type));
    torch::manual_seed(9);
    const auto images = torch::randn({3, 3, 16, 16});
    DualEncoder model(test_support::tiny_model_config(type), 16, 0);
    model->eval();
    const auto encoded = model->encode_with_tokens(images, tokens);
    EXPECT_TRUE(torch::allclose(encoded.images, model->encode_image(images), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(encoded.texts, model->encode_text(tokens), 1e-5, 1e-6));
    EXPECT_TRUE(torch::equal(encoded.image_tokens, model->image_tokens(images)));
    EXPECT_TRUE(torch::equal(encoded.text_states, model->text_token_states(tokens)));
    EXPECT_TRUE(torch::equal(encoded.text_padding, tokens.eq(0)));
  }
}

// model.reranker.image_tokens = s * s pools the grid to s x s: each pooled token is the mean of
// its block of the unpooled grid; a ViT keeps its class token in front.
TEST(TowerTokens, TheGridIsAveragePooledToImageTokens) {
  torch::manual_seed(10);
  const auto images = torch::randn({2, 3, 16, 16});
  using torch::indexing::Slice;
  {
    ModelConfig whole = test_support::tiny_model_config(ImageTowerType::kCnn);
    whole.reranker.image_tokens = 0;
    ModelConfig pooled = whole;
    pooled.reranker.image_tokens = 4;
    torch::manual_seed(3);
    DualEncoder a(whole, 16, 0);
    torch::manual_seed(3);
    DualEncoder b(pooled, 16, 0);
    a->eval();
    b->eval();
    const auto grid = a->image_tokens(images);  // [2, 16, 8], row-major 4 x 4
    const auto tokens = b->image_tokens(images);
    ASSERT_EQ(tokens.sizes(), torch::IntArrayRef({2, 4, 8}));
    // Pooled token 1 (top right) = mean of grid cells (0, 2), (0, 3), (1, 2), (1, 3).
    const auto expected =
        (grid.select(1, 2) + grid.select(1, 3) + grid.select(1, 6) + grid.select(1, 7)) / 4;
    EXPECT_TRUE(torch::allclose(tokens.select(1, 1), expected, 1e-5, 1e-6));
  }
  {
    ModelConfig whole = test_support::tiny_model_config(ImageTowerType::kVit);
    whole.reranker.image_tokens = 0;
    ModelConfig pooled = whole;
    pooled.reranker.image_tokens = 1;
    torch::manual_seed(4);
    DualEncoder a(whole, 16, 0);
    torch::manual_seed(4);
    DualEncoder b(pooled, 16, 0);
    a->eval();
    b->eval();
    const auto all = a->image_tokens(images);  // [2, 1 + 4, 16]
    const auto tokens = b->image_tokens(images);
    ASSERT_EQ(tokens.sizes(), torch::IntArrayRef({2, 2, 16}));
    EXPECT_TRUE(torch::equal(tokens.select(1, 0), all.select(1, 0)));  // the class token
    EXPECT_TRUE(torch::allclose(tokens.select(1, 1), all.index({Slice(), Slice(1, 5)}).mean(1),
                                1e-5, 1e-6));
  }
}

}  // namespace
}  // namespace shopclip
