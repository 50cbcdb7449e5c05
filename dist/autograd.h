#pragma once
// Differentiable collectives, so a loss computed on gathered tensors back-propagates exactly into
// every rank's own inputs.
//
// If each rank r computes a loss L_r from the gathered/reduced tensor, these functions give each
// rank the gradient of the total L = sum_r L_r with respect to its own input. Summing parameter
// gradients over ranks (all_reduce, kSum) then yields exactly the single-process gradient of L.

#include <torch/types.h>

#include "dist/communicator.h"

namespace shopclip::dist {

// Forward: every rank's rows concatenated along dim 0 in rank order (sizes may differ).
// Backward: the incoming gradient summed over ranks (reduce-scatter), this rank's rows returned.
// `comm` must outlive the backward pass.
torch::Tensor all_gather_with_grad(Communicator& comm, const torch::Tensor& local);

// Forward: the sum over ranks (every rank gets the same result). Backward: the incoming gradient
// summed over ranks. For statistics shared across ranks (synchronised BatchNorm).
torch::Tensor all_reduce_sum_with_grad(Communicator& comm, const torch::Tensor& local);

}  // namespace shopclip::dist
