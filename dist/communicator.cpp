#include "dist/communicator.h"

#include <cstdlib>

#include <fmt/format.h>

namespace shopclip::dist {

namespace {
class CompletedWork final : public Work {
 public:
  void wait() override {}
};
}  // namespace

std::unique_ptr<Work> Communicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  all_reduce(tensor, op);
  return std::make_unique<CompletedWork>();
}

void SingleProcessCommunicator::all_reduce(torch::Tensor& /*tensor*/, ReduceOp /*op*/) {}

torch::Tensor SingleProcessCommunicator::all_gather(const torch::Tensor& tensor) {
  return tensor.clone();
}

torch::Tensor SingleProcessCommunicator::reduce_scatter(const torch::Tensor& tensor,
                                                        const std::vector<std::int64_t>& counts) {
  if (counts.size() != 1 || counts[0] != tensor.size(0)) {
    throw DistError(
        fmt::format("reduce_scatter: counts must be [{}] for one process", tensor.size(0)));
  }
  return tensor.clone();
}

void SingleProcessCommunicator::broadcast(torch::Tensor& /*tensor*/, int root) {
  if (root != 0) throw DistError(fmt::format("broadcast: root {} >= world size 1", root));
}

void SingleProcessCommunicator::abort(int exit_code) {
  std::_Exit(exit_code);
}

std::vector<std::int64_t> partition_offsets(const std::vector<std::int64_t>& counts) {
  std::vector<std::int64_t> offsets(counts.size() + 1, 0);
  for (std::size_t r = 0; r < counts.size(); ++r)
    offsets[r + 1] = offsets[r] + counts[r];
  return offsets;
}

}  // namespace shopclip::dist
