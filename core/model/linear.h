#pragma once
// Linear layers whose float32 CPU products run on oneDNN's sgemm where that is the faster library.
//
// LibTorch 1.13's CPU linear layers call OpenBLAS (addmm / mm). For the text towers' shapes
// (rows = batch x tokens, in/out widths 256-1024) OpenBLAS reached 128-186 GFLOP/s on a 2-core
// AMD EPYC (Zen 4) VM against 187 for its square 2048 product, while oneDNN's sgemm (the library
// LibTorch already loads for its convolutions) ran the same shapes at 148-214
// (experiments/gemm_shapes.py and its record in experiments/results/). With AVX2 kernels only,
// oneDNN's products whose reduction runs over the rows (the weight gradients) were up to 2x
// slower than OpenBLAS's and training was slower, so the automatic choice takes oneDNN only where
// it runs AVX-512 kernels.
//
// The choice is process-wide, like the number of threads: the environment variable
// SHOPCLIP_CPU_GEMM (auto | openblas | onednn, read once) or set_cpu_gemm.

#include <string>

#include <torch/types.h>

namespace shopclip {

enum class CpuGemm {
  kAuto,      // oneDNN when this build has it and it runs AVX-512 kernels here, else OpenBLAS
  kOpenBlas,  // LibTorch's own products (whatever BLAS it loaded)
  kOneDnn,    // dnnl_sgemm
};

// "auto" | "openblas" | "onednn"; anything else throws std::invalid_argument naming `source`
// (the variable or key the text came from).
CpuGemm parse_cpu_gemm(const std::string& text, const std::string& source);
std::string cpu_gemm_name(CpuGemm gemm);

// Whether this build links oneDNN's C API (CMake option SHOPCLIP_ONEDNN_GEMM).
bool onednn_gemm_available();

// The ISA oneDNN dispatches to on this CPU (after ONEDNN_MAX_CPU_ISA), e.g. "avx512_core";
// "" without oneDNN.
std::string onednn_isa();

// Sets the library for every later linear(); kAuto resolves at once. kOneDnn without
// onednn_gemm_available() throws std::runtime_error.
void set_cpu_gemm(CpuGemm gemm);

// The library linear() uses now: kOpenBlas or kOneDnn (first call: SHOPCLIP_CPU_GEMM, default
// auto; a bad value throws std::invalid_argument naming the variable).
CpuGemm cpu_gemm();

// x [..., in] @ weight [out, in]^T + bias [out] -> [..., out] (bias may be undefined), as
// torch::nn::functional::linear, differentiable in all three. float32 CPU tensors outside
// autocast with cpu_gemm() == kOneDnn take oneDNN's sgemm forward and backward (the inputs and
// gradients are made contiguous where they are not); anything else is at::linear. The products
// show in operator profiles as "shopclip::onednn_sgemm".
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias);

// a [m, k] @ b [k, n] -> [m, n] (float32 CPU, any strides) on the given library (not kAuto),
// without autograd: the benchmark's square-product rate of each library.
torch::Tensor cpu_matrix_product(const torch::Tensor& a, const torch::Tensor& b, CpuGemm gemm);

}  // namespace shopclip
