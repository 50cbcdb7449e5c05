#pragma once
// NCCL backend for CUDA tensors. Built only when CMake finds CUDA and NCCL (SHOPCLIP_WITH_NCCL);
// with a CPU-only LibTorch it compiles but has no CUDA tensors to work on, and
// make_communicator refuses it with an explanation.
//
// Rank, world size and node-local rank come from a bootstrap communicator (the MPI one), which
// also carries NCCL's unique id from rank 0 to every rank and the per-rank row counts of an
// unequal all-gather. Each rank drives the GPU numbered by its local rank. Every CUDA and NCCL
// call is checked; a failure throws DistError naming the call, NCCL's error string and the rank.
//
// Collectives run on LibTorch's current CUDA stream of this device when LibTorch has CUDA (so
// they order with the kernels that produced their inputs), else on the legacy default stream,
// and are blocking: the stream is synchronised before a call returns.

#include <memory>

#include "dist/communicator.h"

namespace shopclip::dist {

class NcclCommunicator final : public Communicator {
 public:
  // bootstrap must outlive this communicator. Selects GPU local_rank (DistError when this node
  // has fewer GPUs than ranks) and initialises the NCCL communicator (collective over all ranks).
  explicit NcclCommunicator(Communicator& bootstrap);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return bootstrap_.rank(); }
  int world_size() const override { return bootstrap_.world_size(); }
  int local_rank() const override { return bootstrap_.local_rank(); }
  int local_world_size() const override { return bootstrap_.local_world_size(); }
  std::string backend() const override { return "nccl"; }
  // The CUDA device index this rank uses (= local_rank()).
  int device_index() const { return local_rank(); }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void barrier() override;
  // ncclCommAbort (frees ranks blocked in NCCL kernels), then the bootstrap's abort.
  [[noreturn]] void abort(int exit_code) override;

 private:
  struct Impl;
  Communicator& bootstrap_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shopclip::dist
