#include "dist/autograd.h"

#include <torch/autograd.h>

namespace shopclip::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The communicator travels through the autograd context as an integer (IValue has no pointer).
std::int64_t to_handle(Communicator& comm) {
  return reinterpret_cast<std::int64_t>(&comm);
}
Communicator& from_handle(const c10::IValue& handle) {
  return *reinterpret_cast<Communicator*>(handle.toInt());
}

class AllGatherFunction : public torch::autograd::Function<AllGatherFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local,
                               std::int64_t comm_handle) {
    Communicator& comm = *reinterpret_cast<Communicator*>(comm_handle);
    // Every rank's row count, for the backward split.
    auto rows = torch::tensor({local.size(0)}, torch::kInt64);
    auto all_rows = comm.all_gather(rows.to(local.device()));
    ctx->saved_data["comm"] = comm_handle;
    ctx->saved_data["counts"] = all_rows.cpu();
    return comm.all_gather(local.contiguous());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    Communicator& comm = from_handle(ctx->saved_data["comm"]);
    const auto counts_tensor = ctx->saved_data["counts"].toTensor();
    std::vector<std::int64_t> counts(
        counts_tensor.data_ptr<std::int64_t>(),
        counts_tensor.data_ptr<std::int64_t>() + counts_tensor.numel());
    auto grad = comm.reduce_scatter(grad_outputs[0].contiguous(), counts);
    return {grad, torch::Tensor()};
  }
};

class AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local,
                               std::int64_t comm_handle) {
    ctx->saved_data["comm"] = comm_handle;
    auto result = local.clone();
    reinterpret_cast<Communicator*>(comm_handle)->all_reduce(result, ReduceOp::kSum);
    return result;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto grad = grad_outputs[0].contiguous().clone();
    from_handle(ctx->saved_data["comm"]).all_reduce(grad, ReduceOp::kSum);
    return {grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_with_grad(Communicator& comm, const torch::Tensor& local) {
  return AllGatherFunction::apply(local, to_handle(comm));
}

torch::Tensor all_reduce_sum_with_grad(Communicator& comm, const torch::Tensor& local) {
  return AllReduceSumFunction::apply(local, to_handle(comm));
}

}  // namespace shopclip::dist
