#pragma once
// Contrastive losses over a batch of (image, text) pairs.

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace shopclip {

// Symmetric InfoNCE (CLIP). Row i of the batch is the pair (image i, text i).
//   image_emb, text_emb: float [B, D], unit-norm, same device
//   logit_scale: 0-dim tensor (exp of the learnable log-scale)
//   ignore: bool [B, B] or undefined; ignore[i][j] (i != j) removes text j from image i's
//           negatives and image i from text j's negatives: set it where text j is also relevant to
//           image i (the two pairs share a text id or an image id, or the ground truth says so).
//           The diagonal is never ignored.
// Returns the mean over rows of (image->text CE + text->image CE) / 2, a 0-dim tensor.
torch::Tensor info_nce_loss(const torch::Tensor& image_emb, const torch::Tensor& text_emb,
                            const torch::Tensor& logit_scale, const torch::Tensor& ignore);

// ignore[i][j] = (i != j) && (text_ids[i] == text_ids[j] || image_ids[i] == image_ids[j]).
// Returns bool [B, B] on CPU.
torch::Tensor shared_id_mask(const std::vector<std::int64_t>& text_ids,
                             const std::vector<std::int64_t>& image_ids);

}  // namespace shopclip
