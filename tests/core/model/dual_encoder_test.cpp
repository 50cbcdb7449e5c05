// Tests for the dual encoder with tiny towers: output shapes and norms, the text tower's padding
// mask, the logit scale, which parameters get weight decay, and the FLOP count of bench_small
// recomputed here from its layer list.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoder.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip {
namespace {

constexpr std::int64_t kVocab = 20, kPad = 0, kCls = 2, kSep = 3;

ModelConfig tiny_config(ImageTowerType image_type) {
  return test_support::tiny_model_config(image_type);
}

torch::Tensor tokens(std::vector<std::int64_t> ids) {
  return torch::tensor(ids, torch::kLong).unsqueeze(0);
}

// A handle sharing the parameter's storage (in-place edits reach the model).
torch::Tensor parameter(DualEncoder& model, const std::string& name) {
  const auto parameters = model->named_parameters(true);
  const auto* found = parameters.find(name);
  if (!found) throw std::runtime_error("no parameter " + name);
  return *found;
}

void expect_unit_rows(const torch::Tensor& x) {
  const auto norms = x.norm(2, 1);
  EXPECT_TRUE(torch::allclose(norms, torch::ones_like(norms), 1e-5, 1e-5)) << norms;
}

TEST(DualEncoder, CnnTowerShapesAndUnitNorm) {
  torch::manual_seed(1);
  DualEncoder model(tiny_config(ImageTowerType::kCnn), kVocab, kPad);
  const auto images = torch::randn({3, 3, 16, 16});
  const auto out = model->encode_image(images);
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{3, 12}));
  EXPECT_EQ(out.scalar_type(), torch::kFloat);
  expect_unit_rows(out);
  model->eval();  // BatchNorm on running statistics
  expect_unit_rows(model->encode_image(images));
}

TEST(DualEncoder, VitTowerShapesAndUnitNorm) {
  torch::manual_seed(2);
  DualEncoder model(tiny_config(ImageTowerType::kVit), kVocab, kPad);
  const auto out = model->encode_image(torch::randn({2, 3, 16, 16}));
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 12}));
  expect_unit_rows(out);
  // 16 / 8 = 2 patches a side: 4 patch tokens + the class token.
  EXPECT_EQ(parameter(model, "image_tower.positional_embedding").sizes(),
            (std::vector<std::int64_t>{5, 16}));
}

TEST(DualEncoder, TextTowerShapesAndUnitNorm) {
  torch::manual_seed(3);
  DualEncoder model(tiny_config(ImageTowerType::kCnn), kVocab, kPad);
  const auto batch = torch::tensor(std::vector<std::int64_t>{
                                       kCls, 5, 6,    7,    kSep, kPad, kPad, kPad, kPad, kPad,  //
                                       kCls, 9, kSep, kPad, kPad, kPad, kPad, kPad, kPad, kPad})
                         .view({2, 10});
  const auto out = model->encode_text(batch);
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 12}));
  expect_unit_rows(out);
  // Different queries give different embeddings.
  EXPECT_GT((out[0] - out[1]).abs().max().item<float>(), 1e-3);
}

// model.image.channels_last changes the memory layout the CNN tower computes in, not its
// results: the same weights give the same embeddings and gradients within float rounding (the
// convolutions sum in another order), in training (batch statistics) and in evaluation mode, from
// inputs in either layout.
TEST(DualEncoder, ChannelsLastComputesTheSameEmbeddingsAndGradients) {
  ModelConfig config = tiny_config(ImageTowerType::kCnn);
  config.image.widths = {8, 16, 32};
  config.image.resolution = 32;
  config.image.channels_last = false;
  torch::manual_seed(5);
  DualEncoder reference(config, kVocab, kPad);
  config.image.channels_last = true;
  torch::manual_seed(5);
  DualEncoder channels_last(config, kVocab, kPad);
  const auto images = torch::randn({6, 3, 32, 32});
  for (const bool training : {true, false}) {
    reference->train(training);
    channels_last->train(training);
    for (auto* model : {&reference, &channels_last})
      (*model)->zero_grad();
    const auto expected = reference->encode_image(images);
    const auto actual =
        channels_last->encode_image(images.contiguous(torch::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
        << training << " " << (actual - expected).abs().max();
    if (!training) {
      // (Only in evaluation mode: a training forward would move the running statistics again.)
      EXPECT_TRUE(torch::allclose(channels_last->encode_image(images), expected, 1e-5, 1e-5));
      break;
    }
    const auto weights = torch::randn_like(expected);
    (expected * weights).sum().backward();
    (actual * weights).sum().backward();
    const auto expected_grads = reference->named_parameters(true);
    for (const auto& item : channels_last->named_parameters(true)) {
      if (!item.value().grad().defined()) continue;
      const auto& other = expected_grads[item.key()].grad();
      ASSERT_TRUE(other.defined()) << item.key();
      const double scale = other.abs().max().item<double>() + 1e-12;
      EXPECT_LT((item.value().grad() - other).abs().max().item<double>() / scale, 1e-4)
          << item.key();
      // Gradients keep the parameters' layout (the optimizer and the gradient buckets rely on it).
      EXPECT_TRUE(item.value().grad().is_contiguous()) << item.key();
    }
  }
}

// LibTorch 1.13's own channels-last BatchNorm kernel misses this by far (input gradient off by
// 31 % of its largest element at this size): SyncBatchNorm2d computes channels-last statistics
// itself. Both layouts against float64, in training mode, with a ReLU after it as in the tower.
TEST(DualEncoder, ChannelsLastBatchNormMatchesFloat64) {
  torch::manual_seed(8);
  const auto x = torch::randn({128, 16, 32, 32}) * 3 + 1;
  const auto upstream = torch::randn_like(x);
  const auto weight = torch::rand({16}) + 0.5, bias = torch::randn({16});
  struct Result {
    torch::Tensor output, input_grad, weight_grad, bias_grad, running_var;
  };
  auto run = [&](const torch::Tensor& input, torch::Dtype dtype) {
    SyncBatchNorm2d norm(16, nullptr);
    norm->to(dtype);
    {
      torch::NoGradGuard no_grad;
      norm->named_parameters()["weight"].copy_(weight);
      norm->named_parameters()["bias"].copy_(bias);
    }
    auto leaf = input.to(dtype).detach().requires_grad_(true);
    const auto output = torch::relu(norm(leaf));
    (output * upstream.to(dtype)).sum().backward();
    return Result{output.to(torch::kFloat64), leaf.grad().to(torch::kFloat64),
                  norm->named_parameters()["weight"].grad().to(torch::kFloat64),
                  norm->named_parameters()["bias"].grad().to(torch::kFloat64),
                  norm->named_buffers()["running_var"].to(torch::kFloat64)};
  };
  const Result reference = run(x, torch::kFloat64);
  for (const bool channels_last : {false, true}) {
    const auto input = channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x;
    const Result actual = run(input, torch::kFloat32);
    const std::pair<const char*, std::pair<torch::Tensor, torch::Tensor>> pairs[] = {
        {"output", {actual.output, reference.output}},
        {"input gradient", {actual.input_grad, reference.input_grad}},
        {"weight gradient", {actual.weight_grad, reference.weight_grad}},
        {"bias gradient", {actual.bias_grad, reference.bias_grad}},
        {"running variance", {actual.running_var, reference.running_var}}};
    for (const auto& [what, tensors] : pairs) {
      const double error =
          ((tensors.first - tensors.second).abs().max() / tensors.second.abs().max())
              .item<double>();
      EXPECT_LT(error, 1e-4) << what << (channels_last ? ", channels-last" : ", [N, C, H, W]");
    }
  }
}

TEST(DualEncoder, PaddingAfterSepDoesNotChangeTextEmbedding) {
  torch::manual_seed(4);
  DualEncoder model(tiny_config(ImageTowerType::kCnn), kVocab, kPad);
  const auto reference = model->encode_text(tokens({kCls, 5, 6, kSep}));
  // More padding, up to the full context length, beside a query as long as the padded row (the
  // tower trims columns that are padding in every row: here none are, so the mask does the work).
  for (int pads : {1, 3, 6}) {
    std::vector<std::int64_t> ids = {kCls, 5, 6, kSep};
    ids.insert(ids.end(), pads, kPad);
    std::vector<std::int64_t> longer(ids.size(), 7);
    longer.front() = kCls;
    longer.back() = kSep;
    ids.insert(ids.end(), longer.begin(), longer.end());
    const auto batch = torch::tensor(ids, torch::kLong).view({2, -1});
    EXPECT_TRUE(torch::allclose(model->encode_text(batch)[0], reference[0], 1e-5, 1e-6))
        << pads << " pads";
  }
  // Control: the same positions holding a real token are attended to, so the equality above is
  // the mask's doing.
  const auto unk_tail = model->encode_text(tokens({kCls, 5, 6, kSep, 1, 1, 1}));
  EXPECT_GT((unk_tail - reference).abs().max().item<float>(), 1e-3);

  // Padded rows of a batch with a longer query give the same embedding as alone.
  const auto batch = torch::tensor(std::vector<std::int64_t>{kCls, 5, 6, kSep, kPad, kPad, kPad,
                                                             kPad,  //
                                                             kCls, 8, 9, 10, 11, 12, 13, kSep})
                         .view({2, 8});
  EXPECT_TRUE(torch::allclose(model->encode_text(batch)[0], reference[0], 1e-5, 1e-6));

  // What sits in padded positions is invisible: change the [PAD] embedding row and the
  // positional embeddings of positions that only hold padding in the first row. The changes are
  // random, not constant shifts, which the pre-block LayerNorm would cancel even without a mask.
  // The second row is a full-length query, so no column is trimmed.
  const auto padded =
      torch::tensor(std::vector<std::int64_t>{kCls, 5, 6, kSep, kPad, kPad, kPad, kPad, kPad,
                                              kPad,  //
                                              kCls, 7, 7, 7,    7,    7,    7,    7,    7,    kSep})
          .view({2, 10});
  const auto before = model->encode_text(padded);
  {
    torch::NoGradGuard no_grad;
    auto pad_row = parameter(model, "text_tower.token_embedding.weight")[kPad];
    pad_row.add_(torch::randn_like(pad_row));
    auto padded_positions = parameter(model, "text_tower.positional_embedding").slice(0, 4);
    padded_positions.add_(torch::randn_like(padded_positions));
  }
  EXPECT_TRUE(torch::allclose(model->encode_text(padded)[0], before[0], 1e-5, 1e-6));

  // Control: the same kind of change to a real token does move the embedding, so the
  // comparisons above could fail.
  {
    torch::NoGradGuard no_grad;
    auto row = parameter(model, "text_tower.token_embedding.weight")[6];
    row.add_(torch::randn_like(row));
  }
  EXPECT_GT((model->encode_text(padded)[0] - before[0]).abs().max().item<float>(), 1e-3);
}

TEST(TrimTrailingPadding, DropsOnlyColumnsThatArePaddingInEveryRow) {
  const auto batch = torch::tensor(std::vector<std::int64_t>{2, 5, 0, 6, 0, 0,  //
                                                             2, 0, 0, 0, 0, 0,  //
                                                             2, 7, 3, 0, 0, 0})
                         .view({3, 6});
  // Column 2 is padding in the first row only, column 4 in all rows but the trim stops at the last
  // column any row uses (3): padding inside the kept width is left to the attention mask.
  const auto trimmed = trim_trailing_padding(batch, 0);
  EXPECT_TRUE(torch::equal(trimmed, batch.slice(1, 0, 4))) << trimmed;
  EXPECT_EQ(trimmed.data_ptr(), batch.data_ptr());  // a view, no copy
  // Another pad id: 0 is then a token, so nothing is trimmed.
  EXPECT_EQ(trim_trailing_padding(batch, 9).size(1), 6);
  // A batch of padding keeps one column; an empty batch and a full one are returned as they are.
  EXPECT_EQ(trim_trailing_padding(torch::zeros({2, 5}, torch::kLong), 0).size(1), 1);
  EXPECT_EQ(trim_trailing_padding(torch::zeros({0, 5}, torch::kLong), 0).size(1), 5);
  EXPECT_EQ(trim_trailing_padding(torch::ones({2, 5}, torch::kLong), 0).size(1), 5);
}

TEST(DualEncoder, TextTowerComputesOnlyTheLongestQuerysColumns) {
  auto config = tiny_config(ImageTowerType::kCnn);
  // Queries of 4 and 6 tokens padded to the context length (10).
  const auto batch =
      torch::tensor(std::vector<std::int64_t>{kCls, 5, 6, kSep, kPad, kPad, kPad, kPad, kPad,
                                              kPad,  //
                                              kCls, 8, 9, 10,   11,   kSep, kPad, kPad, kPad, kPad})
          .view({2, 10});
  const auto weights = torch::linspace(-1, 1, config.embed_dim);
  // Embeddings and every gradient, from the tower's forward (trimmed to 6 columns) or from
  // forward_with_states, which computes all 10 (the reranker needs every position's state).
  auto run = [&](bool trimmed) {
    torch::manual_seed(8);
    TextTower tower(config.text, kVocab, kPad, config.embed_dim);
    const auto out = trimmed ? tower->forward(batch) : tower->forward_with_states(batch).first;
    (out.pow(2) * weights).sum().backward();
    std::map<std::string, torch::Tensor> grads;
    for (const auto& item : tower->named_parameters(true))
      grads[item.key()] = item.value().grad().clone();
    return std::make_pair(out.detach(), grads);
  };
  const auto [trimmed, trimmed_grads] = run(true);
  const auto [full, full_grads] = run(false);
  EXPECT_TRUE(torch::allclose(trimmed, full, 1e-5, 1e-6)) << (trimmed - full).abs().max();
  ASSERT_EQ(trimmed_grads.size(), full_grads.size());
  for (const auto& [name, grad] : full_grads) {
    // Sums over 12 rows instead of 20 (8 of them zero) round differently: within 1e-5 of the
    // gradient's largest element (measured: up to 5e-7).
    const float largest = grad.abs().max().item<float>();
    EXPECT_GT(largest, 0) << name;  // each parameter takes part
    EXPECT_LE((trimmed_grads.at(name) - grad).abs().max().item<float>(), 1e-5f * largest) << name;
  }
  // The trim happens before the context check: padding columns past the context length are
  // accepted by forward, refused where every column is computed.
  torch::manual_seed(8);
  TextTower tower(config.text, kVocab, kPad, config.embed_dim);
  const auto wider = torch::cat({batch, torch::full({2, 3}, kPad, torch::kLong)}, 1);
  EXPECT_TRUE(torch::allclose(tower->forward(wider), trimmed, 1e-5, 1e-6));
  EXPECT_THROW(tower->forward_with_states(wider), c10::Error);
}

TEST(DualEncoder, TextLongerThanContextThrows) {
  DualEncoder model(tiny_config(ImageTowerType::kCnn), kVocab, kPad);
  EXPECT_THROW(model->encode_text(torch::full({1, 11}, 5, torch::kLong)), c10::Error);
}

TEST(DualEncoder, LogitScaleStartsAtInitAndIsClamped) {
  auto config = tiny_config(ImageTowerType::kCnn);
  config.init_logit_scale = 1.0 / 0.07;
  config.max_logit_scale = 50.0;
  DualEncoder model(config, kVocab, kPad);
  EXPECT_NEAR(model->logit_scale().item<double>(), 1.0 / 0.07, 1e-4);
  EXPECT_EQ(model->logit_scale().dim(), 0);
  EXPECT_TRUE(model->logit_scale().requires_grad());

  // Below the cap: unchanged.
  model->clamp_logit_scale();
  EXPECT_NEAR(model->logit_scale().item<double>(), 1.0 / 0.07, 1e-4);

  // Above the cap (as after optimizer steps): capped at max.
  {
    torch::NoGradGuard no_grad;
    parameter(model, "log_logit_scale").fill_(std::log(500.0));
  }
  EXPECT_NEAR(model->logit_scale().item<double>(), 500.0, 1e-2);
  model->clamp_logit_scale();
  EXPECT_NEAR(model->logit_scale().item<double>(), 50.0, 1e-4);
}

// ---- weight decay -----------------------------------------------------------------------------

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The rule by name, independent of tensor ranks: biases, BatchNorm (bnN) and LayerNorm (ln*)
// parameters, positional tables, the class token and the logit scale are not decayed.
bool expected_decay(const std::string& name) {
  if (ends_with(name, ".bias")) return false;
  if (name.find(".bn") != std::string::npos || name.find(".ln") != std::string::npos) return false;
  if (name.find("positional_embedding") != std::string::npos) return false;
  if (name.find("class_embedding") != std::string::npos) return false;
  if (name == "log_logit_scale") return false;
  return true;
}

TEST(UsesWeightDecay, ClassifiesEveryParameterOfBothTowers) {
  for (const auto type : {ImageTowerType::kCnn, ImageTowerType::kVit}) {
    DualEncoder model(tiny_config(type), kVocab, kPad);
    std::set<std::string> names;
    for (const auto& item : model->named_parameters(true)) {
      names.insert(item.key());
      EXPECT_EQ(uses_weight_decay(item.key(), item.value()), expected_decay(item.key()))
          << enum_name(type) << ": " << item.key();
    }
    // The names the rule above depends on exist, so it is not vacuous.
    for (const std::string name :
         {"log_logit_scale", "text_tower.token_embedding.weight", "text_tower.positional_embedding",
          "text_tower.blocks.0.ln1.weight", "text_tower.blocks.0.qkv.weight",
          "text_tower.blocks.0.qkv.bias", "text_tower.ln_final.weight",
          "text_tower.projection.weight"}) {
      EXPECT_TRUE(names.count(name)) << type << ": no parameter " << name;
    }
    if (type == ImageTowerType::kCnn) {
      for (const std::string name : {"image_tower.conv0.weight", "image_tower.bn0.weight",
                                     "image_tower.bn0.bias", "image_tower.projection.bias"}) {
        EXPECT_TRUE(names.count(name)) << name;
      }
    } else {
      for (const std::string name :
           {"image_tower.patch_embedding.weight", "image_tower.class_embedding",
            "image_tower.positional_embedding", "image_tower.ln_pre.weight"}) {
        EXPECT_TRUE(names.count(name)) << name;
      }
    }
  }
}

TEST(UsesWeightDecay, DirectCases) {
  EXPECT_TRUE(uses_weight_decay("fc.weight", torch::zeros({4, 3})));
  EXPECT_TRUE(uses_weight_decay("conv.weight", torch::zeros({4, 3, 3, 3})));
  EXPECT_TRUE(uses_weight_decay("token_embedding.weight", torch::zeros({100, 8})));
  EXPECT_FALSE(uses_weight_decay("fc.bias", torch::zeros({4})));
  EXPECT_FALSE(uses_weight_decay("norm.weight", torch::zeros({4})));
  EXPECT_FALSE(uses_weight_decay("log_logit_scale", torch::zeros({})));
  EXPECT_FALSE(uses_weight_decay("tower.positional_embedding", torch::zeros({10, 8})));
}

// ---- FLOPs ------------------------------------------------------------------------------------

TEST(ModelFlops, BenchSmallMatchesLayerByLayerCount) {
  const Config bench = Config::load(SHOPCLIP_SOURCE_DIR "/configs/bench_small.yaml");
  const auto& model = bench.model;
  // The figures below are for this architecture; fail loudly if the config drifts.
  ASSERT_EQ(model.image.type, ImageTowerType::kCnn);
  ASSERT_EQ(model.image.resolution, 64);
  ASSERT_EQ(model.image.widths, (std::vector<int>{32, 64, 128, 256}));
  ASSERT_EQ(model.embed_dim, 256);
  ASSERT_EQ(model.text.context_length, 32);
  ASSERT_EQ(model.text.width, 256);
  ASSERT_EQ(model.text.layers, 2);
  ASSERT_EQ(model.text.mlp, 1024);

  // A product of an [m, k] by a [k, n] matrix costs 2 m k n. A 3x3 convolution with c_in -> c_out
  // channels over an s x s output is m = s^2, k = 9 c_in, n = c_out.
  auto product = [](double m, double k, double n) { return 2 * m * k * n; };
  double image = 0;
  // Each stage halves the side (stride 2, padding 1): 64 -> 32 -> 16 -> 8 -> 4.
  image += product(32 * 32, 9 * 3, 32) + product(32 * 32, 9 * 32, 32);
  image += product(16 * 16, 9 * 32, 64) + product(16 * 16, 9 * 64, 64);
  image += product(8 * 8, 9 * 64, 128) + product(8 * 8, 9 * 128, 128);
  image += product(4 * 4, 9 * 128, 256) + product(4 * 4, 9 * 256, 256);
  image += product(1, 256, 256);  // pooled features -> embedding

  const double tokens = 32, width = 256, mlp = 1024;
  double layer = 0;
  layer += product(tokens, width, 3 * width);              // q, k, v
  layer += product(tokens, width, tokens);                 // q k^T (all heads together)
  layer += product(tokens, tokens, width);                 // attention-weighted v
  layer += product(tokens, width, width);                  // output projection
  layer += product(tokens, width, mlp);                    // fc1
  layer += product(tokens, mlp, width);                    // fc2
  const double text = 2 * layer + product(1, width, 256);  // [CLS] -> embedding

  EXPECT_DOUBLE_EQ(image, 105709568.0);  // as worked out by hand once, to catch slips above
  EXPECT_DOUBLE_EQ(image_forward_flops(model), image);
  EXPECT_DOUBLE_EQ(text_forward_flops(model), text);
  EXPECT_DOUBLE_EQ(model_forward_flops(model), image + text);
  EXPECT_DOUBLE_EQ(model_forward_flops(model), 208601088.0);
}

TEST(ModelFlops, VitTowerCountsPatchesClassTokenAndAttention) {
  ModelConfig config = tiny_config(ImageTowerType::kVit);
  config.image.resolution = 32;
  config.image.patch_size = 8;
  config.image.width = 64;
  config.image.layers = 3;
  config.image.mlp = 128;
  config.embed_dim = 16;
  auto product = [](double m, double k, double n) { return 2 * m * k * n; };
  const double patches = 16, tokens = patches + 1, w = 64;
  double image = product(patches, 3 * 8 * 8, w);  // patch embedding
  const double layer = product(tokens, w, 3 * w) + product(tokens, w, tokens) +
                       product(tokens, tokens, w) + product(tokens, w, w) +
                       product(tokens, w, 128) + product(tokens, 128, w);
  image += 3 * layer + product(1, w, 16);

  // The text tower's share is the same for both image towers, so the difference isolates the
  // image tower.
  ModelConfig cnn = config;
  cnn.image.type = ImageTowerType::kCnn;
  cnn.image.widths = {4};
  cnn.image.resolution = 32;
  const double cnn_image =
      product(16 * 16, 9 * 3, 4) + product(16 * 16, 9 * 4, 4) + product(1, 4, 16);
  EXPECT_DOUBLE_EQ(model_forward_flops(config) - model_forward_flops(cnn), image - cnn_image);
  EXPECT_DOUBLE_EQ(image_forward_flops(config), image);
  EXPECT_DOUBLE_EQ(image_forward_flops(cnn), cnn_image);
}

}  // namespace
}  // namespace shopclip
