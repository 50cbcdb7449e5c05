#pragma once
// The dual encoder: an image tower and a text tower projected into one shared space, each output
// L2-normalised, and a learnable logit scale (CLIP).
//
// Shapes (B = batch, L = context length, D = model.embed_dim, R = image resolution):
//   images  float32 [B, 3, R, R], normalised with the CLIP mean/std (data/loader.h)
//   tokens  int64   [B, L], [CLS] first, padded with pad_id (positions holding pad_id are masked)
//   outputs float32 [B, D], unit L2 norm
// All tensors live on the model's device.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "core/config.h"
#include "core/model/chinese_clip.h"
#include "core/model/reranker.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"

namespace shopclip {

// Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)) with GELU.
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int width, int heads, int mlp);
  // x: [B, L, W]; key_padding: bool [B, L], true where the key must be ignored, or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_padding);

 private:
  int heads_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  torch::nn::Linear qkv_{nullptr}, out_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(TransformerBlock);

// Text tower: token + positional embeddings, pre-LN blocks, final LayerNorm, [CLS] output
// projected to D.
class TextTowerImpl : public torch::nn::Module {
 public:
  TextTowerImpl(const TextTowerConfig& config, std::int64_t vocab_size, std::int64_t pad_id,
                int embed_dim);
  // [B, L] -> [B, D] (not normalised). Columns that are padding in every row are trimmed first
  // (trim_trailing_padding, core/model/encoder.h): same result, the batch's longest query's work.
  torch::Tensor forward(const torch::Tensor& tokens);
  // forward's output and, from the same pass, every position's state after the final LayerNorm
  // [B, L, W] (row 0 is [CLS]; rows at padding positions are computed but meaningless). For
  // cross-modal rerankers.
  std::pair<torch::Tensor, torch::Tensor> forward_with_states(const torch::Tensor& tokens);

 private:
  torch::Tensor blocks_output(const torch::Tensor& tokens);  // [B, L, W] before ln_final
  std::int64_t pad_id_;
  torch::nn::Embedding token_embedding_{nullptr};
  torch::Tensor positional_embedding_;  // [L, W]
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm ln_final_{nullptr};
  torch::nn::Linear projection_{nullptr};
};
TORCH_MODULE(TextTower);

// BatchNorm over (N, H, W) of [N, C, H, W] whose training statistics are those of the global
// batch when a communicator with several ranks is given (mean and variance all-reduced, with
// gradients), so N ranks train exactly as one process on their union. Parameter and buffer names
// are those of torch::nn::BatchNorm2d (weight, bias, running_mean, running_var,
// num_batches_tracked), so checkpoints do not depend on the world size. Channels-last CPU inputs
// get the same explicit statistics on one rank too (LibTorch 1.13's kernel for them is imprecise).
class SyncBatchNorm2dImpl : public torch::nn::Module {
 public:
  // comm may be null (plain BatchNorm); it must outlive the module's forward/backward passes.
  SyncBatchNorm2dImpl(int channels, dist::Communicator* comm, double momentum = 0.1,
                      double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  // relu(forward(x)). In training on one rank, float32 [N, C, H, W] CPU inputs in the default or
  // the channels-last layout take the fused kernel of core/model/batch_norm_relu.h (fewer passes
  // over memory).
  torch::Tensor forward_relu(const torch::Tensor& x);

 private:
  dist::Communicator* comm_;
  double momentum_, eps_;
  torch::Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};
TORCH_MODULE(SyncBatchNorm2d);

// CNN image tower: stages of (3x3 conv stride 2 + BN + ReLU, 3x3 conv + BN + ReLU), global
// average pooling, linear projection to D. With model.image.channels_last the activations are
// channels-last in memory (the input is made so unless it already is: data::normalize_pixels
// delivers it so); the weights keep their default layout.
class ConvImageTowerImpl : public torch::nn::Module {
 public:
  ConvImageTowerImpl(const ImageTowerConfig& config, int embed_dim,
                     dist::Communicator* comm = nullptr);
  torch::Tensor forward(const torch::Tensor& images);  // [B, 3, R, R] -> [B, D]
  // forward's output and, from the same pass, the last stage's feature map as tokens
  // [B, G, C_last], row-major over the grid: the whole (R / 2^stages)^2 grid, or with
  // grid_tokens = s * s > 0 the grid average-pooled to s x s (when s is smaller). For cross-
  // modal rerankers.
  std::pair<torch::Tensor, torch::Tensor> forward_with_tokens(const torch::Tensor& images,
                                                              int grid_tokens);

 private:
  torch::Tensor feature_map(const torch::Tensor& images);  // [B, C_last, H, W]
  bool channels_last_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<SyncBatchNorm2d> norms_;
  torch::nn::Linear projection_{nullptr};
};
TORCH_MODULE(ConvImageTower);

// ViT image tower: patch embedding (conv without bias), class token, positional embedding,
// LayerNorm, pre-LN blocks, LayerNorm on the class token, linear projection to D.
class VitImageTowerImpl : public torch::nn::Module {
 public:
  VitImageTowerImpl(const ImageTowerConfig& config, int embed_dim);
  torch::Tensor forward(const torch::Tensor& images);  // [B, 3, R, R] -> [B, D]
  // forward's output and, from the same pass, the tokens after ln_post [B, 1 + G, W]: the class
  // token, then the patches (G = patches), or with grid_tokens = s * s > 0 the patch grid
  // average-pooled to s x s (when s is smaller).
  std::pair<torch::Tensor, torch::Tensor> forward_with_tokens(const torch::Tensor& images,
                                                              int grid_tokens);

 private:
  torch::Tensor blocks_output(const torch::Tensor& images);  // [B, 1 + patches, W]
  torch::nn::Conv2d patch_embedding_{nullptr};
  torch::Tensor class_embedding_;       // [W]
  torch::Tensor positional_embedding_;  // [1 + patches, W]
  torch::nn::LayerNorm ln_pre_{nullptr}, ln_post_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::Linear projection_{nullptr};
};
TORCH_MODULE(VitImageTower);

class DualEncoderImpl : public torch::nn::Module {
 public:
  // comm: the process group when training on several ranks (synchronises BatchNorm statistics);
  // null for one process and for evaluation.
  DualEncoderImpl(const ModelConfig& config, std::int64_t vocab_size, std::int64_t pad_id,
                  dist::Communicator* comm = nullptr);

  torch::Tensor encode_image(const torch::Tensor& images);  // unit-norm [B, D]
  torch::Tensor encode_text(const torch::Tensor& tokens);   // unit-norm [B, D]
  // The towers' token features for the cross-modal reranker (core/model/reranker.h); shopclip's
  // own towers only (std::invalid_argument for Chinese-CLIP's).
  // tokens [B, L] -> [B, L, model.text.width] (TextTower::forward_with_states).
  torch::Tensor text_token_states(const torch::Tensor& tokens);
  // images [B, 3, R, R] -> CNN: [B, G, C_last] grid tokens; ViT: [B, 1 + G, width]; the grid
  // pooled to model.reranker.image_tokens (ConvImageTower / VitImageTower::forward_with_tokens).
  torch::Tensor image_tokens(const torch::Tensor& images);

  // Embeddings and token features of a batch from one forward pass per tower, for training the
  // reranker beside the towers. Shapes as encode_* and *_tokens above; text_padding bool
  // [B, L] is true at padding positions.
  struct EncodedWithTokens {
    torch::Tensor images, texts;
    torch::Tensor image_tokens, text_states, text_padding;
  };
  EncodedWithTokens encode_with_tokens(const torch::Tensor& images, const torch::Tensor& tokens);

  // The learned reranker (model.reranker.layers > 0), else null. Its input widths are the
  // towers': model.text.width and the CNN's last width or the ViT's width.
  Reranker reranker() const { return reranker_; }

  // Keeps one tower's weights fixed, or both (kNone does nothing). Its parameters stop
  // requiring gradients and the tower stays in evaluation mode (BatchNorm statistics frozen too)
  // whatever train() says.
  void freeze(FrozenTower tower);
  void train(bool on = true) override;
  // The module holding one tower's weights (kImage or kText; for Chinese-CLIP's text side BERT
  // without the text projection, which sits beside it).
  std::shared_ptr<torch::nn::Module> tower(FrozenTower which) const;
  // The Chinese-CLIP model when model.chinese_clip is set, else null.
  ChineseClip chinese_clip() const { return clip_; }
  // exp(log_logit_scale), a 0-dim tensor that carries gradient.
  torch::Tensor logit_scale() const;
  // Caps the learnable scale at max_logit_scale; call after each optimizer step (as CLIP does).
  void clamp_logit_scale();

  // Embeddings [n, D] (encode_image's / encode_text's) in a distillation teacher's space: with
  // model.distill_dim > 0 a linear map per tower (no bias) to [n, distill_dim], then unit norm;
  // with distill_dim 0 the embeddings themselves. Used by the distillation losses only: the
  // model's retrieval embeddings stay encode_image / encode_text.
  torch::Tensor image_to_teacher(const torch::Tensor& embeddings);
  torch::Tensor text_to_teacher(const torch::Tensor& embeddings);

  const ModelConfig& config() const { return config_; }
  // The token id that pads token batches (positions holding it are masked).
  std::int64_t pad_id() const { return pad_id_; }

 private:
  ModelConfig config_;
  // Either Chinese-CLIP's towers (clip_, with its own logit scale), or exactly one of shopclip's
  // image towers as model.image.type says plus its text tower.
  ChineseClip clip_{nullptr};
  std::int64_t pad_id_ = 0;
  ConvImageTower conv_tower_{nullptr};
  VitImageTower vit_tower_{nullptr};
  TextTower text_tower_{nullptr};
  torch::Tensor log_logit_scale_;  // scalar parameter
  // model.distill_dim > 0: [D] -> [distill_dim] per tower (see image_to_teacher).
  torch::nn::Linear distill_image_{nullptr}, distill_text_{nullptr};
  Reranker reranker_{nullptr};
  FrozenTower frozen_ = FrozenTower::kNone;
  void add_distill_projections();
  void add_reranker();
  bool is_frozen(FrozenTower which) const;
};
TORCH_MODULE(DualEncoder);

// Whether AdamW weight decay applies to a parameter: not to biases, norm weights, scalars,
// class tokens (all with fewer than 2 dims) nor to positional embedding tables.
bool uses_weight_decay(const std::string& name, const torch::Tensor& parameter);

// Forward FLOPs of one sample (image + text), counting multiply-adds as 2, for throughput
// reports. Training costs about 3x this (forward + backward). The text tower is counted over
// text_length tokens, 0 meaning the whole context length: the tower computes the columns of its
// batch's longest query (trim_trailing_padding), which only the caller that holds the batch knows.
double model_forward_flops(const ModelConfig& config, int text_length = 0);
// The same for one tower: one image, one query.
double image_forward_flops(const ModelConfig& config);
double text_forward_flops(const ModelConfig& config, int text_length = 0);

std::int64_t count_parameters(torch::nn::Module& module);

// A trained model read back from a shopclip checkpoint (core/checkpoint.h): the dual encoder its
// config describes, with the stored weights, in evaluation mode, on the CPU.
struct LoadedModel {
  Config config;
  data::Vocab vocab;
  DualEncoder model{nullptr};
};
LoadedModel load_model(const std::string& checkpoint_path);

}  // namespace shopclip
