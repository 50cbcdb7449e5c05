#include "core/train/rerank_loss.h"

#include <limits>
#include <stdexcept>

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include "core/model/reranker.h"

namespace shopclip {
namespace {

// For each local row, the most similar column that is not excluded, and whether one exists.
// similarity [b, B]; exclude bool [b, B].
std::pair<torch::Tensor, torch::Tensor> hardest(const torch::Tensor& similarity,
                                                const torch::Tensor& exclude) {
  const auto scores = similarity.masked_fill(exclude, -std::numeric_limits<float>::infinity());
  auto [best, index] = scores.max(1);
  return {index, best.isfinite()};
}

}  // namespace

RerankPairs rerank_training_pairs(const ContrastiveBatch& batch) {
  torch::NoGradGuard no_grad;
  const auto b = batch.local_images.size(0), global = batch.all_images.size(0);
  const auto device = batch.local_images.device();
  const auto rows = torch::arange(batch.offset, batch.offset + b,
                                  torch::TensorOptions().dtype(torch::kLong).device(device));
  // relevant[i][j]: text j answers image i. The local rows' own pairs are excluded too.
  auto relevant = batch.relevant.defined()
                      ? batch.relevant.to(device)
                      : torch::zeros({global, global},
                                     torch::TensorOptions().dtype(torch::kBool).device(device));
  auto self = torch::zeros({b, global}, relevant.options());
  self.index_put_({torch::arange(b, rows.options()), rows}, true);
  // For local text g: images i with relevant[i][g]; for local image g: texts j with relevant[g][j].
  const auto text_exclude = relevant.index_select(1, rows).t().logical_or(self);
  const auto image_exclude = relevant.index_select(0, rows).logical_or(self);
  const auto [image_for_text, text_has] =
      hardest(torch::matmul(batch.local_texts, batch.all_images.t()), text_exclude);
  const auto [text_for_image, image_has] =
      hardest(torch::matmul(batch.local_images, batch.all_texts.t()), image_exclude);
  const auto negatives_of_texts = rows.masked_select(text_has);
  const auto negatives_of_images = rows.masked_select(image_has);
  RerankPairs pairs;
  pairs.texts = torch::cat({rows, negatives_of_texts, text_for_image.masked_select(image_has)});
  pairs.images = torch::cat({rows, image_for_text.masked_select(text_has), negatives_of_images});
  auto labels = torch::zeros({pairs.texts.size(0)}, batch.local_images.options());
  labels.narrow(0, 0, b).fill_(1.0);
  pairs.labels = labels;
  return pairs;
}

torch::Tensor rerank_matching_loss(const ContrastiveBatch& batch, RerankerImpl& reranker) {
  const auto& tokens = batch.tokens;
  if (!tokens.defined()) {
    throw std::invalid_argument(
        "rerank loss: the batch carries no token features (the step computes them only with "
        "train.rerank_weight > 0 and without train.micro_batch)");
  }
  const auto pairs = rerank_training_pairs(batch);
  const auto logits = reranker.forward(tokens.all_texts.index_select(0, pairs.texts),
                                       tokens.all_padding.index_select(0, pairs.texts),
                                       tokens.all_images.index_select(0, pairs.images));
  namespace F = torch::nn::functional;
  const double global = static_cast<double>(batch.all_images.size(0));
  return F::binary_cross_entropy_with_logits(
             logits, pairs.labels,
             F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum)) /
         (3.0 * global);
}

}  // namespace shopclip
