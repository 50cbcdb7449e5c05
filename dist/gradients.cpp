#include "dist/gradients.h"

#include <fmt/format.h>
#include <torch/torch.h>

namespace shopclip::dist {

struct GradientReducer::Bucket {
  torch::Tensor flat;                   // float32 [elements]
  std::vector<std::size_t> parameters;  // indices into parameters_
  std::size_t ready = 0;                // parameters whose gradient arrived this step
  std::unique_ptr<Work> work;           // the all-reduce in flight, if launched
};

GradientReducer::GradientReducer(Communicator& comm, std::vector<torch::Tensor> parameters,
                                 std::int64_t bucket_bytes)
    : comm_(comm), parameters_(std::move(parameters)) {
  if (bucket_bytes <= 0) throw DistError("GradientReducer: bucket_bytes must be positive");
  bucket_of_.assign(parameters_.size(), 0);
  offset_of_.assign(parameters_.size(), 0);
  // Reverse order: the last layers' gradients are ready first.
  std::int64_t elements = 0;
  std::vector<std::size_t> members;
  auto close_bucket = [&] {
    if (members.empty()) return;
    auto bucket = std::make_unique<Bucket>();
    bucket->flat = torch::zeros({elements}, parameters_[members.front()].options());
    bucket->parameters = members;
    for (auto p : members)
      bucket_of_[p] = buckets_.size();
    buckets_.push_back(std::move(bucket));
    members.clear();
    elements = 0;
  };
  for (std::size_t i = parameters_.size(); i-- > 0;) {
    const auto& p = parameters_[i];
    if (p.scalar_type() != torch::kFloat32) {
      throw DistError("GradientReducer: parameters must be float32");
    }
    offset_of_[i] = elements;
    members.push_back(i);
    elements += p.numel();
    if (elements * static_cast<std::int64_t>(sizeof(float)) >= bucket_bytes) close_bucket();
  }
  close_bucket();
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    parameters_[i].register_hook([this, i](const torch::Tensor& grad) { on_gradient(i, grad); });
  }
}

GradientReducer::~GradientReducer() = default;

std::size_t GradientReducer::bucket_count() const {
  return buckets_.size();
}

void GradientReducer::on_gradient(std::size_t parameter, const torch::Tensor& grad) {
  Bucket& bucket = *buckets_[bucket_of_[parameter]];
  // Added, not copied: micro-batches before a synchronized backward accumulate here (the bucket
  // is zero after every finish(), so a single backward stores its gradient exactly).
  bucket.flat.narrow(0, offset_of_[parameter], grad.numel()).add_(grad.reshape({-1}));
  if (synchronize_ && ++bucket.ready == bucket.parameters.size()) launch(bucket);
}

void GradientReducer::launch(Bucket& bucket) {
  if (!bucket.work) bucket.work = comm_.all_reduce_async(bucket.flat, ReduceOp::kSum);
}

void GradientReducer::finish() {
  const auto start = std::chrono::steady_clock::now();
  // Buckets holding a parameter that got no gradient this step (unused; its slice stays zero)
  // are launched here, in bucket order, which is the same on every rank.
  for (auto& bucket : buckets_)
    launch(*bucket);
  torch::NoGradGuard no_grad;
  for (auto& bucket : buckets_) {
    bucket->work->wait();
    bucket->work.reset();
    for (auto p : bucket->parameters) {
      auto& parameter = parameters_[p];
      auto summed =
          bucket->flat.narrow(0, offset_of_[p], parameter.numel()).view(parameter.sizes());
      if (parameter.mutable_grad().defined()) {
        parameter.mutable_grad().copy_(summed);
      } else {
        parameter.mutable_grad() = summed.clone();
      }
    }
    bucket->ready = 0;
    bucket->flat.zero_();  // a parameter unused next step contributes zeros
  }
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void broadcast_tensors(Communicator& comm, const std::vector<torch::Tensor>& tensors, int root) {
  torch::NoGradGuard no_grad;
  for (const auto& tensor : tensors) {
    auto target = tensor;  // a handle sharing storage: broadcast writes into the original
    comm.broadcast(target, root);
  }
}

void check_replicas_identical(Communicator& comm, const std::vector<torch::Tensor>& tensors,
                              const std::vector<std::string>& names) {
  if (names.size() != tensors.size())
    throw DistError("check_replicas_identical: one name per tensor");
  torch::NoGradGuard no_grad;
  // Two checksums of each tensor's raw bits: their sum, and a position-weighted sum.
  auto sums = torch::zeros({static_cast<std::int64_t>(tensors.size()), 2}, torch::kInt64);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    auto t = tensors[i].detach().cpu().contiguous().reshape({-1});
    torch::Tensor bits;
    switch (t.element_size()) {
      case 8:
        bits = t.view(torch::kInt64);
        break;
      case 4:
        bits = t.view(torch::kInt32).to(torch::kInt64);
        break;
      case 2:
        bits = t.view(torch::kInt16).to(torch::kInt64);
        break;
      default:
        bits = t.view(torch::kUInt8).to(torch::kInt64);
        break;
    }
    const auto weights = torch::arange(bits.numel(), torch::kInt64).remainder(1009).add(1);
    sums[i][0] = bits.sum();
    sums[i][1] = bits.mul(weights).sum();
  }
  // The collectives run where the tensors live (CUDA tensors for the NCCL backend).
  const auto device = tensors.empty() ? torch::Device(torch::kCPU) : tensors.front().device();
  auto largest = sums.to(device), smallest = sums.neg().to(device);
  comm.all_reduce(largest, ReduceOp::kMax);
  comm.all_reduce(smallest, ReduceOp::kMax);
  const auto differs = largest.ne(smallest.neg()).any(1).cpu();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (differs[i].item<bool>()) {
      throw DistError(
          fmt::format("replicas diverged: '{}' differs between ranks (checked on rank {} of {})",
                      names[i], comm.rank(), comm.world_size()));
    }
  }
}

}  // namespace shopclip::dist
