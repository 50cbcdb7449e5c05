// Chinese-CLIP towers: configs read from Chinese-CLIP's JSON files, parameter names equal to its
// state_dict keys, strict loading, and parity with a PyTorch reference of the architecture
// (tests/chinese_clip/reference_model.py run through Debian's python3-torch): the same weights and
// inputs give the same features within 1e-4 (fp32), for a vision transformer and a
// ModifiedResNet, each with a BERT text tower.

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/model/autocast.h"
#include "core/model/chinese_clip.h"
#include "core/model/chinese_clip_config.h"
#include "core/model/dual_encoder.h"
#include "core/train/optim.h"
#include "data/safetensors.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::Contains;
using test_support::TempDir;

// Small configs in Chinese-CLIP's JSON format.
const char* kVitJson =
    R"({"embed_dim": 24, "image_resolution": 32, "vision_layers": 2, "vision_width": 128,
        "vision_patch_size": 8})";
const char* kResNetJson =
    R"({"embed_dim": 24, "image_resolution": 64, "vision_layers": [1, 2, 1, 1],
        "vision_width": 8, "vision_patch_size": null})";
const char* kTextJson =
    R"({"vocab_size": 120, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
        "text_hidden_dropout_prob": 0.1, "text_hidden_size": 32, "text_initializer_range": 0.02,
        "text_intermediate_size": 64, "text_max_position_embeddings": 40,
        "text_num_attention_heads": 4, "text_num_hidden_layers": 2, "text_type_vocab_size": 2})";

ChineseClipConfig parse(const std::string& vision, const std::string& text = kTextJson) {
  return ChineseClipConfig::from_json_text(vision, "V.json", text, "T.json");
}

void expect_config_error(const std::string& vision, const std::string& text,
                         const std::string& part) {
  try {
    parse(vision, text);
    ADD_FAILURE() << "no error for " << part;
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), part)) << e.what();
  }
}

TEST(ChineseClipConfig, ReadsTransformerAndResNetConfigs) {
  // The published ViT-B/16 and RN50 vision configs with the RoBERTa-base text config.
  const auto vit = parse(R"({"embed_dim": 512, "image_resolution": 224, "vision_layers": 12,
                             "vision_width": 768, "vision_patch_size": 16})");
  EXPECT_FALSE(vit.vision.is_resnet());
  EXPECT_EQ(vit.vision.transformer_layers, 12);
  EXPECT_EQ(vit.vision.heads(), 12);
  const auto rn = parse(R"({"embed_dim": 1024, "image_resolution": 224,
                            "vision_layers": [3, 4, 6, 3], "vision_width": 64,
                            "vision_patch_size": null})");
  EXPECT_TRUE(rn.vision.is_resnet());
  EXPECT_EQ(rn.vision.resnet_layers, (std::vector<int>{3, 4, 6, 3}));
  EXPECT_EQ(rn.vision.heads(), 32);
  // RN50.json as shipped writes the stage list as a string.
  const auto rn_string = parse(R"({"embed_dim": 1024, "image_resolution": 224,
                                   "vision_layers": "[3,4,6,3]", "vision_width": 64,
                                   "vision_patch_size": null})");
  EXPECT_EQ(rn_string.vision.resnet_layers, (std::vector<int>{3, 4, 6, 3}));
  // ViT-H-14.json: heads of width 80.
  const auto vit_h = parse(R"({"embed_dim": 1024, "image_resolution": 224, "vision_layers": 32,
                               "vision_width": 1280, "vision_patch_size": 14,
                               "vision_head_width": 80})");
  EXPECT_EQ(vit_h.vision.heads(), 16);
  EXPECT_EQ(rn.text.hidden_size, 32);
  EXPECT_EQ(rn.text.num_attention_heads, 4);
  EXPECT_EQ(rn.text.max_position_embeddings, 40);
}

TEST(ChineseClipConfig, ErrorsNameTheFileAndKey) {
  expect_config_error(R"({"embed_dim": 24})", kTextJson, "V.json: missing key 'image_resolution'");
  expect_config_error(R"({"embed_dim": 24, "image_resolution": 32, "vision_layers": 2,
                          "vision_width": 128, "vision_patch_size": 8, "vision_heads": 3})",
                      kTextJson, "V.json: unknown key 'vision_heads'");
  expect_config_error(R"({"embed_dim": "big", "image_resolution": 32, "vision_layers": 2,
                          "vision_width": 128, "vision_patch_size": 8})",
                      kTextJson, "'embed_dim' must be a positive integer");
  expect_config_error(R"({"embed_dim": 24, "image_resolution": 64, "vision_layers": [1, 2],
                          "vision_width": 8, "vision_patch_size": null})",
                      kTextJson, "lists 4 stages");
  expect_config_error(kVitJson, R"({"vocab_size": 10})", "T.json: missing key 'text_hidden_size'");
  expect_config_error(kVitJson, "[1, 2]", "T.json: not a JSON object");
}

TEST(ChineseClipModel, ParameterNamesAreChineseClipKeys) {
  ChineseClip vit(parse(kVitJson));
  std::map<std::string, std::vector<std::int64_t>> shapes;
  for (const auto& item : vit->named_parameters(true))
    shapes[item.key()] = item.value().sizes().vec();
  using Shape = std::vector<std::int64_t>;
  EXPECT_EQ(shapes.at("visual.conv1.weight"), (Shape{128, 3, 8, 8}));
  EXPECT_EQ(shapes.at("visual.class_embedding"), (Shape{128}));
  EXPECT_EQ(shapes.at("visual.positional_embedding"), (Shape{17, 128}));
  EXPECT_EQ(shapes.at("visual.transformer.resblocks.1.attn.in_proj_weight"), (Shape{384, 128}));
  EXPECT_EQ(shapes.at("visual.transformer.resblocks.1.attn.out_proj.weight"), (Shape{128, 128}));
  EXPECT_EQ(shapes.at("visual.transformer.resblocks.0.mlp.c_fc.weight"), (Shape{512, 128}));
  EXPECT_EQ(shapes.at("visual.proj"), (Shape{128, 24}));
  EXPECT_EQ(shapes.at("bert.embeddings.word_embeddings.weight"), (Shape{120, 32}));
  EXPECT_EQ(shapes.at("bert.encoder.layer.1.attention.self.query.weight"), (Shape{32, 32}));
  EXPECT_EQ(shapes.at("bert.encoder.layer.1.attention.output.LayerNorm.bias"), (Shape{32}));
  EXPECT_EQ(shapes.at("bert.encoder.layer.0.intermediate.dense.weight"), (Shape{64, 32}));
  EXPECT_FALSE(shapes.count("bert.pooler.dense.weight"));  // Chinese-CLIP's BERT has no pooler
  EXPECT_EQ(shapes.at("text_projection"), (Shape{32, 24}));
  EXPECT_EQ(shapes.at("logit_scale"), (Shape{}));
  EXPECT_FALSE(shapes.count("visual.conv1.bias"));  // the patch embedding has no bias

  ChineseClip rn(parse(kResNetJson));
  std::map<std::string, std::vector<std::int64_t>> rn_shapes;
  for (const auto& item : rn->named_parameters(true))
    rn_shapes[item.key()] = item.value().sizes().vec();
  EXPECT_EQ(rn_shapes.at("visual.conv1.weight"), (Shape{4, 3, 3, 3}));
  EXPECT_EQ(rn_shapes.at("visual.layer2.0.downsample.0.weight"), (Shape{64, 32, 1, 1}));
  EXPECT_EQ(rn_shapes.at("visual.layer4.0.conv3.weight"), (Shape{256, 64, 1, 1}));
  EXPECT_EQ(rn_shapes.at("visual.attnpool.positional_embedding"), (Shape{5, 256}));
  EXPECT_EQ(rn_shapes.at("visual.attnpool.c_proj.weight"), (Shape{24, 256}));
  const auto image = rn->encode_image(torch::randn({2, 3, 64, 64}));
  EXPECT_EQ(image.sizes(), (Shape{2, 24}));
}

TEST(ChineseClipModel, StrictLoadingListsEveryMismatch) {
  ChineseClip model(parse(kVitJson));
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : model->named_parameters(true))
    state["module." + item.key()] = item.value().detach().clone() + 1;  // DDP prefix is allowed
  load_chinese_clip_state(model, state, "ok.safetensors");
  EXPECT_TRUE(torch::equal(model->named_parameters(true)["text_projection"],
                           state.at("module.text_projection")));

  state["module.bert.pooler.dense.weight"] = torch::zeros({32, 32});  // dropped, not unexpected
  load_chinese_clip_state(model, state, "with-pooler.safetensors");

  state.erase("module.visual.proj");
  state["module.visual.extra"] = torch::zeros({1});
  state["module.text_projection"] = torch::zeros({3, 3});
  try {
    load_chinese_clip_state(model, state, "bad.safetensors");
    ADD_FAILURE() << "mismatched weights loaded";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_TRUE(Contains(message, "bad.safetensors")) << message;
    EXPECT_TRUE(Contains(message, "1 missing, 1 unexpected, 1 mis-shaped")) << message;
    EXPECT_TRUE(Contains(message, "visual.proj")) << message;
    EXPECT_TRUE(Contains(message, "visual.extra")) << message;
    EXPECT_TRUE(Contains(message, "text_projection (file [3, 3], model [32, 24])")) << message;
  }
}

// Runs a command, returning its exit status.
int run(const std::string& command) {
  return std::system(("PYTHONDONTWRITEBYTECODE=1 " + command + " > /dev/null 2>&1").c_str());
}

const char* kPython = "/usr/bin/python3";

class ChineseClipParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ChineseClipParity, FeaturesMatchThePyTorchReference) {
  if (run(std::string(kPython) + " -c 'import torch'") != 0) {
    SHOPCLIP_SKIP_OR_FAIL_IN_CI("needs Debian's python3-torch (launch/setup.sh installs it)");
  }
  TempDir dir;
  const std::string vision = GetParam() == "vit" ? kVitJson : kResNetJson;
  test_support::write_file(dir.file("vision.json"), vision);
  test_support::write_file(dir.file("text.json"), kTextJson);
  const std::string source = SHOPCLIP_SOURCE_DIR;
  ASSERT_EQ(run(fmt::format("{} {}/tests/chinese_clip/make_case.py {} {} {} 7", kPython, source,
                            dir.file("vision.json"), dir.file("text.json"), dir.file("case"))),
            0);
  ASSERT_EQ(run(fmt::format("{} {}/launch/convert_chinese_clip.py {} {}", kPython, source,
                            dir.file("case/checkpoint.pt"), dir.file("weights.safetensors"))),
            0);
  ChineseClip model(
      ChineseClipConfig::from_json_files(dir.file("vision.json"), dir.file("text.json")));
  const auto weights = data::read_safetensors(dir.file("weights.safetensors"));
  load_chinese_clip_state(model, weights.tensors, "weights.safetensors");
  model->eval();
  const auto io = data::read_safetensors(dir.file("case/io.safetensors")).tensors;
  torch::NoGradGuard no_grad;
  const auto images = model->encode_image(io.at("images"));
  const auto texts = model->encode_text(io.at("tokens"));
  const auto& expected_images = io.at("image_features");
  const auto& expected_texts = io.at("text_features");
  ASSERT_EQ(images.sizes(), expected_images.sizes());
  ASSERT_EQ(texts.sizes(), expected_texts.sizes());
  // Features of size ~1: an absolute bound of 1e-4 is also a relative one.
  EXPECT_GT(expected_images.abs().max().item<double>(), 0.1);
  EXPECT_LE((images - expected_images).abs().max().item<double>(), 1e-4);
  EXPECT_LE((texts - expected_texts).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Towers, ChineseClipParity, ::testing::Values("vit", "resnet"));

// Whether the autograd graph behind `output` holds a node whose name contains `name`.
bool graph_has_node(const torch::Tensor& output, const std::string& name) {
  std::vector<torch::autograd::Node*> stack{output.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (!node || !seen.insert(node).second) continue;
    if (node->name().find(name) != std::string::npos) return true;
    for (const auto& edge : node->next_edges())
      stack.push_back(edge.function.get());
  }
  return false;
}

TEST(ChineseClipModel, GradientCheckpointingIsUsedWhenAsked) {
  ChineseClip model(parse(kVitJson));
  const auto images = torch::randn({1, 3, 32, 32});
  const auto tokens = torch::randint(1, 120, {1, 6}, torch::kLong);
  EXPECT_FALSE(graph_has_node(model->encode_image(images), "CheckpointFunction"));
  model->set_grad_checkpointing(true);
  EXPECT_TRUE(graph_has_node(model->encode_image(images), "CheckpointFunction"));
  EXPECT_TRUE(graph_has_node(model->encode_text(tokens), "CheckpointFunction"));
}

TEST(ChineseClipModel, GradientCheckpointingGivesTheSameGradients) {
  auto gradients = [](bool checkpointing) {
    torch::manual_seed(3);
    ChineseClip model(parse(kVitJson));
    model->set_grad_checkpointing(checkpointing);
    torch::manual_seed(4);
    const auto images = torch::randn({2, 3, 32, 32});
    auto tokens = torch::randint(1, 120, {2, 9}, torch::kLong);
    tokens[1].narrow(0, 5, 4).fill_(0);
    const auto loss = (model->encode_image(images) * torch::linspace(-1, 1, 24)).sum() +
                      (model->encode_text(tokens) * torch::linspace(1, -1, 24)).sum().pow(2);
    loss.backward();
    std::map<std::string, torch::Tensor> out;
    for (const auto& item : model->named_parameters(true))
      if (item.value().grad().defined()) out[item.key()] = item.value().grad().clone();
    return out;
  };
  const auto plain = gradients(false), checkpointed = gradients(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  EXPECT_TRUE(plain.count("visual.transformer.resblocks.0.attn.in_proj_weight"));
  EXPECT_TRUE(plain.count("bert.encoder.layer.0.attention.self.query.weight"));
  for (const auto& [name, grad] : plain) {
    ASSERT_TRUE(checkpointed.count(name)) << name;
    EXPECT_TRUE(torch::allclose(checkpointed.at(name), grad, 1e-5, 1e-7)) << name;
  }
}

TEST(ChineseClipModel, TextTowerComputesOnlyTheLongestQuerysColumns) {
  torch::manual_seed(5);
  ChineseClip model(parse(kVitJson));
  model->eval();  // no dropout: the two passes below must see the same network
  auto tokens = torch::randint(1, 120, {2, 12}, torch::kLong);
  tokens[0].narrow(0, 4, 8).fill_(0);
  tokens[1].narrow(0, 7, 5).fill_(0);
  const auto trimmed = model->encode_text(tokens);  // 7 columns computed
  // The reference runs BERT over all 12 columns, the padding masked.
  const auto bert = std::dynamic_pointer_cast<BertTextModelImpl>(model->text_tower());
  ASSERT_TRUE(bert);
  const auto full =
      torch::matmul(bert->forward(tokens, tokens.ne(0)).select(1, 0), model->text_projection());
  EXPECT_TRUE(torch::allclose(trimmed, full, 1e-5, 1e-6)) << (trimmed - full).abs().max();
  // Padding columns past the 40 position embeddings: accepted because they are trimmed first.
  const auto wider = torch::cat({tokens, torch::zeros({2, 40}, torch::kLong)}, 1);
  EXPECT_TRUE(torch::allclose(model->encode_text(wider), trimmed, 1e-5, 1e-6));
  EXPECT_ANY_THROW(bert->forward(wider, wider.ne(0)));
}

// A block that doubles its input and records whether autocast was on each time it ran.
struct AutocastProbe : CheckpointableBlock {
  std::vector<bool> autocast_seen;
  torch::Tensor run(const torch::Tensor& x, const torch::Tensor&) override {
    autocast_seen.push_back(cuda_autocast_enabled());
    return x * 2;
  }
};

TEST(ChineseClipModel, CheckpointRecomputationRunsInTheForwardPassPrecision) {
  AutocastProbe block;
  const auto x = torch::ones({3}, torch::requires_grad());
  torch::Tensor y;
  {
    AutocastGuard autocast(true);  // as train.amp does around the towers
    y = run_block(block, x, {}, /*checkpoint=*/true);
  }
  ASSERT_FALSE(cuda_autocast_enabled()) << "the guard restores the previous setting";
  y.sum().backward();  // backward runs outside the autocast scope, as in the trainer
  ASSERT_EQ(block.autocast_seen.size(), 2u) << "forward and recomputation";
  EXPECT_TRUE(block.autocast_seen[0]);
  EXPECT_TRUE(block.autocast_seen[1]);
  EXPECT_TRUE(torch::equal(x.grad(), torch::full({3}, 2.0)));
  EXPECT_FALSE(cuda_autocast_enabled());
}

// model.chinese_clip puts Chinese-CLIP's towers inside shopclip's DualEncoder.
class ChineseClipInDualEncoder : public ::testing::Test {
 protected:
  void SetUp() override {
    test_support::write_file(dir.file("vision.json"), kVitJson);
    test_support::write_file(dir.file("text.json"), kTextJson);
    config.embed_dim = 24;
    config.image.resolution = 32;
    config.text.context_length = 12;
    config.chinese_clip.vision_config = dir.file("vision.json");
    config.chinese_clip.text_config = dir.file("text.json");
  }
  TempDir dir;
  ModelConfig config;
};

TEST_F(ChineseClipInDualEncoder, EncodesWithUnitNormAndItsOwnLogitScale) {
  DualEncoder model(config, 120, 0);
  ASSERT_TRUE(model->chinese_clip());
  const auto images = model->encode_image(torch::randn({3, 3, 32, 32}));
  EXPECT_EQ(images.sizes(), (std::vector<std::int64_t>{3, 24}));
  EXPECT_TRUE(torch::allclose(images.norm(2, 1), torch::ones({3}), 1e-5, 1e-5));
  EXPECT_NEAR(model->logit_scale().item<double>(), 1 / 0.07, 1e-3);
  const auto names = model->named_parameters(true);
  EXPECT_TRUE(names.contains("clip.visual.conv1.weight"));
  EXPECT_FALSE(names.contains("log_logit_scale"));  // Chinese-CLIP's logit_scale is used
  EXPECT_GT(image_forward_flops(config), 0.0);
  EXPECT_GT(text_forward_flops(config), 0.0);
  EXPECT_DOUBLE_EQ(model_forward_flops(config),
                   image_forward_flops(config) + text_forward_flops(config));
}

TEST_F(ChineseClipInDualEncoder, SettingsThatDisagreeWithTheJsonAreErrors) {
  config.image.resolution = 64;
  try {
    DualEncoder model(config, 120, 0);
    ADD_FAILURE() << "a resolution mismatch was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "model.image.resolution is 64")) << e.what();
    EXPECT_TRUE(Contains(e.what(), "image_resolution = 32")) << e.what();
  }
  config.image.resolution = 32;
  EXPECT_THROW(DualEncoder(config, 99, 0), std::invalid_argument);  // vocabulary size
}

TEST_F(ChineseClipInDualEncoder, FreezingTheImageTowerKeepsItFixedAndInEvalMode) {
  DualEncoder model(config, 120, 0);
  model->freeze(FrozenTower::kImage);
  model->train();
  EXPECT_FALSE(model->chinese_clip()->vision_tower()->is_training());
  EXPECT_TRUE(model->chinese_clip()->text_tower()->is_training());
  std::int64_t frozen = 0, trainable = 0;
  for (const auto& item : model->named_parameters(true)) {
    const bool image = item.key().rfind("clip.visual.", 0) == 0;
    EXPECT_EQ(item.value().requires_grad(), !image) << item.key();
    (item.value().requires_grad() ? trainable : frozen) += item.value().numel();
  }
  EXPECT_GT(frozen, 0);
  TrainConfig train_config;
  auto optimizer = make_adamw(model, train_config);
  std::int64_t optimized = 0;
  for (const auto& group : optimizer->param_groups())
    for (const auto& p : group.params())
      optimized += p.numel();
  EXPECT_EQ(optimized, trainable);
}

}  // namespace
}  // namespace shopclip
