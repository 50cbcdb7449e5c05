#include "core/eval/matrix.h"

#include <stdexcept>

#include <fmt/format.h>

namespace shopclip {

void check_embedding_matrix(const torch::Tensor& t, const char* who, const char* what) {
  if (!t.defined() || t.dim() != 2 || t.scalar_type() != torch::kFloat32 || !t.device().is_cpu() ||
      !t.is_contiguous()) {
    throw std::invalid_argument(
        fmt::format("{}: {} must be a contiguous float32 [rows, D] CPU tensor, got {} {}", who,
                    what, t.defined() ? c10::toString(t.scalar_type()) : "none",
                    t.defined() ? c10::str(t.sizes()) : "[]"));
  }
}

}  // namespace shopclip
