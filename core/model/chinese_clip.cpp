#include "core/model/chinese_clip.h"

#include "core/model/batched_matmul.h"
#include "core/model/encoder.h"
#include "core/model/linear.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/model/autocast.h"

namespace shopclip {
namespace {

namespace F = torch::nn::functional;

// A parameterless module that only groups children, so that names nest as in PyTorch
// ("attention.self.query.weight").
std::shared_ptr<torch::nn::Module> group(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm layer_norm(int width, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(eps));
}

torch::nn::Conv2d conv(int in, int out, int kernel, int stride = 1, int padding = 0) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// Scaled dot-product attention over heads: q [B, Lq, W], k and v [B, L, W] -> [B, Lq, W].
// additive_mask broadcasts against the scores [B, heads, Lq, L], or is undefined.
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int heads,
                                   const torch::Tensor& additive_mask = {}) {
  const auto batch = q.size(0), query_length = q.size(1), length = k.size(1), width = q.size(2);
  const auto head_width = width / heads;
  auto split = [&](const torch::Tensor& x, std::int64_t rows) {
    return x.reshape({batch, rows, heads, head_width}).transpose(1, 2);  // [B, h, rows, d]
  };
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x's fused attention (flash or memory-efficient kernels on a GPU) computes the same
  // softmax(q k^T / sqrt(d) + mask) v without materialising the scores: measured on an H200 it is
  // what kept the bf16 training step behind PyTorch's (experiments/results/gpu-*.md).
  std::optional<torch::Tensor> mask;
  if (additive_mask.defined()) mask = additive_mask;
  auto context = at::scaled_dot_product_attention(split(q, query_length), split(k, length),
                                                  split(v, length), mask);
#else
  // batched_matmul: one BLAS call per (row, head) on the views, the scale folded in.
  auto scores = batched_matmul(split(q, query_length), split(k, length).transpose(-2, -1),
                               1.0 / std::sqrt(static_cast<double>(head_width)));
  if (additive_mask.defined()) scores = scores + additive_mask;
  auto context = batched_matmul(torch::softmax(scores, -1), split(v, length));
#endif
  return context.transpose(1, 2).reshape({batch, query_length, width});
}

// Gradient checkpointing: forward without storing the block's activations; backward runs the
// block again with gradient and back-propagates through that copy, which also accumulates the
// block's parameter gradients. The recomputation runs under the autocast setting of the forward
// pass (train.amp), so that it computes the same values in the same precision.
class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& aux, std::int64_t block_handle) {
    ctx->saved_data["block"] = block_handle;
    ctx->saved_data["x"] = x.detach();
    ctx->saved_data["aux"] = aux.detach();
    ctx->saved_data["autocast"] = cuda_autocast_enabled();
    torch::NoGradGuard no_grad;
    return reinterpret_cast<CheckpointableBlock*>(block_handle)->run(x, aux);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto* block = reinterpret_cast<CheckpointableBlock*>(ctx->saved_data["block"].toInt());
    auto x = ctx->saved_data["x"].toTensor().detach().requires_grad_(true);
    const torch::Tensor aux = ctx->saved_data["aux"].toTensor();
    torch::Tensor y;
    {
      torch::AutoGradMode enable(true);
      AutocastGuard autocast(ctx->saved_data["autocast"].toBool());
      y = block->run(x, aux);
    }
    torch::autograd::backward({y}, {grad_outputs[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor run_block(CheckpointableBlock& block, const torch::Tensor& x,
                        const torch::Tensor& aux, bool checkpoint) {
  if (!checkpoint || !x.requires_grad() || !torch::GradMode::is_enabled()) return block.run(x, aux);
  // The autograd function takes defined tensors only: a block without aux gets an empty one.
  const auto aux_or_empty = aux.defined() ? aux : torch::empty({0}, x.options());
  return CheckpointFunction::apply(x, aux_or_empty, reinterpret_cast<std::int64_t>(&block));
}

// ---- vision transformer ----------------------------------------------------------------------

ClipAttentionImpl::ClipAttentionImpl(int width, int heads) : heads_(heads) {
  in_proj_weight_ = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias_ = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  torch::nn::init::xavier_uniform_(in_proj_weight_);
  out_proj_ = register_module("out_proj", torch::nn::Linear(width, width));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  const auto qkv = linear(x, in_proj_weight_, in_proj_bias_).chunk(3, -1);
  return linear(multi_head_attention(qkv[0], qkv[1], qkv[2], heads_), out_proj_->weight,
                out_proj_->bias);
}

ClipResidualBlockImpl::ClipResidualBlockImpl(int width, int heads) {
  attn_ = register_module("attn", ClipAttention(width, heads));
  ln_1_ = register_module("ln_1", layer_norm(width, 1e-5));
  auto mlp = group(*this, "mlp");
  c_fc_ = mlp->register_module("c_fc", torch::nn::Linear(width, 4 * width));
  c_proj_ = mlp->register_module("c_proj", torch::nn::Linear(4 * width, width));
  ln_2_ = register_module("ln_2", layer_norm(width, 1e-5));
}

torch::Tensor ClipResidualBlockImpl::forward(const torch::Tensor& x) {
  auto y = x + attn_(ln_1_(x));
  auto hidden = linear(ln_2_(y), c_fc_->weight, c_fc_->bias);
  hidden = hidden * torch::sigmoid(1.702 * hidden);  // QuickGELU
  return y + linear(hidden, c_proj_->weight, c_proj_->bias);
}

ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipVisionConfig& config) {
  const int width = config.width;
  const int grid = config.image_resolution / config.patch_size;
  const double scale = 1.0 / std::sqrt(static_cast<double>(width));
  conv1_ = register_module("conv1", conv(3, width, config.patch_size, config.patch_size));
  class_embedding_ = register_parameter("class_embedding", torch::randn({width}) * scale);
  positional_embedding_ =
      register_parameter("positional_embedding", torch::randn({grid * grid + 1, width}) * scale);
  ln_pre_ = register_module("ln_pre", layer_norm(width, 1e-5));
  auto transformer = group(*this, "transformer");
  blocks_ = transformer->register_module("resblocks", torch::nn::ModuleList());
  for (int i = 0; i < config.transformer_layers; ++i)
    blocks_->push_back(ClipResidualBlock(width, config.heads()));
  ln_post_ = register_module("ln_post", layer_norm(width, 1e-5));
  proj_ = register_parameter("proj", torch::randn({width, config.embed_dim}) * scale);
}

torch::Tensor ClipVisionTransformerImpl::forward(const torch::Tensor& images) {
  auto x = conv1_(images);           // [B, W, G, G]
  x = x.flatten(2).transpose(1, 2);  // [B, G*G, W]
  auto cls = class_embedding_.view({1, 1, -1}).expand({x.size(0), 1, x.size(2)});
  x = torch::cat({cls, x}, 1) + positional_embedding_;
  x = ln_pre_(x);
  for (const auto& block : *blocks_)
    x = run_block(*block->as<ClipResidualBlock>(), x, {}, grad_checkpointing);
  return torch::matmul(ln_post_(x.select(1, 0)), proj_);
}

// ---- ModifiedResNet ----------------------------------------------------------------------------

ClipBottleneckImpl::ClipBottleneckImpl(int inplanes, int planes, int stride) : stride_(stride) {
  conv1_ = register_module("conv1", conv(inplanes, planes, 1));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv(planes, planes, 3, 1, 1));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
  conv3_ = register_module("conv3", conv(planes, planes * 4, 1));
  bn3_ = register_module("bn3", torch::nn::BatchNorm2d(planes * 4));
  if (stride > 1 || inplanes != planes * 4) {
    // PyTorch names the average pooling "-1" (no parameters), the conv "0" and the BN "1".
    downsample_ = group(*this, "downsample");
    down_conv_ = downsample_->register_module("0", conv(inplanes, planes * 4, 1));
    down_bn_ = downsample_->register_module("1", torch::nn::BatchNorm2d(planes * 4));
  }
}

torch::Tensor ClipBottleneckImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1_(conv1_(x)));
  out = torch::relu(bn2_(conv2_(out)));
  if (stride_ > 1) out = F::avg_pool2d(out, F::AvgPool2dFuncOptions(stride_));
  out = bn3_(conv3_(out));
  torch::Tensor identity = x;
  if (downsample_) {
    auto pooled = stride_ > 1 ? F::avg_pool2d(x, F::AvgPool2dFuncOptions(stride_)) : x;
    identity = down_bn_(down_conv_(pooled));
  }
  return torch::relu(out + identity);
}

ClipAttentionPoolImpl::ClipAttentionPoolImpl(int spatial, int width, int heads, int output_dim)
    : heads_(heads) {
  positional_embedding_ =
      register_parameter("positional_embedding", torch::randn({spatial * spatial + 1, width}) /
                                                     std::sqrt(static_cast<double>(width)));
  k_proj_ = register_module("k_proj", torch::nn::Linear(width, width));
  q_proj_ = register_module("q_proj", torch::nn::Linear(width, width));
  v_proj_ = register_module("v_proj", torch::nn::Linear(width, width));
  c_proj_ = register_module("c_proj", torch::nn::Linear(width, output_dim));
}

torch::Tensor ClipAttentionPoolImpl::forward(const torch::Tensor& x) {
  auto tokens = x.flatten(2).transpose(1, 2);                          // [B, HW, C]
  tokens = torch::cat({tokens.mean(1, /*keepdim=*/true), tokens}, 1);  // [B, HW + 1, C]
  tokens = tokens + positional_embedding_;
  // Only the mean token's output is used.
  const auto query = linear(tokens.narrow(1, 0, 1), q_proj_->weight, q_proj_->bias);
  auto pooled = multi_head_attention(query, linear(tokens, k_proj_->weight, k_proj_->bias),
                                     linear(tokens, v_proj_->weight, v_proj_->bias), heads_);
  return linear(pooled.select(1, 0), c_proj_->weight, c_proj_->bias);
}

ClipModifiedResNetImpl::ClipModifiedResNetImpl(const ClipVisionConfig& config) {
  const int width = config.width;
  conv1_ = register_module("conv1", conv(3, width / 2, 3, 2, 1));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(width / 2));
  conv2_ = register_module("conv2", conv(width / 2, width / 2, 3, 1, 1));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(width / 2));
  conv3_ = register_module("conv3", conv(width / 2, width, 3, 1, 1));
  bn3_ = register_module("bn3", torch::nn::BatchNorm2d(width));
  int inplanes = width;
  for (int stage = 0; stage < 4; ++stage) {
    const int planes = width << stage;
    torch::nn::Sequential blocks;
    for (int b = 0; b < config.resnet_layers[stage]; ++b) {
      blocks->push_back(ClipBottleneck(inplanes, planes, b == 0 && stage > 0 ? 2 : 1));
      inplanes = planes * 4;
    }
    stages_.push_back(register_module(fmt::format("layer{}", stage + 1), blocks));
  }
  const int embed = width * 32;  // the ResNet's output channels
  attnpool_ = register_module("attnpool", ClipAttentionPool(config.image_resolution / 32, embed,
                                                            config.heads(), config.embed_dim));
}

torch::Tensor ClipModifiedResNetImpl::forward(const torch::Tensor& images) {
  auto x = torch::relu(bn1_(conv1_(images)));
  x = torch::relu(bn2_(conv2_(x)));
  x = torch::relu(bn3_(conv3_(x)));
  x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(2));
  for (auto& stage : stages_)
    x = stage->forward(x);
  return attnpool_(x);
}

// ---- BERT ------------------------------------------------------------------------------------

BertLayerImpl::BertLayerImpl(const ClipTextConfig& config) : heads_(config.num_attention_heads) {
  const int hidden = config.hidden_size;
  auto attention = group(*this, "attention");
  auto self = group(*attention, "self");
  query_ = self->register_module("query", torch::nn::Linear(hidden, hidden));
  key_ = self->register_module("key", torch::nn::Linear(hidden, hidden));
  value_ = self->register_module("value", torch::nn::Linear(hidden, hidden));
  auto attention_output = group(*attention, "output");
  attention_dense_ = attention_output->register_module("dense", torch::nn::Linear(hidden, hidden));
  attention_norm_ =
      attention_output->register_module("LayerNorm", layer_norm(hidden, config.layer_norm_eps));
  auto intermediate = group(*this, "intermediate");
  intermediate_dense_ =
      intermediate->register_module("dense", torch::nn::Linear(hidden, config.intermediate_size));
  auto output = group(*this, "output");
  output_dense_ =
      output->register_module("dense", torch::nn::Linear(config.intermediate_size, hidden));
  output_norm_ = output->register_module("LayerNorm", layer_norm(hidden, config.layer_norm_eps));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& additive_mask) {
  const auto context = multi_head_attention(
      linear(x, query_->weight, query_->bias), linear(x, key_->weight, key_->bias),
      linear(x, value_->weight, value_->bias), heads_, additive_mask);
  const auto attended = attention_norm_(
      linear(context, attention_dense_->weight, attention_dense_->bias) + x);  // post-LayerNorm
  const auto hidden = torch::gelu(
      linear(attended, intermediate_dense_->weight, intermediate_dense_->bias));  // erf GELU
  return output_norm_(linear(hidden, output_dense_->weight, output_dense_->bias) + attended);
}

BertTextModelImpl::BertTextModelImpl(const ClipTextConfig& config) {
  auto embeddings = group(*this, "embeddings");
  word_embeddings_ = embeddings->register_module(
      "word_embeddings", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  position_embeddings_ = embeddings->register_module(
      "position_embeddings",
      torch::nn::Embedding(config.max_position_embeddings, config.hidden_size));
  token_type_embeddings_ = embeddings->register_module(
      "token_type_embeddings", torch::nn::Embedding(config.type_vocab_size, config.hidden_size));
  embedding_norm_ = embeddings->register_module(
      "LayerNorm", layer_norm(config.hidden_size, config.layer_norm_eps));
  auto encoder = group(*this, "encoder");
  layers_ = encoder->register_module("layer", torch::nn::ModuleList());
  for (int i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(BertLayer(config));
}

torch::Tensor BertTextModelImpl::forward(const torch::Tensor& tokens,
                                         const torch::Tensor& attention_mask) {
  const auto length = tokens.size(1);
  if (length > position_embeddings_->weight.size(0)) {
    throw std::invalid_argument(fmt::format("text of {} tokens exceeds the {} positions of BERT",
                                            length, position_embeddings_->weight.size(0)));
  }
  const auto positions = torch::arange(length, tokens.options());
  // Token type 0 everywhere, as Chinese-CLIP passes no token_type_ids.
  auto x = word_embeddings_(tokens) + position_embeddings_(positions).unsqueeze(0) +
           token_type_embeddings_->weight[0];
  x = embedding_norm_(x);
  // BERT's additive mask: 0 where attended, -10000 at padding.
  const auto additive = ((1.0 - attention_mask.to(x.dtype())) * -10000.0).unsqueeze(1).unsqueeze(1);
  for (const auto& layer : *layers_)
    x = run_block(*layer->as<BertLayer>(), x, additive, grad_checkpointing);
  return x;
}

// ---- the whole model -------------------------------------------------------------------------

ChineseClipImpl::ChineseClipImpl(const ChineseClipConfig& config) : config_(config) {
  if (config.vision.is_resnet()) {
    resnet_ = register_module("visual", ClipModifiedResNet(config.vision));
  } else {
    vit_ = register_module("visual", ClipVisionTransformer(config.vision));
  }
  bert_ = register_module("bert", BertTextModel(config.text));
  text_projection_ = register_parameter(
      "text_projection", torch::randn({config.text.hidden_size, config.vision.embed_dim}) /
                             std::sqrt(static_cast<double>(config.text.hidden_size)));
  logit_scale_ =
      register_parameter("logit_scale", torch::tensor(std::log(1 / 0.07), torch::kFloat));
}

void ChineseClipImpl::set_grad_checkpointing(bool on) {
  if (vit_) vit_->grad_checkpointing = on;
  bert_->grad_checkpointing = on;
}

std::shared_ptr<torch::nn::Module> ChineseClipImpl::vision_tower() const {
  return resnet_ ? std::static_pointer_cast<torch::nn::Module>(resnet_.ptr())
                 : std::static_pointer_cast<torch::nn::Module>(vit_.ptr());
}

std::shared_ptr<torch::nn::Module> ChineseClipImpl::text_tower() const {
  return bert_.ptr();
}

double chinese_clip_image_flops(const ChineseClipConfig& config) {
  const auto& v = config.vision;
  double macs = 0;
  if (!v.is_resnet()) {
    const double grid = v.image_resolution / v.patch_size, tokens = grid * grid + 1;
    const double w = v.width;
    macs += grid * grid * 3.0 * v.patch_size * v.patch_size * w;  // patch embedding
    macs += v.transformer_layers * (12 * tokens * w * w + 2 * tokens * tokens * w);
    macs += w * v.embed_dim;
  } else {
    // Convolutions of the stem and the bottlenecks at their output sizes, then attention pooling.
    const double w = v.width;
    double side = v.image_resolution / 2.0;
    macs += side * side * 9 * (3 * w / 2 + (w / 2) * (w / 2) + (w / 2) * w);
    side /= 2;
    double in = w;
    for (int stage = 0; stage < 4; ++stage) {
      const double planes = w * (1 << stage);
      for (int b = 0; b < v.resnet_layers[stage]; ++b) {
        const double out_side = (b == 0 && stage > 0) ? side / 2 : side;
        macs += side * side * in * planes + side * side * 9 * planes * planes +
                out_side * out_side * planes * planes * 4;
        if (b == 0) macs += out_side * out_side * in * planes * 4;  // shortcut conv
        side = out_side;
        in = planes * 4;
      }
    }
    const double tokens = side * side + 1;
    macs += 3 * tokens * in * in + 2 * tokens * in + in * v.embed_dim;
  }
  return 2 * macs;
}

double chinese_clip_text_flops(const ChineseClipConfig& config, int context_length) {
  const auto& t = config.text;
  const double h = t.hidden_size, l = context_length;
  double macs = 0;
  macs += t.num_hidden_layers * (4 * l * h * h + 2 * l * l * h + 2 * l * h * t.intermediate_size);
  macs += h * config.vision.embed_dim;
  return 2 * macs;
}

double chinese_clip_forward_flops(const ChineseClipConfig& config, int context_length) {
  return chinese_clip_image_flops(config) + chinese_clip_text_flops(config, context_length);
}

torch::Tensor ChineseClipImpl::encode_image(const torch::Tensor& images) {
  return resnet_ ? resnet_->forward(images) : vit_->forward(images);
}

torch::Tensor ChineseClipImpl::encode_text(const torch::Tensor& tokens, std::int64_t pad_id) {
  // BERT's padding is masked and its embedding is the [CLS] row: the columns that are padding in
  // every row are not computed.
  const auto used = trim_trailing_padding(tokens, pad_id);
  const auto hidden = bert_->forward(used, used.ne(pad_id));
  return torch::matmul(hidden.select(1, 0), text_projection_);
}

void load_chinese_clip_state(ChineseClip& model, const std::map<std::string, torch::Tensor>& state,
                             const std::string& source) {
  std::map<std::string, torch::Tensor> stored;
  for (const auto& [name, tensor] : state) {
    const std::string prefix = "module.";
    const std::string key = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
    if (key.rfind("bert.pooler.", 0) == 0) continue;
    stored[key] = tensor;
  }
  std::map<std::string, torch::Tensor> expected;
  for (const auto& item : model->named_parameters(true))
    expected[item.key()] = item.value();
  for (const auto& item : model->named_buffers(true))
    expected[item.key()] = item.value();

  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it == stored.end()) {
      // BatchNorm's step counter is not always saved; nothing depends on it in evaluation.
      if (name.size() < 20 || name.substr(name.size() - 20) != ".num_batches_tracked")
        missing.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream what;
      what << name << " (file " << it->second.sizes() << ", model " << tensor.sizes() << ")";
      misshaped.push_back(what.str());
    }
  }
  for (const auto& [name, tensor] : stored)
    if (!expected.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    auto list = [](const std::vector<std::string>& names) {
      std::string text;
      for (const auto& n : names)
        text += "\n  " + n;
      return text;
    };
    throw std::runtime_error(fmt::format(
        "{} does not match the Chinese-CLIP architecture of the model configs: {} missing, {} "
        "unexpected, {} mis-shaped keys{}{}{}{}{}{}",
        source, missing.size(), unexpected.size(), misshaped.size(),
        missing.empty() ? "" : "\nmissing:", list(missing),
        unexpected.empty() ? "" : "\nunexpected:", list(unexpected),
        misshaped.empty() ? "" : "\nmis-shaped:", list(misshaped)));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it != stored.end()) tensor.copy_(it->second.to(tensor.dtype()));
  }
}

}  // namespace shopclip
