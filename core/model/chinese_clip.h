#pragma once
// Chinese-CLIP's architectures in LibTorch, with parameter names equal to Chinese-CLIP's
// state_dict keys, so its weights load by name:
//   visual.*   the CLIP vision transformer (VisionTransformer) or ModifiedResNet (RN50)
//   bert.*     the BERT text tower (post-LayerNorm encoder, GELU; no pooler, as in Chinese-CLIP)
//   text_projection [text hidden, embed_dim], logit_scale (log of the scale, a scalar)
// Features are the raw projections (not L2-normalised), as Chinese-CLIP's encode_image and
// encode_text return them.

#include <map>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "core/model/chinese_clip_config.h"

namespace shopclip {

// A block whose activations can be recomputed in backward instead of stored (gradient
// checkpointing): run(x, aux) is its forward; aux is an extra input without gradient (BERT's
// attention mask), or undefined or empty when the block has none.
class CheckpointableBlock {
 public:
  virtual ~CheckpointableBlock() = default;
  virtual torch::Tensor run(const torch::Tensor& x, const torch::Tensor& aux) = 0;
};

// block.run(x, aux), storing only x and aux for backward when `checkpoint` is set and x
// requires grad (backward runs the block again, with gradient, and back-propagates through it).
torch::Tensor run_block(CheckpointableBlock& block, const torch::Tensor& x,
                        const torch::Tensor& aux, bool checkpoint);

// ---- vision transformer ----------------------------------------------------------------------

// torch.nn.MultiheadAttention's parameters (in_proj_weight [3W, W], in_proj_bias [3W],
// out_proj), batch-first input [B, L, W].
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int width, int heads);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int heads_;
  torch::Tensor in_proj_weight_, in_proj_bias_;
  torch::nn::Linear out_proj_{nullptr};
};
TORCH_MODULE(ClipAttention);

// x + attn(ln_1(x)), then x + c_proj(QuickGELU(c_fc(ln_2(x)))).
class ClipResidualBlockImpl : public torch::nn::Module, public CheckpointableBlock {
 public:
  ClipResidualBlockImpl(int width, int heads);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor run(const torch::Tensor& x, const torch::Tensor&) override { return forward(x); }

 private:
  torch::nn::LayerNorm ln_1_{nullptr}, ln_2_{nullptr};
  ClipAttention attn_{nullptr};
  torch::nn::Linear c_fc_{nullptr}, c_proj_{nullptr};
};
TORCH_MODULE(ClipResidualBlock);

class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipVisionTransformerImpl(const ClipVisionConfig& config);
  // images: float [B, 3, R, R], normalised -> [B, embed_dim]
  torch::Tensor forward(const torch::Tensor& images);
  bool grad_checkpointing = false;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::Tensor class_embedding_, positional_embedding_, proj_;
  torch::nn::LayerNorm ln_pre_{nullptr}, ln_post_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};  // transformer.resblocks
};
TORCH_MODULE(ClipVisionTransformer);

// ---- ModifiedResNet ----------------------------------------------------------------------------

// 1x1 conv, 3x3 conv, average pooling by the stride, 1x1 conv to 4x planes; the shortcut is
// average pooling + 1x1 conv + BN when the shape changes. ReLU after each BN and the sum.
class ClipBottleneckImpl : public torch::nn::Module {
 public:
  ClipBottleneckImpl(int inplanes, int planes, int stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int stride_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  std::shared_ptr<torch::nn::Module> downsample_;  // "0": conv, "1": BN; null when identity
  torch::nn::Conv2d down_conv_{nullptr};
  torch::nn::BatchNorm2d down_bn_{nullptr};
};
TORCH_MODULE(ClipBottleneck);

// Attention pooling: the mean token prepended to the H*W tokens, positional embedding added,
// one multi-head attention whose query is the mean token, projected to the output size.
class ClipAttentionPoolImpl : public torch::nn::Module {
 public:
  ClipAttentionPoolImpl(int spatial, int width, int heads, int output_dim);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, output_dim]

 private:
  int heads_;
  torch::Tensor positional_embedding_;  // [H*W + 1, C]
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, c_proj_{nullptr};
};
TORCH_MODULE(ClipAttentionPool);

class ClipModifiedResNetImpl : public torch::nn::Module {
 public:
  explicit ClipModifiedResNetImpl(const ClipVisionConfig& config);
  torch::Tensor forward(const torch::Tensor& images);  // [B, 3, R, R] -> [B, embed_dim]

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  std::vector<torch::nn::Sequential> stages_;  // layer1..layer4
  ClipAttentionPool attnpool_{nullptr};
};
TORCH_MODULE(ClipModifiedResNet);

// ---- BERT ------------------------------------------------------------------------------------

class BertLayerImpl : public torch::nn::Module, public CheckpointableBlock {
 public:
  explicit BertLayerImpl(const ClipTextConfig& config);
  // x [B, L, H]; additive_mask [B, 1, 1, L] (0 for tokens, -10000 for padding)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& additive_mask);
  torch::Tensor run(const torch::Tensor& x, const torch::Tensor& mask) override {
    return forward(x, mask);
  }

 private:
  int heads_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr};
  torch::nn::Linear attention_dense_{nullptr}, intermediate_dense_{nullptr}, output_dense_{nullptr};
  torch::nn::LayerNorm attention_norm_{nullptr}, output_norm_{nullptr};
};
TORCH_MODULE(BertLayer);

class BertTextModelImpl : public torch::nn::Module {
 public:
  explicit BertTextModelImpl(const ClipTextConfig& config);
  // tokens int64 [B, L], attention_mask [B, L] (1 = token, 0 = padding) -> hidden [B, L, H]
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& attention_mask);
  bool grad_checkpointing = false;

 private:
  torch::nn::Embedding word_embeddings_{nullptr}, position_embeddings_{nullptr},
      token_type_embeddings_{nullptr};
  torch::nn::LayerNorm embedding_norm_{nullptr};
  torch::nn::ModuleList layers_{nullptr};
};
TORCH_MODULE(BertTextModel);

// ---- the whole model -------------------------------------------------------------------------

class ChineseClipImpl : public torch::nn::Module {
 public:
  explicit ChineseClipImpl(const ChineseClipConfig& config);
  // images: float [B, 3, R, R] normalised with Chinese-CLIP's mean and std
  // (data::normalize_pixels) -> [B, embed_dim]
  torch::Tensor encode_image(const torch::Tensor& images);
  // tokens: int64 [B, L], [CLS] first, padded with pad_id -> the [CLS] state projected [B, E]
  torch::Tensor encode_text(const torch::Tensor& tokens, std::int64_t pad_id = 0);
  const ChineseClipConfig& config() const { return config_; }

  // Recompute transformer blocks in backward (vision transformer and BERT; the ResNet is not
  // checkpointed).
  void set_grad_checkpointing(bool on);
  // Handles sharing storage with the parameters.
  torch::Tensor log_logit_scale() const { return logit_scale_; }  // log of the scale, 0-dim
  torch::Tensor text_projection() const { return text_projection_; }
  std::shared_ptr<torch::nn::Module> vision_tower() const;  // "visual"
  std::shared_ptr<torch::nn::Module> text_tower() const;    // "bert" (without the projection)

 private:
  ChineseClipConfig config_;
  ClipVisionTransformer vit_{nullptr};
  ClipModifiedResNet resnet_{nullptr};
  BertTextModel bert_{nullptr};
  torch::Tensor text_projection_, logit_scale_;
};
TORCH_MODULE(ChineseClip);

// Forward FLOPs of one sample (an image and a query of `context_length` tokens), multiply-adds
// counted as 2: matrix products and attention (norms and activations are a rounding error).
double chinese_clip_forward_flops(const ChineseClipConfig& config, int context_length);
// The same for one tower: one image; one query of `context_length` tokens.
double chinese_clip_image_flops(const ChineseClipConfig& config);
double chinese_clip_text_flops(const ChineseClipConfig& config, int context_length);

// Loads a Chinese-CLIP state_dict (as converted to safetensors by
// launch/convert_chinese_clip.py) into the model. A leading "module." (DistributedDataParallel)
// is stripped from every key, and "bert.pooler.*" keys are dropped (Chinese-CLIP's BERT has no
// pooler; its own loaders drop them too, as other exports may carry one). Strict otherwise: throws
// std::runtime_error naming `source` and listing every missing, unexpected and mis-shaped key.
void load_chinese_clip_state(ChineseClip& model, const std::map<std::string, torch::Tensor>& state,
                             const std::string& source);

}  // namespace shopclip
