#include "dist/communicator.h"

#include <stdexcept>

#include <fmt/format.h>

namespace shopclip::dist {

void SingleProcessCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp /*op*/) {
  TORCH_CHECK(tensor.is_contiguous(), "all_reduce needs a contiguous tensor");
}

torch::Tensor SingleProcessCommunicator::all_gather(const torch::Tensor& tensor) {
  return tensor.clone();
}

torch::Tensor SingleProcessCommunicator::reduce_scatter(const torch::Tensor& tensor,
                                                        const std::vector<std::int64_t>& counts) {
  if (counts.size() != 1 || counts[0] != tensor.size(0)) {
    throw std::invalid_argument(
        fmt::format("reduce_scatter: counts must be [{}] for one process", tensor.size(0)));
  }
  return tensor.clone();
}

void SingleProcessCommunicator::broadcast(torch::Tensor& tensor, int root) {
  if (root != 0)
    throw std::invalid_argument(fmt::format("broadcast: root {} >= world size 1", root));
}

}  // namespace shopclip::dist
