#pragma once
// The Encoder implementations for the models shopclip has (core/model/encoder.h states the
// contract: input shapes, devices, output norms).

#include <cstdint>
#include <string>

#include <torch/types.h>

#include "core/model/chinese_clip.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoder.h"
#include "data/tokenizer.h"

namespace shopclip {

// shopclip's DualEncoder (its own towers or Chinese-CLIP's inside it): unit-norm embeddings of
// model.embed_dim. The model handle shares its weights with the caller's (a DualEncoder is a
// shared pointer), so a trainer can keep one adapter, or make one per evaluation, and always
// encode with the current weights; inputs go to the device of the model's first parameter.
class DualEncoderAdapter final : public Encoder {
 public:
  // tokenizer: the model's vocabulary (copied; cheap next to an evaluation);
  // context_length: model.text.context_length.
  DualEncoderAdapter(DualEncoder model, data::Tokenizer tokenizer, int context_length);

  torch::Tensor encode_images(const torch::Tensor& images) override;
  torch::Tensor encode_texts(const torch::Tensor& tokens) override;
  std::int64_t dim() const override { return model_->config().embed_dim; }
  bool normalized() const override { return true; }
  int image_resolution() const override { return model_->config().image.resolution; }
  int context_length() const override { return context_length_; }
  const data::Tokenizer& tokenizer() const override { return tokenizer_; }

  DualEncoder& model() { return model_; }

 private:
  DualEncoder model_;
  data::Tokenizer tokenizer_;
  int context_length_;
};

// An imported Chinese-CLIP model: the raw projections (what Chinese-CLIP's encode_image and
// encode_text return), or unit-norm ones with `normalize` (what its extract_features writes).
// Padding is the tokenizer's [PAD] id. Inputs go to the device of the model's first parameter.
class ChineseClipEncoder final : public Encoder {
 public:
  // context_length: at most the text config's max_position_embeddings (std::invalid_argument
  // otherwise). The vocabulary must have the text config's vocab_size tokens (idem).
  ChineseClipEncoder(ChineseClip model, data::Tokenizer tokenizer, int context_length,
                     bool normalize = false);

  torch::Tensor encode_images(const torch::Tensor& images) override;
  torch::Tensor encode_texts(const torch::Tensor& tokens) override;
  std::int64_t dim() const override { return model_->config().vision.embed_dim; }
  bool normalized() const override { return normalize_; }
  int image_resolution() const override { return model_->config().vision.image_resolution; }
  int context_length() const override { return context_length_; }
  const data::Tokenizer& tokenizer() const override { return tokenizer_; }

 private:
  ChineseClip model_;
  data::Tokenizer tokenizer_;
  int context_length_;
  bool normalize_;
};

// An imported Chinese-CLIP model read from its files: the two JSON configs, the weights converted
// to safetensors (launch/convert_chinese_clip.py) and its vocab.txt. On the CPU, in evaluation
// mode. Throws std::invalid_argument when the vocabulary's size is not the text config's
// vocab_size or the weights are a PyTorch pickle (.pt/.pth: convert them first), and
// std::runtime_error / DataError naming the file for unreadable or mismatched files.
struct ImportedChineseClip {
  ChineseClip model{nullptr};
  data::Vocab vocab;
};
ImportedChineseClip load_imported_chinese_clip(const std::string& vision_config,
                                               const std::string& text_config,
                                               const std::string& weights,
                                               const std::string& vocab);

}  // namespace shopclip
