// The Encoder implementations (core/model/encoders.h) keep the contract of core/model/encoder.h:
// outputs equal the wrapped model's own encode calls, float32 [B, D] on the CPU without gradient,
// unit norm exactly when normalized() says so, the model's training flag restored, the input
// description (resolution, context length, tokenizer) that of the model, and inputs of another
// shape refused with a message that states the expected one.

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/model/chinese_clip.h"
#include "core/model/chinese_clip_config.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoder.h"
#include "core/model/encoders.h"
#include "data/tokenizer.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::Contains;

const std::vector<std::string> kTexts = {"红色 连衣裙", "条纹t恤", "", "ins风 白色 帆布鞋 新款"};

data::Vocab vocab_with(std::int64_t size) {
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "红", "色",
                                     "连",    "衣",    "裙",    "条",    "纹",     "t",  "恤"};
  while (static_cast<std::int64_t>(tokens.size()) < size)
    tokens.push_back("tok" + std::to_string(tokens.size()));
  return data::Vocab::from_tokens(tokens);
}

void expect_unit_rows(const torch::Tensor& x) {
  EXPECT_TRUE(torch::allclose(x.norm(2, 1), torch::ones({x.size(0)}), 1e-5, 1e-5));
}

void expect_output(const torch::Tensor& x, std::int64_t rows, std::int64_t dim) {
  EXPECT_EQ(x.sizes(), (std::vector<std::int64_t>{rows, dim}));
  EXPECT_EQ(x.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(x.device().is_cpu());
  EXPECT_TRUE(x.is_contiguous());
  EXPECT_FALSE(x.requires_grad());
}

TEST(DualEncoderAdapter, EqualsTheModelAndKeepsItsTrainingFlag) {
  torch::manual_seed(3);
  const auto config = test_support::tiny_model_config(ImageTowerType::kCnn);
  const auto vocab = vocab_with(40);
  DualEncoder model(config, vocab.size(), vocab.pad_id());
  DualEncoderAdapter encoder(model, data::Tokenizer(vocab), config.text.context_length);
  EXPECT_EQ(encoder.dim(), config.embed_dim);
  EXPECT_TRUE(encoder.normalized());
  EXPECT_EQ(encoder.image_resolution(), config.image.resolution);
  EXPECT_EQ(encoder.context_length(), config.text.context_length);

  const auto images = torch::randn({5, 3, 16, 16});
  const auto tokens = tokenize(encoder, kTexts);
  ASSERT_EQ(tokens.sizes(), (std::vector<std::int64_t>{4, config.text.context_length}));
  for (std::size_t i = 0; i < kTexts.size(); ++i) {
    const auto expected = data::Tokenizer(vocab).encode(kTexts[i], config.text.context_length);
    EXPECT_TRUE(torch::equal(tokens[static_cast<std::int64_t>(i)], torch::tensor(expected)));
  }

  model->train();  // BatchNorm: evaluation mode must be used for encoding, then restored
  const auto image_features = encoder.encode_images(images);
  const auto text_features = encoder.encode_texts(tokens);
  EXPECT_TRUE(model->is_training());
  expect_output(image_features, 5, config.embed_dim);
  expect_output(text_features, 4, config.embed_dim);
  expect_unit_rows(image_features);
  expect_unit_rows(text_features);

  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(image_features, model->encode_image(images), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(text_features, model->encode_text(tokens), 1e-6, 1e-6));
  // The adapter shares the caller's weights: a change is seen by the next call.
  for (auto& p : model->parameters())
    p.add_(0.01);
  EXPECT_TRUE(
      torch::allclose(encoder.encode_images(images), model->encode_image(images), 1e-6, 1e-6));
  EXPECT_EQ(encoder.encode_images(torch::empty({0, 3, 16, 16})).size(0), 0);
}

TEST(DualEncoderAdapter, RefusesOtherShapesNamingTheExpectedOne) {
  const auto config = test_support::tiny_model_config(ImageTowerType::kCnn);
  const auto vocab = vocab_with(40);
  DualEncoderAdapter encoder(DualEncoder(config, vocab.size(), vocab.pad_id()),
                             data::Tokenizer(vocab), config.text.context_length);
  try {
    encoder.encode_images(torch::zeros({2, 3, 32, 32}));
    ADD_FAILURE() << "accepted 32 px images";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "float32 [B, 3, 16, 16]"));
  }
  EXPECT_THROW(encoder.encode_images(torch::zeros({2, 3, 16, 16}, torch::kUInt8)),
               std::invalid_argument);
  try {
    encoder.encode_texts(torch::zeros({2, 7}, torch::kLong));
    ADD_FAILURE() << "accepted 7 tokens";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "int64 [B, 10]"));
  }
  EXPECT_THROW(encoder.encode_texts(torch::zeros({2, 10}, torch::kInt)), std::invalid_argument);
  EXPECT_THROW(DualEncoderAdapter(DualEncoder(config, vocab.size(), vocab.pad_id()),
                                  data::Tokenizer(vocab), config.text.context_length + 1),
               std::invalid_argument);
}

ChineseClipConfig small_chinese_clip() {
  return ChineseClipConfig::from_json_text(
      R"({"embed_dim": 24, "image_resolution": 32, "vision_layers": 1, "vision_width": 64,
          "vision_patch_size": 16})",
      "V.json",
      R"({"vocab_size": 60, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
          "text_hidden_dropout_prob": 0.1, "text_hidden_size": 32, "text_initializer_range": 0.02,
          "text_intermediate_size": 64, "text_max_position_embeddings": 20,
          "text_num_attention_heads": 4, "text_num_hidden_layers": 1, "text_type_vocab_size": 2})",
      "T.json");
}

TEST(ChineseClipEncoder, RawProjectionsUnlessAskedToNormalise) {
  torch::manual_seed(5);
  const auto config = small_chinese_clip();
  ChineseClip model(config);
  const auto vocab = vocab_with(60);
  ChineseClipEncoder raw(model, data::Tokenizer(vocab), 12);
  ChineseClipEncoder unit(model, data::Tokenizer(vocab), 12, /*normalize=*/true);
  EXPECT_FALSE(raw.normalized());
  EXPECT_TRUE(unit.normalized());
  EXPECT_EQ(raw.dim(), 24);
  EXPECT_EQ(raw.image_resolution(), 32);
  EXPECT_EQ(raw.context_length(), 12);

  const auto images = torch::randn({3, 3, 32, 32});
  const auto tokens = tokenize(raw, kTexts);
  model->train();
  const auto raw_images = raw.encode_images(images);
  const auto raw_texts = raw.encode_texts(tokens);
  EXPECT_TRUE(model->is_training());
  expect_output(raw_images, 3, 24);
  expect_output(raw_texts, 4, 24);
  model->eval();
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(raw_images, model->encode_image(images), 1e-6, 1e-6));
    // Padding is the vocabulary's [PAD] id (0 here), as Chinese-CLIP masks it.
    EXPECT_TRUE(torch::allclose(raw_texts, model->encode_text(tokens, vocab.pad_id()), 1e-6, 1e-6));
  }
  // Raw projections of a random model are not unit-norm; the normalised ones are the same
  // directions at unit length.
  EXPECT_FALSE(torch::allclose(raw_images.norm(2, 1), torch::ones({3}), 1e-3, 1e-3));
  const auto unit_images = unit.encode_images(images);
  const auto unit_texts = unit.encode_texts(tokens);
  expect_unit_rows(unit_images);
  expect_unit_rows(unit_texts);
  EXPECT_TRUE(torch::allclose(unit_images, raw_images / raw_images.norm(2, 1, true), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(unit_texts, raw_texts / raw_texts.norm(2, 1, true), 1e-5, 1e-6));
}

TEST(ChineseClipEncoder, RefusesAContextLongerThanThePositionsOrAnotherVocabulary) {
  const auto config = small_chinese_clip();
  ChineseClip model(config);
  try {
    ChineseClipEncoder(model, data::Tokenizer(vocab_with(60)), 21);
    ADD_FAILURE() << "accepted 21 tokens with 20 positions";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "text_max_position_embeddings"));
  }
  try {
    ChineseClipEncoder(model, data::Tokenizer(vocab_with(61)), 12);
    ADD_FAILURE() << "accepted a 61-token vocabulary for vocab_size 60";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "vocab_size is 60"));
  }
  ChineseClipEncoder encoder(model, data::Tokenizer(vocab_with(60)), 12);
  EXPECT_THROW(encoder.encode_images(torch::zeros({1, 3, 16, 16})), std::invalid_argument);
  EXPECT_THROW(encoder.encode_texts(torch::zeros({1, 20}, torch::kLong)), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
