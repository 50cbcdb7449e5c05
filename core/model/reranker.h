#pragma once
// A small cross-modal reranker (ALBEF/BLIP's image-text matching head in miniature): the query's
// token states attend to the image's tokens through a few cross-attention blocks, and a linear
// head on the [CLS] position gives one match logit per (query, image) pair. It scores the
// candidates a dual encoder retrieved (stage 2); its inputs are the towers' token features
// (DualEncoderImpl::text_token_states, image_tokens).
//
// Shapes (B pairs, L query tokens, T image tokens):
//   text          float32 [B, L, text_width]   the text tower's token states, [CLS] at 0
//   text_padding  bool    [B, L]                true at padding positions (ignored as keys), or
//                                               undefined (no padding)
//   image         float32 [B, T, image_width]  the image's tokens (any order: the blocks see no
//                                               image position, so the score does not depend
//                                               on the order of the tokens)
//   output        float32 [B]                   match logits (sigmoid = P(match))
// Everything on the module's device.

#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "core/config.h"

namespace shopclip {

// Pre-LayerNorm block: x + self-attention(ln1(x)) over the query tokens (padding masked),
// x + cross-attention(ln2(x), ln_image(image)) to the image tokens, x + MLP(ln3(x)) with GELU.
class CrossAttentionBlockImpl : public torch::nn::Module {
 public:
  CrossAttentionBlockImpl(int width, int heads, int mlp);
  // x [B, L, W], padding bool [B, L] or undefined, image [B, T, W] -> [B, L, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& padding,
                        const torch::Tensor& image);

 private:
  int heads_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr}, ln_image_{nullptr}, ln3_{nullptr};
  torch::nn::Linear self_qkv_{nullptr}, self_out_{nullptr};
  torch::nn::Linear cross_q_{nullptr}, cross_kv_{nullptr}, cross_out_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(CrossAttentionBlock);

class RerankerImpl : public torch::nn::Module {
 public:
  // config: model.reranker (layers 1..4; std::invalid_argument otherwise). text_width /
  // image_width: the widths of the towers' token features.
  RerankerImpl(const RerankerConfig& config, int text_width, int image_width);
  torch::Tensor forward(const torch::Tensor& text, const torch::Tensor& text_padding,
                        const torch::Tensor& image);
  const RerankerConfig& config() const { return config_; }

 private:
  RerankerConfig config_;
  torch::nn::Linear text_in_{nullptr}, image_in_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm ln_final_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(Reranker);

// Multi-head scaled dot-product attention: q [B, Lq, W], k and v [B, Lk, W] -> [B, Lq, W];
// key_padding bool [B, Lk] (true = ignore that key) or undefined. W % heads == 0.
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int heads,
                                   const torch::Tensor& key_padding);

}  // namespace shopclip
