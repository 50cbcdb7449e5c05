#include "core/model/encoders.h"

#include <stdexcept>

#include <fmt/format.h>
#include <torch/nn/functional/normalization.h>
#include <torch/torch.h>

#include "data/safetensors.h"

namespace shopclip {
namespace {

namespace F = torch::nn::functional;

// Evaluation mode and no autograd for one encode call; the module's training flag comes back on
// scope exit, so a trainer may evaluate between steps.
class InferenceScope {
 public:
  explicit InferenceScope(torch::nn::Module& module)
      : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~InferenceScope() { module_.train(was_training_); }
  InferenceScope(const InferenceScope&) = delete;
  InferenceScope& operator=(const InferenceScope&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
  torch::NoGradGuard no_grad_;
};

torch::Device device_of(torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

// Outputs leave as the contract says: float32, contiguous, CPU.
torch::Tensor to_output(const torch::Tensor& features) {
  return features.to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace

// ---- DualEncoderAdapter -------------------------------------------------------------------------

DualEncoderAdapter::DualEncoderAdapter(DualEncoder model, data::Tokenizer tokenizer,
                                       int context_length)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), context_length_(context_length) {
  if (!model_) throw std::invalid_argument("DualEncoderAdapter: no model");
  if (context_length_ <= 0 || context_length_ > model_->config().text.context_length) {
    throw std::invalid_argument(
        fmt::format("DualEncoderAdapter: context length {} must be in 1..{} "
                    "(model.text.context_length)",
                    context_length_, model_->config().text.context_length));
  }
}

torch::Tensor DualEncoderAdapter::encode_images(const torch::Tensor& images) {
  check_image_batch(images, image_resolution(), "DualEncoderAdapter::encode_images");
  InferenceScope scope(*model_);
  return to_output(model_->encode_image(images.to(device_of(*model_))));
}

torch::Tensor DualEncoderAdapter::encode_texts(const torch::Tensor& tokens) {
  check_token_batch(tokens, context_length_, "DualEncoderAdapter::encode_texts");
  InferenceScope scope(*model_);
  return to_output(model_->encode_text(tokens.to(device_of(*model_))));
}

// ---- ChineseClipEncoder -------------------------------------------------------------------------

ChineseClipEncoder::ChineseClipEncoder(ChineseClip model, data::Tokenizer tokenizer,
                                       int context_length, bool normalize)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      context_length_(context_length),
      normalize_(normalize) {
  if (!model_) throw std::invalid_argument("ChineseClipEncoder: no model");
  const auto& text = model_->config().text;
  if (context_length_ <= 0 || context_length_ > text.max_position_embeddings) {
    throw std::invalid_argument(
        fmt::format("ChineseClipEncoder: context length {} must be in 1..{} "
                    "(text_max_position_embeddings)",
                    context_length_, text.max_position_embeddings));
  }
  if (tokenizer_.vocab().size() != text.vocab_size) {
    throw std::invalid_argument(
        fmt::format("ChineseClipEncoder: the vocabulary has {} tokens, the text config's "
                    "vocab_size is {}",
                    tokenizer_.vocab().size(), text.vocab_size));
  }
}

torch::Tensor ChineseClipEncoder::encode_images(const torch::Tensor& images) {
  check_image_batch(images, image_resolution(), "ChineseClipEncoder::encode_images");
  InferenceScope scope(*model_);
  auto features = model_->encode_image(images.to(device_of(*model_)));
  if (normalize_) features = F::normalize(features, F::NormalizeFuncOptions().dim(1));
  return to_output(features);
}

torch::Tensor ChineseClipEncoder::encode_texts(const torch::Tensor& tokens) {
  check_token_batch(tokens, context_length_, "ChineseClipEncoder::encode_texts");
  InferenceScope scope(*model_);
  auto features = model_->encode_text(tokens.to(device_of(*model_)), tokenizer_.vocab().pad_id());
  if (normalize_) features = F::normalize(features, F::NormalizeFuncOptions().dim(1));
  return to_output(features);
}

ImportedChineseClip load_imported_chinese_clip(const std::string& vision_config,
                                               const std::string& text_config,
                                               const std::string& weights,
                                               const std::string& vocab_path) {
  auto ends_with = [&](const char* suffix) {
    const std::string tail(suffix);
    return weights.size() >= tail.size() &&
           weights.compare(weights.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (ends_with(".pt") || ends_with(".pth")) {
    throw std::invalid_argument(fmt::format(
        "{}: LibTorch cannot read PyTorch's pickled checkpoints; convert it first with\n"
        "  python3 launch/convert_chinese_clip.py {} model.safetensors",
        weights, weights));
  }
  const auto config = ChineseClipConfig::from_json_files(vision_config, text_config);
  ImportedChineseClip imported{ChineseClip(config), data::Vocab::load(vocab_path)};
  if (imported.vocab.size() != config.text.vocab_size) {
    throw std::invalid_argument(fmt::format("{} has {} tokens, but {} says vocab_size {}",
                                            vocab_path, imported.vocab.size(), text_config,
                                            config.text.vocab_size));
  }
  load_chinese_clip_state(imported.model, data::read_safetensors(weights).tensors, weights);
  imported.model->eval();
  return imported;
}

}  // namespace shopclip
