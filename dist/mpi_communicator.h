#pragma once
// Open MPI backend for CPU tensors. Every MPI call is checked; a failure throws DistError with the
// call and MPI's error string. MPI is initialised by MpiRuntime (one per process) before any
// communicator exists and finalised after the last one is gone.

#include <memory>

#include "dist/communicator.h"

namespace shopclip::dist {

// Owns MPI_Init_thread / MPI_Finalize for the process (MPI_THREAD_FUNNELED: only the main thread
// calls MPI). Create it once in main(), before the first communicator.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  static bool initialized();
};

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates MPI_COMM_WORLD (so shopclip's traffic never mixes with a caller's) and finds the
  // ranks sharing this node (MPI_Comm_split_type SHARED). Requires an MpiRuntime.
  MpiCommunicator();
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  int local_rank() const override { return local_rank_; }
  int local_world_size() const override { return local_world_size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override;
  // MPI_Iallreduce; the tensor must be contiguous.
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& tensor, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void barrier() override;
  [[noreturn]] void abort(int exit_code) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0, local_world_size_ = 1;
};

}  // namespace shopclip::dist
