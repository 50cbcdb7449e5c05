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

torch::Tensor trim_trailing_padding(const torch::Tensor& tokens, std::int64_t pad_id) {
  if (tokens.size(0) == 0 || tokens.size(1) <= 1) return tokens;
  // Column j (counted from 1) where some row holds a token, 0 where all rows are padding; the
  // largest is the length to keep.
  const auto used = tokens.ne(pad_id).any(0);
  const auto columns = torch::arange(1, tokens.size(1) + 1, tokens.options());
  const std::int64_t length = std::max<std::int64_t>(
      1, columns.masked_fill(used.logical_not(), 0).max().item<std::int64_t>());
  return length == tokens.size(1) ? tokens : tokens.slice(1, 0, length);
}

}  // namespace shopclip
