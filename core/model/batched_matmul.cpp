#include "core/model/batched_matmul.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/torch.h>

namespace shopclip {
namespace {

// Fortran BLAS sgemm (column-major), as LibTorch itself declares and calls it.
using Sgemm = void (*)(const char* transa, const char* transb, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c, const int* ldc);

// Looked up at run time in whatever BLAS LibTorch loaded (the executables do not link one
// directly when the OpenMP OpenBLAS is missing).
Sgemm blas_sgemm() {
  static const Sgemm sgemm = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return sgemm;
}

// How sgemm reads one operand: a row-major [rows, cols] matrix with element strides
// (row_stride, col_stride), given to sgemm as the transpose it needs ([cols, rows] column-major).
struct Operand {
  char trans = 'N';
  int ld = 0;
  bool readable = false;  // false: the strides fit no BLAS layout (copy it first)
};

Operand transposed_operand(std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
                           std::int64_t col_stride) {
  // Adjacent columns: the memory, read column-major, is the transpose with ld = row_stride.
  if (col_stride == 1 || cols == 1) {
    const std::int64_t ld = rows == 1 ? std::max<std::int64_t>(cols, 1) : row_stride;
    if (ld >= std::max<std::int64_t>(cols, 1)) return {'N', static_cast<int>(ld), true};
  }
  // Adjacent rows: the memory, read column-major, is the matrix itself; 'T' transposes it.
  if (row_stride == 1 || rows == 1) {
    const std::int64_t ld = cols == 1 ? std::max<std::int64_t>(rows, 1) : col_stride;
    if (ld >= std::max<std::int64_t>(rows, 1)) return {'T', static_cast<int>(ld), true};
  }
  return {};
}

Operand operand_of(const torch::Tensor& t) {
  const auto d = t.dim();
  return transposed_operand(t.size(d - 2), t.size(d - 1), t.stride(d - 2), t.stride(d - 1));
}

// Element offsets of each matrix of t [..., r, c] in its batch, in row-major batch order.
std::vector<std::int64_t> matrix_offsets(const torch::Tensor& t) {
  const auto batch_dims = t.dim() - 2;
  std::int64_t count = 1;
  for (std::int64_t d = 0; d < batch_dims; ++d)
    count *= t.size(d);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(count));
  std::vector<std::int64_t> index(static_cast<std::size_t>(batch_dims), 0);
  for (std::int64_t i = 0; i < count; ++i) {
    std::int64_t offset = 0;
    for (std::int64_t d = 0; d < batch_dims; ++d)
      offset += index[d] * t.stride(d);
    offsets[static_cast<std::size_t>(i)] = offset;
    for (auto d = batch_dims - 1; d >= 0; --d) {  // next index, last dimension fastest
      if (++index[d] < t.size(d)) break;
      index[d] = 0;
    }
  }
  return offsets;
}

// alpha * a @ b by one sgemm per matrix (the caller checked batched_matmul_is_direct).
torch::Tensor direct_product(torch::Tensor a, torch::Tensor b, double alpha) {
  Operand first = operand_of(b), second = operand_of(a);
  if (!first.readable) {
    b = b.contiguous();
    first = operand_of(b);
  }
  if (!second.readable) {
    a = a.contiguous();
    second = operand_of(a);
  }
  const auto d = a.dim();
  const int m = static_cast<int>(a.size(d - 2)), k = static_cast<int>(a.size(d - 1)),
            n = static_cast<int>(b.size(d - 1));
  std::vector<std::int64_t> out_sizes(a.sizes().begin(), a.sizes().end());
  out_sizes[d - 1] = n;
  auto out = torch::empty(out_sizes, a.options());
  const auto a_offsets = matrix_offsets(a), b_offsets = matrix_offsets(b);
  const float* a_data = a.data_ptr<float>();
  const float* b_data = b.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  const float scale = static_cast<float>(alpha), zero = 0.0f;
  const Sgemm sgemm = blas_sgemm();
  // C = A B row-major is C^T = B^T A^T column-major: sgemm's first operand is B^T [n, k], its
  // second A^T [k, m], its result C^T [n, m] with ld = n (C contiguous).
  at::parallel_for(
      0, static_cast<std::int64_t>(a_offsets.size()), 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
          sgemm(&first.trans, &second.trans, &n, &m, &k, &scale, b_data + b_offsets[i], &first.ld,
                a_data + a_offsets[i], &second.ld, &zero, out_data + i * m * n, &n);
        }
      });
  return out;
}

class BatchedMatmulFunction : public torch::autograd::Function<BatchedMatmulFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a,
                               const torch::Tensor& b, double alpha) {
    ctx->save_for_backward({a, b});
    ctx->saved_data["alpha"] = alpha;
    return direct_product(a, b, alpha);
  }

  // d(alpha A B)/dA = alpha G B^T, /dB = alpha A^T G; the transposes are views. Once
  // differentiable: the backward's products build no graph of their own.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& a = saved[0];
    const auto& b = saved[1];
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const auto& grad = grads[0];
    torch::Tensor grad_a, grad_b;
    if (ctx->needs_input_grad(0)) grad_a = direct_product(grad, b.transpose(-2, -1), alpha);
    if (ctx->needs_input_grad(1)) grad_b = direct_product(a.transpose(-2, -1), grad, alpha);
    return {grad_a, grad_b, torch::Tensor()};
  }
};

}  // namespace

bool batched_matmul_is_direct(const torch::Tensor& a, const torch::Tensor& b) {
  if (blas_sgemm() == nullptr) return false;
  if (!a.device().is_cpu() || !b.device().is_cpu()) return false;
  if (a.scalar_type() != torch::kFloat32 || b.scalar_type() != torch::kFloat32) return false;
  if (a.dim() < 3 || a.dim() != b.dim()) return false;
  const auto d = a.dim();
  for (std::int64_t i = 0; i < d - 2; ++i)
    if (a.size(i) != b.size(i)) return false;        // broadcasting: torch::matmul
  if (a.size(d - 1) != b.size(d - 2)) return false;  // torch::matmul names the mismatch
  if (a.numel() == 0 || b.numel() == 0) return false;
  constexpr std::int64_t kIntMax = 2147483647;
  return a.size(d - 2) < kIntMax && a.size(d - 1) < kIntMax && b.size(d - 1) < kIntMax;
}

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, double alpha) {
  if (!batched_matmul_is_direct(a, b)) {
    auto product = torch::matmul(a, b);
    return alpha == 1.0 ? product : product * alpha;
  }
  return BatchedMatmulFunction::apply(a, b, alpha);
}

}  // namespace shopclip
