#pragma once
// Many small matrix products at once, for attention on the CPU.
//
// LibTorch 1.13's CPU bmm, built without MKL (Debian's), loops over the batch and makes three
// tensor views (select) per matrix before each BLAS call: attention's B x heads products of
// 32 x 64 matrices spend far more time in that bookkeeping than in arithmetic (bench_small: 37k
// select calls per step; the ViT tower: 17 % of its step in select alone,
// experiments/results/cpu-speed-*.md). batched_matmul calls BLAS's sgemm once per matrix,
// straight on the tensors' memory (any strides whose last two dimensions form a BLAS matrix, so
// the permuted and transposed views of attention need no copies), in parallel over the batch.

#include <torch/types.h>

namespace shopclip {

// alpha * a @ b for a [..., m, k] and b [..., k, n] with the same leading (batch) sizes ->
// [..., m, n], contiguous. Differentiable in a and b (the backward pass uses the same kernel).
// float32 CPU tensors with at least 3 dimensions and a BLAS that exports sgemm_ take the fast
// path; anything else (other devices or types, broadcasting batch sizes, 2-D inputs) is
// alpha * torch::matmul(a, b).
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, double alpha = 1.0);

// Whether batched_matmul(a, b) takes the fast path.
bool batched_matmul_is_direct(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace shopclip
