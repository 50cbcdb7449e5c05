#include "core/model/reranker.h"

#include "core/model/batched_matmul.h"
#include "core/model/linear.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>
#include <torch/torch.h>

namespace shopclip {
namespace {

torch::nn::LayerNorm layer_norm(int width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}));
}

}  // namespace

torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int heads,
                                   const torch::Tensor& key_padding) {
  const auto batch = q.size(0), queries = q.size(1), keys = k.size(1), width = q.size(2);
  const auto head_dim = width / heads;
  // [B, L, W] -> [B, H, L, Dh]
  const auto split = [&](const torch::Tensor& x, std::int64_t length) {
    return x.view({batch, length, heads, head_dim}).transpose(1, 2);
  };
  auto scores = batched_matmul(split(q, queries), split(k, keys).transpose(-2, -1),
                               1.0 / std::sqrt(double(head_dim)));
  if (key_padding.defined()) {
    scores = scores.masked_fill(key_padding.view({batch, 1, 1, keys}),
                                -std::numeric_limits<float>::infinity());
  }
  auto attended = batched_matmul(scores.softmax(-1), split(v, keys));  // [B, H, Lq, Dh]
  return attended.transpose(1, 2).reshape({batch, queries, width});
}

CrossAttentionBlockImpl::CrossAttentionBlockImpl(int width, int heads, int mlp) : heads_(heads) {
  ln1_ = register_module("ln1", layer_norm(width));
  ln2_ = register_module("ln2", layer_norm(width));
  ln_image_ = register_module("ln_image", layer_norm(width));
  ln3_ = register_module("ln3", layer_norm(width));
  self_qkv_ = register_module("self_qkv", torch::nn::Linear(width, 3 * width));
  self_out_ = register_module("self_out", torch::nn::Linear(width, width));
  cross_q_ = register_module("cross_q", torch::nn::Linear(width, width));
  cross_kv_ = register_module("cross_kv", torch::nn::Linear(width, 2 * width));
  cross_out_ = register_module("cross_out", torch::nn::Linear(width, width));
  fc1_ = register_module("fc1", torch::nn::Linear(width, mlp));
  fc2_ = register_module("fc2", torch::nn::Linear(mlp, width));
}

torch::Tensor CrossAttentionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& padding,
                                               const torch::Tensor& image) {
  auto qkv = linear(ln1_(x), self_qkv_->weight, self_qkv_->bias).chunk(3, -1);
  auto h = x + linear(multi_head_attention(qkv[0], qkv[1], qkv[2], heads_, padding),
                      self_out_->weight, self_out_->bias);
  auto kv = linear(ln_image_(image), cross_kv_->weight, cross_kv_->bias).chunk(2, -1);
  const auto query = linear(ln2_(h), cross_q_->weight, cross_q_->bias);
  h = h + linear(multi_head_attention(query, kv[0], kv[1], heads_, {}), cross_out_->weight,
                 cross_out_->bias);
  return h +
         linear(torch::gelu(linear(ln3_(h), fc1_->weight, fc1_->bias)), fc2_->weight, fc2_->bias);
}

RerankerImpl::RerankerImpl(const RerankerConfig& config, int text_width, int image_width)
    : config_(config) {
  if (config_.layers < 1 || config_.layers > 4) {
    throw std::invalid_argument(fmt::format("reranker layers = {}: must be 1..4", config_.layers));
  }
  if (config_.width < 1 || config_.heads < 1 || config_.width % config_.heads != 0 ||
      config_.mlp < 1) {
    throw std::invalid_argument(fmt::format(
        "reranker width = {}, heads = {}, mlp = {}: width must be a positive multiple of heads "
        "and mlp positive",
        config_.width, config_.heads, config_.mlp));
  }
  if (text_width < 1 || image_width < 1) {
    throw std::invalid_argument(
        fmt::format("reranker: input widths {} and {} must be positive", text_width, image_width));
  }
  text_in_ = register_module("text_in", torch::nn::Linear(text_width, config_.width));
  image_in_ = register_module("image_in", torch::nn::Linear(image_width, config_.width));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config_.layers; ++i)
    blocks_->push_back(CrossAttentionBlock(config_.width, config_.heads, config_.mlp));
  ln_final_ = register_module("ln_final", layer_norm(config_.width));
  head_ = register_module("head", torch::nn::Linear(config_.width, 1));
}

torch::Tensor RerankerImpl::forward(const torch::Tensor& text, const torch::Tensor& text_padding,
                                    const torch::Tensor& image) {
  if (text.dim() != 3 || image.dim() != 3 || text.size(0) != image.size(0)) {
    throw std::invalid_argument(fmt::format(
        "reranker: expected text [B, L, W_t] and image [B, T, W_i] of one batch, got {} and {}",
        c10::str(text.sizes()), c10::str(image.sizes())));
  }
  if (text_padding.defined() && (text_padding.scalar_type() != torch::kBool ||
                                 !text_padding.sizes().equals({text.size(0), text.size(1)}))) {
    throw std::invalid_argument(
        fmt::format("reranker: text_padding must be bool [{}, {}]", text.size(0), text.size(1)));
  }
  // Trailing positions that are padding in every row change nothing ([CLS] reads only keys that
  // are not padding, and each later position only feeds itself): drop them.
  auto states = text;
  auto padding = text_padding;
  if (padding.defined()) {
    const auto used = padding.logical_not().any(0).nonzero();
    const auto length = used.numel() == 0 ? 1 : used.max().item<std::int64_t>() + 1;
    states = states.narrow(1, 0, length);
    padding = padding.narrow(1, 0, length);
  }
  auto x = linear(states, text_in_->weight, text_in_->bias);
  const auto memory = linear(image, image_in_->weight, image_in_->bias);
  for (const auto& block : *blocks_)
    x = block->as<CrossAttentionBlock>()->forward(x, padding, memory);
  return linear(ln_final_(x.select(1, 0)), head_->weight, head_->bias).squeeze(-1);
}

}  // namespace shopclip
