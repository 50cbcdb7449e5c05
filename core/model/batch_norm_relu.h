#pragma once
// Training-mode BatchNorm followed by ReLU, in fewer passes over memory, for the CNN tower on the
// CPU.
//
// bench_small's activations are ~125 MB per step at batch 256 (more than most CPUs' caches), and
// LibTorch 1.13's kernels pass over them separately: BatchNorm's forward reads its input three
// times (mean, variance, normalise) and writes once, ReLU reads and writes again; the backward
// pass reads and writes for ReLU, then reads twice for BatchNorm's sums and three times for its
// input gradient. Fused, the forward reads twice and writes once (one pass collects the sum and
// sum of squares, float partial sums per plane added up in double; one normalises and clamps) and
// the backward reads the input and the output gradient twice and writes once (the ReLU mask is
// recomputed from the input, so the output need not be kept for it): 8 passes instead of 14.

#include <torch/types.h>

namespace shopclip {

// Whether batch_norm_relu_train takes its fused path for x: a float32 CPU tensor [N, C, H, W],
// contiguous in the default layout or channels-last, with more than one value per channel. The
// passes follow the layout: planes of H * W values in the default one, rows of C channels in
// channels-last (vectorised across the channels); the output and gradient keep x's layout.
bool batch_norm_relu_is_fused(const torch::Tensor& x);

// relu(batch_norm(x)) in training mode with the batch's statistics: per channel c,
// y = max(0, (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c), var the biased variance over
// (N, H, W). running_mean and running_var [C] are updated in place as torch::batch_norm does
// (momentum-weighted, the running variance unbiased; the handles are updated in place, hence
// const). Differentiable in x, weight and bias [C].
// Inputs that batch_norm_relu_is_fused rejects take torch::batch_norm, then ReLU.
torch::Tensor batch_norm_relu_train(const torch::Tensor& x, const torch::Tensor& weight,
                                    const torch::Tensor& bias, const torch::Tensor& running_mean,
                                    const torch::Tensor& running_var, double momentum, double eps);

}  // namespace shopclip
