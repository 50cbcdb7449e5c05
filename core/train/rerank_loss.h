#pragma once
// The learned reranker's training loss: image-text matching (ALBEF/BLIP's ITM head) with hard
// negatives chosen by the dual encoder's own similarities on the global batch.
//
// Pairs contributed by this rank's rows (global row g = offset + k of local row k):
//   (text g, image g)        a match (label 1);
//   (text g, image i*)       a non-match: i* the image most similar to text g among those that
//                            are not relevant to it (batch.relevant, and never image g itself);
//   (text j*, image g)       a non-match: j* the text most similar to image g likewise.
// The choice uses the embeddings without gradient. When the mining sampler has placed mined
// negatives in the batch (train.mine_every), the hardest in-batch image is a stage-1 hard negative
// of the current dual encoder. A row with no non-relevant candidate contributes no non-match.
//
// Loss: binary cross-entropy with logits summed over the local pairs, divided by 3B (B = global
// rows), so the shares of all ranks sum to the single-process loss of the global batch; gradients
// reach the towers through the gathered token features (batch.tokens).

#include <torch/types.h>

#include "core/train/loss.h"

namespace shopclip {

class RerankerImpl;

// The local rows' pairs as global row indices into batch.tokens.all_* (int64 [P] each) and their
// labels (float [P], 1 = match), matches first, then the images' negatives, then the texts'.
struct RerankPairs {
  torch::Tensor texts, images, labels;
};
RerankPairs rerank_training_pairs(const ContrastiveBatch& batch);

// This rank's share of the matching loss (0-dim float). batch.tokens must be defined
// (std::invalid_argument otherwise).
torch::Tensor rerank_matching_loss(const ContrastiveBatch& batch, RerankerImpl& reranker);

}  // namespace shopclip
