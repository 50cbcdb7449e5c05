#pragma once
// Embeddings through the Encoder seam (core/model/encoder.h), shared by evaluate_split,
// `shopclip encode` and `shopclip search`: pixels and texts batched into an Encoder, row
// normalisation, and the split of a pool across ranks with the gather that reassembles it.
// Every returned tensor is float32 [rows, encoder.dim()], contiguous, on the CPU, in input order.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "core/model/encoder.h"
#include "data/shards.h"
#include "dist/communicator.h"

namespace shopclip {

// uint8 [B, R, R, 3] RGB pixels as prep stores them (R = encoder.image_resolution()) ->
// embeddings [B, D]: CLIP-normalised (data::normalize_pixels), then encoded in one call.
// Throws std::invalid_argument when R differs from the encoder's resolution.
torch::Tensor encode_pixels(Encoder& encoder, const torch::Tensor& pixels);

// Rows [begin, end) of a prepared store (end < 0: to the last row), batch_size images per call.
// Throws std::invalid_argument when the store was prepared at another resolution.
torch::Tensor encode_images(Encoder& encoder, const data::ImageStore& images, int batch_size,
                            std::int64_t begin = 0, std::int64_t end = -1);

// Texts tokenized with the encoder's tokenizer at its context length, batch_size per call.
torch::Tensor encode_texts(Encoder& encoder, const std::vector<std::string>& texts, int batch_size);

// Each row scaled to unit L2 norm (a zero row stays zero): float32 [N, D] -> [N, D], contiguous.
// Inner products of such rows are cosine similarities, what every MUGE scorer ranks by.
torch::Tensor unit_rows(const torch::Tensor& rows);

// Rows [first, second) of rank `rank` when n rows are split into `world` contiguous slices as
// evenly as possible (rank order = row order).
std::pair<std::int64_t, std::int64_t> rank_slice(std::int64_t n, int rank, int world);

// The one gather of embeddings across ranks: every rank passes its slice (float32 [n_r, D] on
// the CPU; n_r may be 0) and receives all of them in rank order, [sum n_r, D]. comm must take
// CPU tensors (the MPI or single-process backend; evaluation does not use NCCL's).
torch::Tensor gather_embeddings(dist::Communicator& comm, const torch::Tensor& local);

// Each rank encodes its rank_slice of the store (or of the texts) and every rank receives all
// embeddings, in store (text) order: equal to encode_images / encode_texts on one process.
torch::Tensor encode_images_across_ranks(Encoder& encoder, const data::ImageStore& images,
                                         int batch_size, dist::Communicator& comm);
torch::Tensor encode_texts_across_ranks(Encoder& encoder, const std::vector<std::string>& texts,
                                        int batch_size, dist::Communicator& comm);

}  // namespace shopclip
