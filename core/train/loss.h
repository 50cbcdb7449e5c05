#pragma once
// Contrastive losses over a batch of (image, text) pairs, for one process or for a global batch
// split across ranks.
//
// Row i of the global batch is the pair (image i, text i). With R ranks, rank r holds rows
// [offset, offset + b) and sees every rank's embeddings through an all-gather with gradient
// (dist/autograd.h). Every loss below returns this rank's share: the shares summed over ranks
// equal the single-process loss of the global batch, and so do the gradients once parameter
// gradients are summed over ranks.
//
// Cost per rank (B global rows, b = B / R local rows, D dims):
//   local mode: logits 2 x [b, B]  -> memory O(bB), compute 2bBD
//   full mode:  logits [B, B]      -> memory O(B^2), compute B^2 D (every rank repeats it)

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace shopclip {

// The towers' token features of a batch, for the learned reranker's loss
// (core/train/rerank_loss.h); the same row layout as ContrastiveBatch's embeddings.
struct TokenFeatures {
  torch::Tensor local_images;   // float [b, T, C_image] image tokens, this rank's rows
  torch::Tensor local_texts;    // float [b, L, W_text] text token states
  torch::Tensor local_padding;  // bool [b, L], true at padding positions
  torch::Tensor all_images;     // [B, T, C_image], every rank's rows in rank order (gathered)
  torch::Tensor all_texts;      // [B, L, W_text]
  torch::Tensor all_padding;    // [B, L]

  bool defined() const { return local_images.defined(); }
};

struct ContrastiveBatch {
  torch::Tensor local_images;  // float [b, D], unit norm, this rank's rows
  torch::Tensor local_texts;   // float [b, D]
  torch::Tensor all_images;    // float [B, D], every rank's rows in rank order (gathered)
  torch::Tensor all_texts;     // float [B, D]
  std::int64_t offset = 0;     // global row of local row 0
  // bool [B, B] or undefined: relevant[i][j] = text j is also a right answer for image i. Such
  // pairs are never each other's negatives. The diagonal is ignored.
  torch::Tensor relevant;
  // Only when the learned reranker trains (train.rerank_weight > 0), else undefined.
  TokenFeatures tokens;

  // The single-process case: the local rows are the whole batch.
  static ContrastiveBatch whole(const torch::Tensor& images, const torch::Tensor& texts,
                                const torch::Tensor& relevant);
};

// Symmetric InfoNCE, local mode: this rank's images against all texts and its texts against all
// images; (sum of both cross-entropies over local rows) / 2B.
torch::Tensor info_nce_local(const ContrastiveBatch& batch, const torch::Tensor& logit_scale);

// Symmetric InfoNCE, full mode: every rank computes the whole B x B loss and returns it divided
// by world_size.
torch::Tensor info_nce_full(const ContrastiveBatch& batch, const torch::Tensor& logit_scale,
                            int world_size);

// VSE++ max-violation triplet loss on cosine similarities: for each local image the hardest
// non-relevant text of the global batch, for each local text the hardest non-relevant image;
// (sum over local rows of relu(margin - s(pos) + s(hardest negative)), both directions) / 2B.
torch::Tensor hardest_negative_triplet(const ContrastiveBatch& batch, double margin);

// Single-process symmetric InfoNCE: the mean over rows of (image->text CE + text->image CE) / 2.
// ignore: bool [B, B] as ContrastiveBatch::relevant, or undefined.
torch::Tensor info_nce_loss(const torch::Tensor& image_emb, const torch::Tensor& text_emb,
                            const torch::Tensor& logit_scale, const torch::Tensor& ignore);

// ignore[i][j] = (i != j) && (text_ids[i] == text_ids[j] || image_ids[i] == image_ids[j]).
// Returns bool [B, B] on CPU.
torch::Tensor shared_id_mask(const std::vector<std::int64_t>& text_ids,
                             const std::vector<std::int64_t>& image_ids);

}  // namespace shopclip
