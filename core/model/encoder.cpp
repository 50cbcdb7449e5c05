#include "core/model/encoder.h"

#include <stdexcept>

#include <fmt/format.h>
#include <torch/torch.h>

namespace shopclip {

void check_image_batch(const torch::Tensor& images, int resolution, const char* who) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != 3 ||
      images.size(2) != resolution || images.size(3) != resolution ||
      images.scalar_type() != torch::kFloat32) {
    throw std::invalid_argument(fmt::format(
        "{}: images must be float32 [B, 3, {}, {}] (CLIP-normalised pixels), got {} {}", who,
        resolution, resolution, images.defined() ? c10::toString(images.scalar_type()) : "none",
        images.defined() ? c10::str(images.sizes()) : "[]"));
  }
}

void check_token_batch(const torch::Tensor& tokens, int context_length, const char* who) {
  if (!tokens.defined() || tokens.dim() != 2 || tokens.size(1) != context_length ||
      tokens.scalar_type() != torch::kLong) {
    throw std::invalid_argument(fmt::format(
        "{}: tokens must be int64 [B, {}] (the encoder's context length), got {} {}", who,
        context_length, tokens.defined() ? c10::toString(tokens.scalar_type()) : "none",
        tokens.defined() ? c10::str(tokens.sizes()) : "[]"));
  }
}

}  // namespace shopclip
