#pragma once
// The one seam between training code and the process group. Every collective goes through this
// interface, passed explicitly (no global communicator), so the trainer never knows whether it
// runs as one process or as many MPI/NCCL ranks.
//
// Contract for every collective: all ranks call it in the same order with tensors of the same
// dtype and device, the same shape except where a method says otherwise; tensors are used as
// they are if contiguous (else a contiguous copy is made). The MPI backend takes CPU tensors, the
// NCCL backend CUDA tensors on this rank's device. Collectives are blocking: when one returns, its
// result is ready and its inputs may be reused. Errors throw DistError naming the call.

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>

namespace shopclip::dist {

// A failed collective or an impossible request (mismatched sizes, an unsupported dtype).
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ReduceOp { kSum, kMax };

// A collective in flight. wait() blocks until it completed; the tensor it works on must stay
// alive and untouched until then. Destroying an unfinished Work waits for it.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Rank among the processes of this node, and how many share the node (selects the GPU with
  // CUDA; splits the CPU cores otherwise).
  virtual int local_rank() const = 0;
  virtual int local_world_size() const = 0;
  bool is_main() const { return rank() == 0; }
  // A short name for logs: "single", "mpi", "nccl".
  virtual std::string backend() const = 0;

  // In place: tensor <- op over ranks of tensor.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  // Starts an in-place all_reduce and returns at once (where the backend can); all ranks must
  // start their asynchronous collectives in the same order. The default is the blocking call.
  virtual std::unique_ptr<Work> all_reduce_async(torch::Tensor& tensor,
                                                 ReduceOp op = ReduceOp::kSum);
  // Concatenates every rank's tensor along dim 0 in rank order. Sizes along dim 0 may differ
  // between ranks; the other dims must agree. Returns a new tensor.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  // Sums `tensor` over ranks (identical shape everywhere, dim 0 = sum of counts) and returns this
  // rank's rows [counts[0] + ... + counts[rank - 1], ... + counts[rank]). Returns a new tensor.
  virtual torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                                       const std::vector<std::int64_t>& counts) = 0;
  // In place: every rank receives root's tensor.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;

  // Ends every process of the job with this exit code, now (MPI_Abort). Used when this rank
  // failed, so that no other rank waits forever in a collective. Does not return.
  [[noreturn]] virtual void abort(int exit_code) = 0;
};

// The debug-mode backend: one process, world size 1. Collectives are identities (copies where a
// new tensor is returned), so code paths are the same as in a multi-rank run.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_world_size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void barrier() override {}
  [[noreturn]] void abort(int exit_code) override;
};

// Row offsets of a partition: offsets[r] = counts[0] + ... + counts[r - 1]; size counts + 1.
std::vector<std::int64_t> partition_offsets(const std::vector<std::int64_t>& counts);

}  // namespace shopclip::dist
