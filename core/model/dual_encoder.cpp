#include "core/model/dual_encoder.h"

#include "core/model/batch_norm_relu.h"
#include "core/model/batched_matmul.h"
#include "core/model/encoder.h"
#include "core/model/linear.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>

#include "core/checkpoint.h"
#include "dist/autograd.h"

namespace shopclip {
namespace F = torch::nn::functional;

// ---- transformer block -----------------------------------------------------------------------

TransformerBlockImpl::TransformerBlockImpl(int width, int heads, int mlp) : heads_(heads) {
  ln1_ = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  qkv_ = register_module("qkv", torch::nn::Linear(width, 3 * width));
  out_ = register_module("out", torch::nn::Linear(width, width));
  ln2_ = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  fc1_ = register_module("fc1", torch::nn::Linear(width, mlp));
  fc2_ = register_module("fc2", torch::nn::Linear(mlp, width));
  // CLIP-style initialisation: attention and MLP weights scaled by width.
  const double std_attn = std::pow(width, -0.5);
  torch::nn::init::normal_(qkv_->weight, 0.0, std_attn);
  torch::nn::init::normal_(out_->weight, 0.0, std_attn);
  torch::nn::init::normal_(fc1_->weight, 0.0, std::pow(2.0 * width, -0.5));
  torch::nn::init::normal_(fc2_->weight, 0.0, std_attn);
  for (auto* linear : {&qkv_, &out_, &fc1_, &fc2_})
    torch::nn::init::zeros_((*linear)->bias);
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x,
                                            const torch::Tensor& key_padding) {
  const auto batch = x.size(0), length = x.size(1), width = x.size(2);
  const auto head_dim = width / heads_;
  // [B, L, 3W] -> three [B, L, H, Dh] views -> [B, H, L, Dh]. unbind, not indexing: its backward
  // stacks the three gradients straight into [B, L, 3W] layout, where selecting each would zero a
  // full-size buffer three times, add them, and copy the sum back out of the permuted layout.
  const auto qkv = linear(ln1_(x), qkv_->weight, qkv_->bias)
                       .view({batch, length, 3, heads_, head_dim})
                       .unbind(2);
  auto q = qkv[0].transpose(1, 2), k = qkv[1].transpose(1, 2), v = qkv[2].transpose(1, 2);
  // batched_matmul: one BLAS call per (row, head) on the views, the scale folded in.
  auto scores = batched_matmul(q, k.transpose(-2, -1), 1.0 / std::sqrt(double(head_dim)));
  if (key_padding.defined()) {
    scores = scores.masked_fill(key_padding.view({batch, 1, 1, length}),
                                -std::numeric_limits<float>::infinity());
  }
  auto attended = batched_matmul(scores.softmax(-1), v);  // [B, H, L, Dh]
  attended = attended.transpose(1, 2).reshape({batch, length, width});
  auto h = x + linear(attended, out_->weight, out_->bias);
  return h + linear(F::gelu(linear(ln2_(h), fc1_->weight, fc1_->bias)), fc2_->weight, fc2_->bias);
}

// ---- text tower ------------------------------------------------------------------------------

TextTowerImpl::TextTowerImpl(const TextTowerConfig& config, std::int64_t vocab_size,
                             std::int64_t pad_id, int embed_dim)
    : pad_id_(pad_id) {
  token_embedding_ =
      register_module("token_embedding", torch::nn::Embedding(vocab_size, config.width));
  torch::nn::init::normal_(token_embedding_->weight, 0.0, 0.02);
  positional_embedding_ = register_parameter(
      "positional_embedding", torch::randn({config.context_length, config.width}) * 0.01);
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config.layers; ++i) {
    blocks_->push_back(TransformerBlock(config.width, config.heads, config.mlp));
  }
  ln_final_ = register_module("ln_final",
                              torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.width})));
  projection_ = register_module(
      "projection",
      torch::nn::Linear(torch::nn::LinearOptions(config.width, embed_dim).bias(false)));
  torch::nn::init::normal_(projection_->weight, 0.0, std::pow(config.width, -0.5));
}

torch::Tensor TextTowerImpl::blocks_output(const torch::Tensor& tokens) {
  const auto length = tokens.size(1);
  TORCH_CHECK(length <= positional_embedding_.size(0), "text tower: ", length,
              " tokens exceed the context length ", positional_embedding_.size(0));
  auto x = token_embedding_(tokens) + positional_embedding_.slice(0, 0, length);
  const auto key_padding = tokens.eq(pad_id_);
  for (const auto& block : *blocks_)
    x = block->as<TransformerBlock>()->forward(x, key_padding);
  return x;
}

torch::Tensor TextTowerImpl::forward(const torch::Tensor& tokens) {
  // [CLS] is at position 0; only its row goes through the final LayerNorm. Padding keys are
  // masked, so the columns that are padding in every row cannot reach it and are not computed.
  const auto pooled = ln_final_(blocks_output(trim_trailing_padding(tokens, pad_id_)).select(1, 0));
  return linear(pooled, projection_->weight, projection_->bias);
}

std::pair<torch::Tensor, torch::Tensor> TextTowerImpl::forward_with_states(
    const torch::Tensor& tokens) {
  auto states = ln_final_(blocks_output(tokens));
  return {linear(states.select(1, 0), projection_->weight, projection_->bias), states};
}

// ---- image grid tokens ---------------------------------------------------------------------

namespace {

// A feature map [B, C, H, W] as tokens [B, T, C], row-major: T = H * W, or with grid_tokens =
// s * s > 0 and s smaller than the map, the map average-pooled to s x s first (T = s * s).
torch::Tensor pooled_grid_tokens(const torch::Tensor& map, int grid_tokens) {
  const auto side = static_cast<std::int64_t>(std::lround(std::sqrt(double(grid_tokens))));
  auto pooled = map;
  if (grid_tokens > 0 && (side < map.size(2) || side < map.size(3))) {
    pooled =
        F::adaptive_avg_pool2d(map, F::AdaptiveAvgPool2dFuncOptions({std::min(side, map.size(2)),
                                                                     std::min(side, map.size(3))}));
  }
  return pooled.flatten(2).transpose(1, 2);
}

}  // namespace

// ---- CNN image tower -------------------------------------------------------------------------

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(int channels, dist::Communicator* comm, double momentum,
                                         double eps)
    : comm_(comm), momentum_(momentum), eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({channels}));
  bias_ = register_parameter("bias", torch::zeros({channels}));
  running_mean_ = register_buffer("running_mean", torch::zeros({channels}));
  running_var_ = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked_ = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

torch::Tensor SyncBatchNorm2dImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  if (!is_training()) {
    return torch::batch_norm(x, weight_, bias_, running_mean_, running_var_, false, momentum_, eps_,
                             false);
  }
  {
    torch::NoGradGuard no_grad;
    num_batches_tracked_.add_(1);
  }
  const bool distributed = comm_ != nullptr && comm_->world_size() > 1;
  // LibTorch 1.13's CPU BatchNorm kernel for channels-last (and [M, C]) inputs is imprecise in
  // training: with 16 channels of 128 x 32 x 32 its input gradient was off by 31 % of its largest
  // element against float64 (the [N, C, H, W] kernel: 1e-7).
  // Channels-last inputs therefore take the explicit two-pass form below, whose sums are ATen's
  // cascaded reductions (DualEncoder.ChannelsLastBatchNormMatchesFloat64 holds both to 1e-4).
  const bool channels_last =
      !x.is_contiguous() && x.is_contiguous(torch::MemoryFormat::ChannelsLast) && x.is_cpu();
  if (!distributed && !channels_last) {
    return torch::batch_norm(x, weight_, bias_, running_mean_, running_var_, true, momentum_, eps_,
                             false);
  }
  // Statistics of the global batch (of this rank's batch on one rank): sums of the rows, then of
  // the centred squares; across ranks two differentiable all-reduces.
  auto sum_over_ranks = [&](const torch::Tensor& local) {
    return distributed ? dist::all_reduce_sum_with_grad(*comm_, local) : local;
  };
  const auto channels = x.size(1);
  const double local_count = static_cast<double>(x.numel() / channels);
  auto totals =
      sum_over_ranks(torch::cat({x.sum({0, 2, 3}), torch::full({1}, local_count, x.options())}));
  const double count = totals[channels].item<double>();
  const auto mean = totals.narrow(0, 0, channels) / count;
  const auto centred = x - mean.view({1, channels, 1, 1});
  const auto variance = sum_over_ranks(centred.pow(2).sum({0, 2, 3})) / count;
  {
    torch::NoGradGuard no_grad;
    running_mean_.mul_(1 - momentum_).add_(mean.detach(), momentum_);
    running_var_.mul_(1 - momentum_).add_(variance.detach() * (count / (count - 1)), momentum_);
  }
  const auto scale = torch::rsqrt(variance + eps_) * weight_;
  return centred * scale.view({1, channels, 1, 1}) + bias_.view({1, channels, 1, 1});
}

torch::Tensor SyncBatchNorm2dImpl::forward_relu(const torch::Tensor& x) {
  const bool distributed = comm_ != nullptr && comm_->world_size() > 1;
  if (!is_training() || distributed || !batch_norm_relu_is_fused(x)) {
    // ReLU in place: BatchNorm's backward needs its input, not its output, so the output can
    // hold the activation.
    auto normalised = forward(x);
    return torch::relu_(normalised);
  }
  {
    torch::NoGradGuard no_grad;
    num_batches_tracked_.add_(1);
  }
  return batch_norm_relu_train(x, weight_, bias_, running_mean_, running_var_, momentum_, eps_);
}

ConvImageTowerImpl::ConvImageTowerImpl(const ImageTowerConfig& config, int embed_dim,
                                       dist::Communicator* comm)
    : channels_last_(config.channels_last) {
  int in_channels = 3;
  int index = 0;
  for (int width : config.widths) {
    for (int k = 0; k < 2; ++k) {
      auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(k == 0 ? in_channels : width, width, 3)
                                        .stride(k == 0 ? 2 : 1)
                                        .padding(1)
                                        .bias(false));
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      convs_.push_back(register_module(fmt::format("conv{}", index), conv));
      norms_.push_back(register_module(fmt::format("bn{}", index), SyncBatchNorm2d(width, comm)));
      ++index;
    }
    in_channels = width;
  }
  projection_ = register_module("projection", torch::nn::Linear(in_channels, embed_dim));
}

torch::Tensor ConvImageTowerImpl::feature_map(const torch::Tensor& images) {
  // Every later activation keeps the input's layout (convolution, BatchNorm and ReLU preserve it).
  auto x = images.contiguous(channels_last_ ? torch::MemoryFormat::ChannelsLast
                                            : torch::MemoryFormat::Contiguous);
  for (size_t i = 0; i < convs_.size(); ++i)
    x = norms_[i]->forward_relu(convs_[i](x));
  return x;
}

torch::Tensor ConvImageTowerImpl::forward(const torch::Tensor& images) {
  return linear(feature_map(images).mean({2, 3}), projection_->weight, projection_->bias);
}

std::pair<torch::Tensor, torch::Tensor> ConvImageTowerImpl::forward_with_tokens(
    const torch::Tensor& images, int grid_tokens) {
  const auto map = feature_map(images);
  return {linear(map.mean({2, 3}), projection_->weight, projection_->bias),
          pooled_grid_tokens(map, grid_tokens)};
}

// ---- ViT image tower -------------------------------------------------------------------------

VitImageTowerImpl::VitImageTowerImpl(const ImageTowerConfig& config, int embed_dim) {
  const int patches_per_side = config.resolution / config.patch_size;
  patch_embedding_ =
      register_module("patch_embedding",
                      torch::nn::Conv2d(torch::nn::Conv2dOptions(3, config.width, config.patch_size)
                                            .stride(config.patch_size)
                                            .bias(false)));
  const double scale = std::pow(config.width, -0.5);
  class_embedding_ = register_parameter("class_embedding", torch::randn({config.width}) * scale);
  positional_embedding_ = register_parameter(
      "positional_embedding",
      torch::randn({1 + patches_per_side * patches_per_side, config.width}) * scale);
  ln_pre_ =
      register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.width})));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config.layers; ++i) {
    blocks_->push_back(TransformerBlock(config.width, config.heads, config.mlp));
  }
  ln_post_ =
      register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.width})));
  projection_ = register_module(
      "projection",
      torch::nn::Linear(torch::nn::LinearOptions(config.width, embed_dim).bias(false)));
  torch::nn::init::normal_(projection_->weight, 0.0, scale);
}

torch::Tensor VitImageTowerImpl::blocks_output(const torch::Tensor& images) {
  auto x = patch_embedding_(images);  // [B, W, G, G]
  x = x.flatten(2).transpose(1, 2);   // [B, G*G, W]
  auto cls = class_embedding_.view({1, 1, -1}).expand({x.size(0), 1, x.size(2)});
  x = torch::cat({cls, x}, 1) + positional_embedding_;
  x = ln_pre_(x);
  for (const auto& block : *blocks_)
    x = block->as<TransformerBlock>()->forward(x, {});
  return x;
}

torch::Tensor VitImageTowerImpl::forward(const torch::Tensor& images) {
  return linear(ln_post_(blocks_output(images).select(1, 0)), projection_->weight,
                projection_->bias);
}

std::pair<torch::Tensor, torch::Tensor> VitImageTowerImpl::forward_with_tokens(
    const torch::Tensor& images, int grid_tokens) {
  const auto tokens = ln_post_(blocks_output(images));  // [B, 1 + g*g, W]
  const auto batch = tokens.size(0), width = tokens.size(2);
  const auto side = static_cast<std::int64_t>(std::lround(std::sqrt(double(tokens.size(1) - 1))));
  const auto patches =
      tokens.narrow(1, 1, side * side).transpose(1, 2).reshape({batch, width, side, side});
  return {linear(tokens.select(1, 0), projection_->weight, projection_->bias),
          torch::cat({tokens.narrow(1, 0, 1), pooled_grid_tokens(patches, grid_tokens)}, 1)};
}

// ---- dual encoder ----------------------------------------------------------------------------

DualEncoderImpl::DualEncoderImpl(const ModelConfig& config, std::int64_t vocab_size,
                                 std::int64_t pad_id, dist::Communicator* comm)
    : config_(config), pad_id_(pad_id) {
  if (config.chinese_clip.enabled()) {
    const auto& paths = config.chinese_clip;
    const auto clip_config =
        ChineseClipConfig::from_json_files(paths.vision_config, paths.text_config);
    auto mismatch = [&](const char* key, long long ours, const std::string& file,
                        const char* their_key, long long theirs) {
      if (ours != theirs) {
        throw std::invalid_argument(fmt::format("{} is {}, but {} says {} = {}; make them equal",
                                                key, ours, file, their_key, theirs));
      }
    };
    mismatch("model.image.resolution", config.image.resolution, paths.vision_config,
             "image_resolution", clip_config.vision.image_resolution);
    mismatch("model.embed_dim", config.embed_dim, paths.vision_config, "embed_dim",
             clip_config.vision.embed_dim);
    mismatch("the vocabulary size (model.text.vocab)", vocab_size, paths.text_config, "vocab_size",
             clip_config.text.vocab_size);
    if (config.text.context_length > clip_config.text.max_position_embeddings) {
      throw std::invalid_argument(fmt::format(
          "model.text.context_length {} exceeds text_max_position_embeddings {} of {}",
          config.text.context_length, clip_config.text.max_position_embeddings, paths.text_config));
    }
    if (config.reranker.enabled()) {
      throw std::invalid_argument(
          "model.reranker.layers: the learned reranker reads the token features of shopclip's "
          "own towers; Chinese-CLIP's do not expose them yet");
    }
    clip_ = register_module("clip", ChineseClip(clip_config));
    clip_->set_grad_checkpointing(paths.grad_checkpointing);
    add_distill_projections();
    return;
  }
  if (config.image.type == ImageTowerType::kCnn) {
    conv_tower_ =
        register_module("image_tower", ConvImageTower(config.image, config.embed_dim, comm));
  } else {
    vit_tower_ = register_module("image_tower", VitImageTower(config.image, config.embed_dim));
  }
  text_tower_ =
      register_module("text_tower", TextTower(config.text, vocab_size, pad_id, config.embed_dim));
  log_logit_scale_ = register_parameter(
      "log_logit_scale", torch::tensor(std::log(config.init_logit_scale), torch::kFloat32));
  add_distill_projections();
  add_reranker();
}

void DualEncoderImpl::add_reranker() {
  // After every other module, for the same reason as the distillation projections.
  if (!config_.reranker.enabled()) return;
  const int image_width = config_.image.type == ImageTowerType::kCnn ? config_.image.widths.back()
                                                                     : config_.image.width;
  reranker_ =
      register_module("reranker", Reranker(config_.reranker, config_.text.width, image_width));
}

void DualEncoderImpl::add_distill_projections() {
  // Registered last, so a model without them has the parameters (and draws the random numbers)
  // of any other: runs without distillation are unchanged.
  if (config_.distill_dim == 0) return;
  auto options = torch::nn::LinearOptions(config_.embed_dim, config_.distill_dim).bias(false);
  distill_image_ = register_module("distill_image_projection", torch::nn::Linear(options));
  distill_text_ = register_module("distill_text_projection", torch::nn::Linear(options));
}

torch::Tensor DualEncoderImpl::image_to_teacher(const torch::Tensor& embeddings) {
  if (!distill_image_) return embeddings;
  return F::normalize(linear(embeddings, distill_image_->weight, distill_image_->bias),
                      F::NormalizeFuncOptions().dim(-1));
}

torch::Tensor DualEncoderImpl::text_to_teacher(const torch::Tensor& embeddings) {
  if (!distill_text_) return embeddings;
  return F::normalize(linear(embeddings, distill_text_->weight, distill_text_->bias),
                      F::NormalizeFuncOptions().dim(-1));
}

torch::Tensor DualEncoderImpl::encode_image(const torch::Tensor& images) {
  auto features = clip_         ? clip_->encode_image(images)
                  : conv_tower_ ? conv_tower_->forward(images)
                                : vit_tower_->forward(images);
  return F::normalize(features, F::NormalizeFuncOptions().dim(-1));
}

torch::Tensor DualEncoderImpl::encode_text(const torch::Tensor& tokens) {
  auto features = clip_ ? clip_->encode_text(tokens, pad_id_) : text_tower_->forward(tokens);
  return F::normalize(features, F::NormalizeFuncOptions().dim(-1));
}

namespace {

void require_own_towers(const ChineseClip& clip, const char* what) {
  if (clip) {
    throw std::invalid_argument(
        fmt::format("{}: not available for Chinese-CLIP towers yet (shopclip's own only)", what));
  }
}

}  // namespace

torch::Tensor DualEncoderImpl::text_token_states(const torch::Tensor& tokens) {
  require_own_towers(clip_, "text_token_states");
  return text_tower_->forward_with_states(tokens).second;
}

torch::Tensor DualEncoderImpl::image_tokens(const torch::Tensor& images) {
  require_own_towers(clip_, "image_tokens");
  const int grid = config_.reranker.image_tokens;
  return conv_tower_ ? conv_tower_->forward_with_tokens(images, grid).second
                     : vit_tower_->forward_with_tokens(images, grid).second;
}

DualEncoderImpl::EncodedWithTokens DualEncoderImpl::encode_with_tokens(
    const torch::Tensor& images, const torch::Tensor& tokens) {
  require_own_towers(clip_, "encode_with_tokens");
  const int grid = config_.reranker.image_tokens;
  auto [image_features, image_tokens] = conv_tower_ ? conv_tower_->forward_with_tokens(images, grid)
                                                    : vit_tower_->forward_with_tokens(images, grid);
  auto [text_features, text_states] = text_tower_->forward_with_states(tokens);
  const auto unit = F::NormalizeFuncOptions().dim(-1);
  return {F::normalize(image_features, unit), F::normalize(text_features, unit), image_tokens,
          text_states, tokens.eq(pad_id_)};
}

torch::Tensor DualEncoderImpl::logit_scale() const {
  return clip_ ? clip_->log_logit_scale().exp() : log_logit_scale_.exp();
}

void DualEncoderImpl::clamp_logit_scale() {
  torch::NoGradGuard no_grad;
  auto scale = clip_ ? clip_->log_logit_scale() : log_logit_scale_;
  scale.clamp_(0.0, std::log(config_.max_logit_scale));
}

std::shared_ptr<torch::nn::Module> DualEncoderImpl::tower(FrozenTower which) const {
  if (clip_) return which == FrozenTower::kImage ? clip_->vision_tower() : clip_->text_tower();
  if (which == FrozenTower::kImage) {
    return conv_tower_ ? std::static_pointer_cast<torch::nn::Module>(conv_tower_.ptr())
                       : std::static_pointer_cast<torch::nn::Module>(vit_tower_.ptr());
  }
  return text_tower_.ptr();
}

bool DualEncoderImpl::is_frozen(FrozenTower which) const {
  return frozen_ == which || frozen_ == FrozenTower::kBoth;
}

void DualEncoderImpl::freeze(FrozenTower which) {
  if (which == FrozenTower::kNone) return;
  frozen_ = which;
  for (const FrozenTower side : {FrozenTower::kImage, FrozenTower::kText}) {
    if (!is_frozen(side)) continue;
    for (auto& parameter : tower(side)->parameters())
      parameter.requires_grad_(false);
    // Chinese-CLIP's text projection sits beside BERT, not inside it.
    if (clip_ && side == FrozenTower::kText) clip_->text_projection().requires_grad_(false);
  }
  train(is_training());
}

void DualEncoderImpl::train(bool on) {
  torch::nn::Module::train(on);
  for (const FrozenTower side : {FrozenTower::kImage, FrozenTower::kText})
    if (is_frozen(side)) tower(side)->eval();
}

// ---- helpers ---------------------------------------------------------------------------------

bool uses_weight_decay(const std::string& name, const torch::Tensor& parameter) {
  return parameter.dim() >= 2 && name.find("positional_embedding") == std::string::npos &&
         name.find("position_embeddings") == std::string::npos;
}

double image_forward_flops(const ModelConfig& config) {
  if (config.chinese_clip.enabled()) {
    return chinese_clip_image_flops(ChineseClipConfig::from_json_files(
        config.chinese_clip.vision_config, config.chinese_clip.text_config));
  }
  double flops = 0;
  const auto& image = config.image;
  if (image.type == ImageTowerType::kCnn) {
    int in = 3, side = image.resolution;
    for (int width : image.widths) {
      side = (side + 1) / 2;  // the strided conv (padding 1)
      flops += 2.0 * in * width * 9 * side * side;
      flops += 2.0 * width * width * 9 * side * side;
      in = width;
    }
    flops += 2.0 * in * config.embed_dim;
  } else {
    const double tokens = 1.0 + std::pow(image.resolution / image.patch_size, 2);
    flops += 2.0 * 3 * image.patch_size * image.patch_size * image.width * (tokens - 1);
    const double per_token =
        2.0 * (4.0 * image.width * image.width + 2.0 * image.width * image.mlp);
    flops += image.layers * (tokens * per_token + 4.0 * tokens * tokens * image.width);
    flops += 2.0 * image.width * config.embed_dim;
  }
  return flops;
}

double text_forward_flops(const ModelConfig& config, int text_length) {
  const int tokens = text_length > 0 ? text_length : config.text.context_length;
  if (config.chinese_clip.enabled()) {
    return chinese_clip_text_flops(
        ChineseClipConfig::from_json_files(config.chinese_clip.vision_config,
                                           config.chinese_clip.text_config),
        tokens);
  }
  const auto& text = config.text;
  const double length = tokens;
  const double per_token = 2.0 * (4.0 * text.width * text.width + 2.0 * text.width * text.mlp);
  return text.layers * (length * per_token + 4.0 * length * length * text.width) +
         2.0 * text.width * config.embed_dim;
}

double model_forward_flops(const ModelConfig& config, int text_length) {
  return image_forward_flops(config) + text_forward_flops(config, text_length);
}

std::int64_t count_parameters(torch::nn::Module& module) {
  std::int64_t total = 0;
  for (const auto& p : module.parameters())
    total += p.numel();
  return total;
}

LoadedModel load_model(const std::string& checkpoint_path) {
  auto header = read_checkpoint_header(checkpoint_path);
  LoadedModel loaded{header.config, header.vocab, nullptr};
  loaded.model = DualEncoder(header.config.model, header.vocab.size(), header.vocab.pad_id());
  load_model_weights(checkpoint_path, *loaded.model);
  loaded.model->eval();
  return loaded;
}

}  // namespace shopclip
