#include "core/train/loss.h"

#include <limits>

#include <fmt/format.h>
#include <torch/nn/functional/loss.h>

namespace shopclip {
namespace {

namespace F = torch::nn::functional;

void check_batch(const ContrastiveBatch& batch) {
  const auto& li = batch.local_images;
  TORCH_CHECK(li.dim() == 2 && li.sizes() == batch.local_texts.sizes(),
              "contrastive loss: local images and texts must both be [b, D]; got ", li.sizes(),
              " and ", batch.local_texts.sizes());
  TORCH_CHECK(batch.all_images.dim() == 2 && batch.all_images.sizes() == batch.all_texts.sizes() &&
                  batch.all_images.size(1) == li.size(1),
              "contrastive loss: gathered images and texts must both be [B, D]; got ",
              batch.all_images.sizes(), " and ", batch.all_texts.sizes());
  TORCH_CHECK(batch.offset >= 0 && batch.offset + li.size(0) <= batch.all_images.size(0),
              "contrastive loss: local rows [", batch.offset, ", ", batch.offset + li.size(0),
              ") outside the global batch of ", batch.all_images.size(0));
  if (batch.relevant.defined()) {
    const auto rows = batch.all_images.size(0);
    TORCH_CHECK(batch.relevant.dim() == 2 && batch.relevant.size(0) == rows &&
                    batch.relevant.size(1) == rows,
                "contrastive loss: relevant must be [B, B] with B = ", rows, "; got ",
                batch.relevant.sizes());
  }
}

// Masks for the local rows: [b, B] of entries to exclude, the rows' own positives never excluded.
// image_rows[k][j]: text j relevant to local image k; text_rows[k][i]: image i answers local text
// k.
std::pair<torch::Tensor, torch::Tensor> local_masks(const ContrastiveBatch& batch,
                                                    const torch::Tensor& targets) {
  const auto b = batch.local_images.size(0);
  const auto device = batch.local_images.device();
  if (!batch.relevant.defined()) return {};
  auto relevant = batch.relevant.to(device);
  auto image_rows = relevant.narrow(0, batch.offset, b).clone();
  auto text_rows = relevant.narrow(1, batch.offset, b).t().clone();
  const auto rows = torch::arange(b, targets.options());
  image_rows.index_put_({rows, targets}, false);
  text_rows.index_put_({rows, targets}, false);
  return {image_rows, text_rows};
}

torch::Tensor masked(const torch::Tensor& scores, const torch::Tensor& exclude) {
  if (!exclude.defined()) return scores;
  return scores.masked_fill(exclude, -std::numeric_limits<float>::infinity());
}

}  // namespace

ContrastiveBatch ContrastiveBatch::whole(const torch::Tensor& images, const torch::Tensor& texts,
                                         const torch::Tensor& relevant) {
  return {images, texts, images, texts, 0, relevant, {}};
}

torch::Tensor info_nce_local(const ContrastiveBatch& batch, const torch::Tensor& logit_scale) {
  check_batch(batch);
  const auto b = batch.local_images.size(0);
  const double global = static_cast<double>(batch.all_images.size(0));
  const auto targets =
      torch::arange(batch.offset, batch.offset + b,
                    torch::TensorOptions().dtype(torch::kLong).device(batch.local_images.device()));
  const auto [image_mask, text_mask] = local_masks(batch, targets);
  const auto image_to_text =
      masked(logit_scale * torch::matmul(batch.local_images, batch.all_texts.t()), image_mask);
  const auto text_to_image =
      masked(logit_scale * torch::matmul(batch.local_texts, batch.all_images.t()), text_mask);
  const auto sum = F::CrossEntropyFuncOptions().reduction(torch::kSum);
  return (F::cross_entropy(image_to_text, targets, sum) +
          F::cross_entropy(text_to_image, targets, sum)) /
         (2.0 * global);
}

torch::Tensor info_nce_full(const ContrastiveBatch& batch, const torch::Tensor& logit_scale,
                            int world_size) {
  check_batch(batch);
  const ContrastiveBatch everything =
      ContrastiveBatch::whole(batch.all_images, batch.all_texts, batch.relevant);
  return info_nce_local(everything, logit_scale) / static_cast<double>(world_size);
}

torch::Tensor hardest_negative_triplet(const ContrastiveBatch& batch, double margin) {
  check_batch(batch);
  const auto b = batch.local_images.size(0);
  const double global = static_cast<double>(batch.all_images.size(0));
  const auto options =
      torch::TensorOptions().dtype(torch::kLong).device(batch.local_images.device());
  const auto targets = torch::arange(batch.offset, batch.offset + b, options);
  const auto rows = torch::arange(b, options);
  auto [image_mask, text_mask] = local_masks(batch, targets);
  auto hinge = [&](const torch::Tensor& similarity, torch::Tensor exclude) {
    // The positive itself is never a negative.
    auto not_negative = exclude.defined()
                            ? exclude.clone()
                            : torch::zeros(similarity.sizes(), options.dtype(torch::kBool));
    not_negative.index_put_({rows, targets}, true);
    const auto positive = similarity.index({rows, targets});
    const auto hardest = std::get<0>(masked(similarity, not_negative).max(1));
    return torch::relu(margin - positive + hardest).sum();
  };
  const auto image_to_text = torch::matmul(batch.local_images, batch.all_texts.t());
  const auto text_to_image = torch::matmul(batch.local_texts, batch.all_images.t());
  return (hinge(image_to_text, image_mask) + hinge(text_to_image, text_mask)) / (2.0 * global);
}

torch::Tensor info_nce_loss(const torch::Tensor& image_emb, const torch::Tensor& text_emb,
                            const torch::Tensor& logit_scale, const torch::Tensor& ignore) {
  return info_nce_local(ContrastiveBatch::whole(image_emb, text_emb, ignore), logit_scale);
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
