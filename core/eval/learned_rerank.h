#pragma once
// The learned reranker at search time, the second stage of a two-stage retrieval: the pool's
// image tokens are computed once (they depend on the pool and the model only, so callers cache
// them: `shopclip rerank --method learned` keeps them in an fp16 HDF5 file beside the run), then
// each query's token states and its K stage-1 candidates' tokens go through one reranker forward.
//
// model: a DualEncoder with a reranker (model.reranker.layers > 0), in evaluation mode, on any
// device (inputs go there, results come back to the CPU).
// Pool tokens: float16 [N, T, C] on the CPU (T = the pooled grid, C = the image tower's width).
// candidates: [Q, K] row-major pool rows (stage 1).

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "core/model/dual_encoder.h"
#include "data/shards.h"
#include "dist/communicator.h"

namespace shopclip {

// The reranker's image tokens of rows [begin, end) of a prepared store (end < 0: to the last
// row), batch_size images per forward: float16 [end - begin, T, C]. Throws std::invalid_argument
// when the model has no reranker or the store was prepared at another resolution.
torch::Tensor encode_pool_tokens(DualEncoder& model, const data::ImageStore& images, int batch_size,
                                 std::int64_t begin = 0, std::int64_t end = -1);

// Each rank encodes its rank_slice of the store; every rank receives all rows in store order
// (equal to encode_pool_tokens on one process). comm takes CPU tensors (MPI or single process).
torch::Tensor encode_pool_tokens_across_ranks(DualEncoder& model, const data::ImageStore& images,
                                              int batch_size, dist::Communicator& comm);

// The reranker's match logits float32 [Q, K] of each query with its K candidates. tokens: int64
// [Q, L] (the model's tokenizer at its context length). queries_per_forward: how many queries'
// pairs share one reranker forward (1 = what a search box does per request).
torch::Tensor rerank_logits(DualEncoder& model, const torch::Tensor& tokens,
                            const torch::Tensor& pool_tokens,
                            const std::vector<std::int64_t>& candidates, int k,
                            int queries_per_forward = 1);

}  // namespace shopclip
