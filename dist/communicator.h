#pragma once
// The one seam between training code and the process group. Every collective goes through this
// interface, passed explicitly (no global communicator), so the trainer never knows whether it
// runs as one process or as many MPI/NCCL ranks.
//
// Contract for every collective: all ranks call it in the same order with tensors of the same
// dtype and device; tensors must be contiguous. CPU backends take CPU tensors.

#include <memory>
#include <vector>

#include <torch/types.h>

namespace shopclip::dist {

enum class ReduceOp { kSum, kMax };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Rank among the processes of this node (selects the GPU with CUDA).
  virtual int local_rank() const = 0;
  bool is_main() const { return rank() == 0; }

  // In place: tensor <- op over ranks of tensor.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  // Concatenates every rank's tensor along dim 0 (rank order). Sizes along dim 0 may differ
  // between ranks; the other dims must agree. Returns a new tensor.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  // Sums `tensor` (identical shape on every rank, dim 0 = sum of counts) over ranks and returns
  // this rank's slice of rows [offset_r, offset_r + counts[r]).
  virtual torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                                       const std::vector<std::int64_t>& counts) = 0;
  // In place: every rank receives root's tensor.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
};

// The debug-mode backend: one process, world size 1. Collectives are identities (copies where a
// new tensor is returned), so code paths are the same as in a multi-rank run.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void barrier() override {}
};

}  // namespace shopclip::dist
