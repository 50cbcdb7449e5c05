// Compiled only with SHOPCLIP_WITH_NCCL (see CMakeLists.txt and nccl_communicator.h).
#include "dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>
#include <torch/torch.h>

#include "shopclip_build_config.h"
#if SHOPCLIP_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace shopclip::dist {
namespace {

void check_cuda(cudaError_t status, const char* call, int rank) {
  if (status == cudaSuccess) return;
  throw DistError(fmt::format("rank {}: {} failed: {}", rank, call, cudaGetErrorString(status)));
}

void check_nccl(ncclResult_t status, const char* call, int rank, ncclComm_t comm = nullptr) {
  if (status == ncclSuccess) return;
  const char* detail = comm ? ncclGetLastError(comm) : "";
  throw DistError(fmt::format("rank {}: {} failed: {}{}{}", rank, call, ncclGetErrorString(status),
                              detail && *detail ? ": " : "", detail ? detail : ""));
}

ncclDataType_t nccl_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32:
      return ncclFloat32;
    case torch::kFloat64:
      return ncclFloat64;
    case torch::kFloat16:
      return ncclFloat16;
    case torch::kBFloat16:
      return ncclBfloat16;
    case torch::kInt64:
      return ncclInt64;
    case torch::kInt32:
      return ncclInt32;
    case torch::kUInt8:
    case torch::kBool:  // one byte; sum and max of 0/1 bytes behave as for MPI_C_BOOL here
      return ncclUint8;
    default:
      throw DistError(
          fmt::format("NCCL backend: unsupported dtype {}", c10::toString(tensor.scalar_type())));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::kSum ? ncclSum : ncclMax;
}

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  int device = 0;
  int rank = 0;

  cudaStream_t stream() const {
#if SHOPCLIP_TORCH_CUDA
    return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
    return cudaStreamLegacy;
#endif
  }
  void synchronize() const {
    check_cuda(cudaStreamSynchronize(stream()), "cudaStreamSynchronize", rank);
  }
  // The tensor a collective may work on: CUDA, on this rank's device, contiguous.
  torch::Tensor operand(const torch::Tensor& tensor, const char* what) const {
    if (!tensor.is_cuda() || tensor.get_device() != device) {
      throw DistError(
          fmt::format("{}: the NCCL backend of rank {} takes tensors on cuda:{}, got {}", what,
                      rank, device, tensor.device().str()));
    }
    return tensor.contiguous();
  }
};

#define SHOPCLIP_CUDA_CHECK(call) check_cuda((call), #call, impl_->rank)
#define SHOPCLIP_NCCL_CHECK(call) check_nccl((call), #call, impl_->rank, impl_->comm)

NcclCommunicator::NcclCommunicator(Communicator& bootstrap)
    : bootstrap_(bootstrap), impl_(std::make_unique<Impl>()) {
  impl_->rank = bootstrap.rank();
  impl_->device = bootstrap.local_rank();
  int devices = 0;
  SHOPCLIP_CUDA_CHECK(cudaGetDeviceCount(&devices));
  if (impl_->device >= devices) {
    throw DistError(fmt::format(
        "rank {}: local rank {} needs GPU {}, but this node shows {} GPU(s); start at most one "
        "rank per GPU on each node",
        impl_->rank, impl_->device, impl_->device, devices));
  }
  SHOPCLIP_CUDA_CHECK(cudaSetDevice(impl_->device));
  ncclUniqueId id;
  if (bootstrap.rank() == 0) SHOPCLIP_NCCL_CHECK(ncclGetUniqueId(&id));
  auto id_bytes = torch::from_blob(&id, {static_cast<std::int64_t>(sizeof(id))}, torch::kUInt8);
  bootstrap.broadcast(id_bytes, 0);  // in place: id now holds rank 0's
  SHOPCLIP_NCCL_CHECK(ncclCommInitRank(&impl_->comm, bootstrap.world_size(), id, impl_->rank));
}

NcclCommunicator::~NcclCommunicator() {
  if (impl_ && impl_->comm) ncclCommDestroy(impl_->comm);
}

void NcclCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  auto data = impl_->operand(tensor, "all_reduce");
  SHOPCLIP_NCCL_CHECK(ncclAllReduce(data.data_ptr(), data.data_ptr(),
                                    static_cast<size_t>(data.numel()), nccl_type(data), nccl_op(op),
                                    impl_->comm, impl_->stream()));
  impl_->synchronize();
  if (!data.is_same(tensor)) tensor.copy_(data);
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& tensor) {
  auto data = impl_->operand(tensor, "all_gather");
  const int world = world_size();
  // Row counts travel over the bootstrap (CPU); NCCL's all-gather needs equal contributions, so
  // unequal ones are padded to the largest and compacted afterwards.
  auto rows = bootstrap_.all_gather(torch::tensor({data.size(0)}, torch::kInt64));
  const auto counts = std::vector<std::int64_t>(rows.data_ptr<std::int64_t>(),
                                                rows.data_ptr<std::int64_t>() + world);
  const std::int64_t most = *std::max_element(counts.begin(), counts.end());
  auto padded_shape = data.sizes().vec();
  padded_shape[0] = most;
  auto padded = data;
  if (data.size(0) != most) {
    padded = torch::zeros(padded_shape, data.options());
    padded.narrow(0, 0, data.size(0)).copy_(data);
  }
  auto gathered_shape = padded_shape;
  gathered_shape[0] = most * world;
  auto gathered = torch::empty(gathered_shape, data.options());
  SHOPCLIP_NCCL_CHECK(ncclAllGather(padded.data_ptr(), gathered.data_ptr(),
                                    static_cast<size_t>(padded.numel()), nccl_type(padded),
                                    impl_->comm, impl_->stream()));
  impl_->synchronize();
  if (std::all_of(counts.begin(), counts.end(), [&](std::int64_t c) { return c == most; })) {
    return gathered;
  }
  std::vector<torch::Tensor> pieces;
  for (int r = 0; r < world; ++r)
    pieces.push_back(gathered.narrow(0, r * most, counts[r]));
  return torch::cat(pieces, 0);
}

torch::Tensor NcclCommunicator::reduce_scatter(const torch::Tensor& tensor,
                                               const std::vector<std::int64_t>& counts) {
  auto data = impl_->operand(tensor, "reduce_scatter");
  const int world = world_size();
  if (static_cast<int>(counts.size()) != world) {
    throw DistError(fmt::format("reduce_scatter: {} counts for {} ranks", counts.size(), world));
  }
  const auto offsets = partition_offsets(counts);
  if (offsets.back() != data.size(0)) {
    throw DistError(fmt::format("reduce_scatter: counts sum to {}, tensor has {} rows",
                                offsets.back(), data.size(0)));
  }
  const bool equal =
      std::all_of(counts.begin(), counts.end(), [&](std::int64_t c) { return c == counts[0]; });
  if (!equal) {
    // NCCL's reduce-scatter takes equal parts: sum everything, keep this rank's rows.
    auto summed = data.clone();
    all_reduce(summed, ReduceOp::kSum);
    return summed.narrow(0, offsets[rank()], counts[rank()]).clone();
  }
  auto shape = data.sizes().vec();
  shape[0] = counts[rank()];
  auto out = torch::empty(shape, data.options());
  SHOPCLIP_NCCL_CHECK(ncclReduceScatter(data.data_ptr(), out.data_ptr(),
                                        static_cast<size_t>(out.numel()), nccl_type(data), ncclSum,
                                        impl_->comm, impl_->stream()));
  impl_->synchronize();
  return out;
}

void NcclCommunicator::broadcast(torch::Tensor& tensor, int root) {
  if (root < 0 || root >= world_size()) {
    throw DistError(fmt::format("broadcast: root {} outside [0, {})", root, world_size()));
  }
  auto data = impl_->operand(tensor, "broadcast");
  SHOPCLIP_NCCL_CHECK(ncclBroadcast(data.data_ptr(), data.data_ptr(),
                                    static_cast<size_t>(data.numel()), nccl_type(data), root,
                                    impl_->comm, impl_->stream()));
  impl_->synchronize();
  if (!data.is_same(tensor)) tensor.copy_(data);
}

void NcclCommunicator::barrier() {
  impl_->synchronize();
  bootstrap_.barrier();
}

void NcclCommunicator::abort(int exit_code) {
  if (impl_->comm) ncclCommAbort(impl_->comm);
  impl_->comm = nullptr;
  bootstrap_.abort(exit_code);
  std::_Exit(exit_code);  // not reached: the bootstrap's abort does not return
}

}  // namespace shopclip::dist
