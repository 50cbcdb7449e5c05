#include "core/loss.h"

#include <limits>

#include <fmt/format.h>
#include <torch/nn/functional/loss.h>

namespace shopclip {

torch::Tensor info_nce_loss(const torch::Tensor& image_emb, const torch::Tensor& text_emb,
                            const torch::Tensor& logit_scale, const torch::Tensor& ignore) {
  TORCH_CHECK(image_emb.dim() == 2 && image_emb.sizes() == text_emb.sizes(),
              "info_nce_loss: image and text embeddings must both be [B, D]; got ",
              image_emb.sizes(), " and ", text_emb.sizes());
  const auto batch = image_emb.size(0);
  auto logits = logit_scale * torch::matmul(image_emb, text_emb.t());  // [image, text]
  if (ignore.defined()) {
    TORCH_CHECK(ignore.sizes() == logits.sizes(), "info_nce_loss: ignore must be [B, B]");
    auto mask =
        ignore.to(logits.device())
            .logical_and(
                torch::eye(batch,
                           torch::TensorOptions().dtype(torch::kBool).device(logits.device()))
                    .logical_not());
    logits = logits.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  const auto targets =
      torch::arange(batch, torch::TensorOptions().dtype(torch::kLong).device(logits.device()));
  namespace F = torch::nn::functional;
  const auto image_to_text = F::cross_entropy(logits, targets);
  const auto text_to_image = F::cross_entropy(logits.t(), targets);
  return (image_to_text + text_to_image) * 0.5;
}

torch::Tensor shared_id_mask(const std::vector<std::int64_t>& text_ids,
                             const std::vector<std::int64_t>& image_ids) {
  if (text_ids.size() != image_ids.size()) {
    throw std::invalid_argument(fmt::format("shared_id_mask: {} text ids but {} image ids",
                                            text_ids.size(), image_ids.size()));
  }
  const auto n = static_cast<std::int64_t>(text_ids.size());
  auto texts = torch::tensor(text_ids, torch::kLong),
       images = torch::tensor(image_ids, torch::kLong);
  auto mask = texts.unsqueeze(1)
                  .eq(texts.unsqueeze(0))
                  .logical_or(images.unsqueeze(1).eq(images.unsqueeze(0)));
  return mask.logical_and(torch::eye(n, torch::kBool).logical_not());
}

}  // namespace shopclip
