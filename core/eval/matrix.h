#pragma once
// Small checks and kernels shared by the code that works on embedding matrices (predictions,
// fusion, re-scoring).

#include <cstdint>

#include <torch/types.h>

namespace shopclip {

// Throws std::invalid_argument "<who>: <what> must be a contiguous float32 [rows, D] CPU tensor"
// unless `t` is exactly that.
void check_embedding_matrix(const torch::Tensor& t, const char* who, const char* what);

// <a, b> over dim floats, summed in float (the order FAISS's exact search does not promise, so
// re-scorers compare these values with each other, never with an index's scores).
inline float inner_product(const float* a, const float* b, std::int64_t dim) {
  float sum = 0;
  for (std::int64_t i = 0; i < dim; ++i)
    sum += a[i] * b[i];
  return sum;
}

}  // namespace shopclip
