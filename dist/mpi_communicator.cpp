#include "dist/mpi_communicator.h"

#include <climits>

#include <fmt/format.h>
// The C API only: Open MPI would otherwise pull in its deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

namespace shopclip::dist {
namespace {

// Throws DistError for a failed MPI call, with MPI's own description of the error.
void check(int status, const char* call) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw DistError(fmt::format("{} failed: {}", call, std::string(text, length)));
}
#define SHOPCLIP_MPI_CHECK(call) check((call), #call)

MPI_Datatype mpi_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32:
      return MPI_FLOAT;
    case torch::kFloat64:
      return MPI_DOUBLE;
    case torch::kInt64:
      return MPI_INT64_T;
    case torch::kInt32:
      return MPI_INT32_T;
    case torch::kUInt8:
      return MPI_UINT8_T;
    case torch::kBool:
      return MPI_C_BOOL;
    default:
      throw DistError(
          fmt::format("MPI backend: unsupported dtype {}", c10::toString(tensor.scalar_type())));
  }
}

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX;
}

void require_cpu(const torch::Tensor& tensor, const char* what) {
  if (!tensor.device().is_cpu()) {
    throw DistError(
        fmt::format("{}: the MPI backend takes CPU tensors, got {}", what, tensor.device().str()));
  }
}

int to_int(std::int64_t count, const char* what) {
  if (count < 0 || count > INT_MAX) {
    throw DistError(fmt::format("{}: {} elements exceed MPI's int count limit", what, count));
  }
  return static_cast<int>(count);
}

// Elements of one dim-0 row: the product of the other dims.
std::int64_t row_elements(const torch::Tensor& tensor) {
  std::int64_t elements = 1;
  for (std::int64_t d = 1; d < tensor.dim(); ++d)
    elements *= tensor.size(d);
  return elements;
}

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int provided = 0;
  SHOPCLIP_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  // Errors come back as codes so they can become exceptions with a message.
  SHOPCLIP_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  if (provided < MPI_THREAD_FUNNELED) {
    throw DistError("the MPI library does not provide MPI_THREAD_FUNNELED");
  }
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool MpiRuntime::initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
}

struct MpiCommunicator::Impl {
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm node = MPI_COMM_NULL;
};

MpiCommunicator::MpiCommunicator() : impl_(std::make_unique<Impl>()) {
  if (!MpiRuntime::initialized()) throw DistError("MpiCommunicator needs an MpiRuntime first");
  SHOPCLIP_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->world));
  SHOPCLIP_MPI_CHECK(MPI_Comm_set_errhandler(impl_->world, MPI_ERRORS_RETURN));
  SHOPCLIP_MPI_CHECK(MPI_Comm_rank(impl_->world, &rank_));
  SHOPCLIP_MPI_CHECK(MPI_Comm_size(impl_->world, &world_size_));
  SHOPCLIP_MPI_CHECK(
      MPI_Comm_split_type(impl_->world, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &impl_->node));
  SHOPCLIP_MPI_CHECK(MPI_Comm_rank(impl_->node, &local_rank_));
  SHOPCLIP_MPI_CHECK(MPI_Comm_size(impl_->node, &local_world_size_));
}

MpiCommunicator::~MpiCommunicator() {
  if (impl_->node != MPI_COMM_NULL) MPI_Comm_free(&impl_->node);
  if (impl_->world != MPI_COMM_NULL) MPI_Comm_free(&impl_->world);
}

void MpiCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  require_cpu(tensor, "all_reduce");
  torch::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  SHOPCLIP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(),
                                   to_int(buffer.numel(), "all_reduce"), mpi_type(buffer),
                                   mpi_op(op), impl_->world));
  if (!buffer.is_same(tensor)) tensor.copy_(buffer);
}

namespace {
class MpiWork final : public Work {
 public:
  explicit MpiWork(MPI_Request request) : request_(request) {}
  ~MpiWork() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override { SHOPCLIP_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE)); }

 private:
  MPI_Request request_;
};
}  // namespace

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  require_cpu(tensor, "all_reduce_async");
  if (!tensor.is_contiguous()) throw DistError("all_reduce_async: the tensor must be contiguous");
  MPI_Request request = MPI_REQUEST_NULL;
  SHOPCLIP_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(),
                                    to_int(tensor.numel(), "all_reduce_async"), mpi_type(tensor),
                                    mpi_op(op), impl_->world, &request));
  return std::make_unique<MpiWork>(request);
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& tensor) {
  require_cpu(tensor, "all_gather");
  if (tensor.dim() == 0) throw DistError("all_gather: needs at least one dimension");
  const torch::Tensor input = tensor.contiguous();
  // Sizes along dim 0 may differ: exchange them first, and the other dims to check they agree.
  std::vector<std::int64_t> shape = input.sizes().vec();
  const int dims = static_cast<int>(shape.size());
  std::vector<std::int64_t> all_shapes(static_cast<std::size_t>(dims) * world_size_);
  SHOPCLIP_MPI_CHECK(MPI_Allgather(shape.data(), dims, MPI_INT64_T, all_shapes.data(), dims,
                                   MPI_INT64_T, impl_->world));
  std::vector<int> counts(world_size_), displacements(world_size_);
  const std::int64_t row = row_elements(input);
  std::int64_t total_rows = 0, offset = 0;
  for (int r = 0; r < world_size_; ++r) {
    for (int d = 1; d < dims; ++d) {
      if (all_shapes[r * dims + d] != shape[d]) {
        throw DistError(fmt::format("all_gather: rank {} has size {} in dim {}, rank {} has {}", r,
                                    all_shapes[r * dims + d], d, rank_, shape[d]));
      }
    }
    const std::int64_t rows = all_shapes[r * dims];
    counts[r] = to_int(rows * row, "all_gather");
    displacements[r] = to_int(offset, "all_gather");
    offset += rows * row;
    total_rows += rows;
  }
  shape[0] = total_rows;
  torch::Tensor output = torch::empty(shape, input.options());
  SHOPCLIP_MPI_CHECK(MPI_Allgatherv(input.data_ptr(), counts[rank_], mpi_type(input),
                                    output.data_ptr(), counts.data(), displacements.data(),
                                    mpi_type(input), impl_->world));
  return output;
}

torch::Tensor MpiCommunicator::reduce_scatter(const torch::Tensor& tensor,
                                              const std::vector<std::int64_t>& counts) {
  require_cpu(tensor, "reduce_scatter");
  if (static_cast<int>(counts.size()) != world_size_) {
    throw DistError(
        fmt::format("reduce_scatter: {} counts for {} ranks", counts.size(), world_size_));
  }
  const auto offsets = partition_offsets(counts);
  if (tensor.dim() == 0 || offsets.back() != tensor.size(0)) {
    throw DistError(fmt::format("reduce_scatter: counts sum to {} but the tensor has {} rows",
                                offsets.back(), tensor.dim() ? tensor.size(0) : 0));
  }
  const torch::Tensor input = tensor.contiguous();
  const std::int64_t row = row_elements(input);
  std::vector<int> element_counts(world_size_);
  for (int r = 0; r < world_size_; ++r)
    element_counts[r] = to_int(counts[r] * row, "reduce_scatter");
  std::vector<std::int64_t> shape = input.sizes().vec();
  shape[0] = counts[rank_];
  torch::Tensor output = torch::empty(shape, input.options());
  SHOPCLIP_MPI_CHECK(MPI_Reduce_scatter(input.data_ptr(), output.data_ptr(), element_counts.data(),
                                        mpi_type(input), MPI_SUM, impl_->world));
  return output;
}

void MpiCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_cpu(tensor, "broadcast");
  if (root < 0 || root >= world_size_) {
    throw DistError(fmt::format("broadcast: root {} outside world size {}", root, world_size_));
  }
  torch::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  SHOPCLIP_MPI_CHECK(MPI_Bcast(buffer.data_ptr(), to_int(buffer.numel(), "broadcast"),
                               mpi_type(buffer), root, impl_->world));
  if (!buffer.is_same(tensor)) tensor.copy_(buffer);
}

void MpiCommunicator::barrier() {
  SHOPCLIP_MPI_CHECK(MPI_Barrier(impl_->world));
}

void MpiCommunicator::abort(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort should not return
}

}  // namespace shopclip::dist
