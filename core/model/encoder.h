#pragma once
// Encoder: the one seam between "a model" and everything that only needs embeddings from it
// (evaluation, `shopclip encode`, and later ensembles, teachers or rerankers). Whoever encodes
// holds an Encoder& passed explicitly; nothing downstream knows which model is behind it.
//
// Inputs are what shopclip's data layer produces, so one batch of pixels or tokens can be fed to
// any implementation:
//   images  float32 [B, 3, R, R], R = image_resolution(), RGB scaled to [0, 1] then normalised
//           with the CLIP mean and std (data::normalize_pixels); on any device (callers pass CPU
//           tensors; the implementation moves them to where its weights are)
//   tokens  int64 [B, L], L = context_length(), made by tokenizer().encode(text, L): [CLS] first,
//           [SEP], padded with the vocabulary's [PAD] id; on any device, as images
// Outputs: float32 [B, D], D = dim(), contiguous, on the CPU, without gradient; unit L2 norm per
// row when normalized(), raw otherwise (cosine-similarity users normalise them themselves).
// Encoding runs in inference mode: an implementation puts its modules in evaluation mode for the
// call and restores their training flags afterwards, so it may be called between training steps.
// B may be 0. Implementations throw std::invalid_argument for inputs of another shape or dtype.
// Not thread-safe: one caller at a time.
//
// An ensemble, a teacher or a reranker is one more implementation. Members of an ensemble must
// share the input contract (resolution, tokenizer, context length), since the caller makes one
// pixel batch and one token batch for all of them.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "data/tokenizer.h"

namespace shopclip {

class Encoder {
 public:
  virtual ~Encoder() = default;

  // float32 [B, 3, R, R] (see above) -> float32 [B, D] on the CPU.
  virtual torch::Tensor encode_images(const torch::Tensor& images) = 0;
  // int64 [B, L] (see above) -> float32 [B, D] on the CPU.
  virtual torch::Tensor encode_texts(const torch::Tensor& tokens) = 0;

  // D, the width of both outputs.
  virtual std::int64_t dim() const = 0;
  // Whether every output row has unit L2 norm (inner product = cosine similarity).
  virtual bool normalized() const = 0;
  // R: images must be prepared (decoded, resized) at this resolution.
  virtual int image_resolution() const = 0;
  // L and the tokenizer that make its token batches.
  virtual int context_length() const = 0;
  virtual const data::Tokenizer& tokenizer() const = 0;
};

// The token batch `encoder` expects for texts: int64 [texts.size(), context_length()] on the CPU,
// made with its tokenizer.
inline torch::Tensor tokenize(const Encoder& encoder, const std::vector<std::string>& texts) {
  return encoder.tokenizer().encode_batch(texts, encoder.context_length());
}

// Checks a batch against the contract above; throws std::invalid_argument naming `who` and the
// expected shape. For implementations.
void check_image_batch(const torch::Tensor& images, int resolution, const char* who);
void check_token_batch(const torch::Tensor& tokens, int context_length, const char* who);

// tokens int64 [B, L] without the trailing columns that hold pad_id in every row: a view
// [B, L'], L' = 1 + the last column where any row holds another token (at least 1; tokens itself
// when nothing is trimmed or B = 0). A tower that masks padding keys out of attention, counts
// positions from 0 and pools the [CLS] row gives the same embeddings for either, and skips the
// padded columns' work: a batch costs its longest query, not the context length. On a GPU the
// length is read back to the host (one synchronisation).
torch::Tensor trim_trailing_padding(const torch::Tensor& tokens, std::int64_t pad_id);

}  // namespace shopclip
