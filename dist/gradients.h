#pragma once
// Data-parallel bookkeeping of parameters: the start-up broadcast, gradient summation in flat
// buckets overlapped with backward, and the check that replicas stayed identical.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "dist/communicator.h"

namespace shopclip::dist {

// Sums parameter gradients over ranks. Parameters are packed, in reverse registration order (the
// order backward produces them), into flat buckets of about bucket_bytes; a hook on each
// parameter adds its gradient into its bucket, and a full bucket starts its all-reduce at once,
// while backward goes on. finish() waits for every bucket and writes the sums into .grad.
// Every rank must run the same backward graph (same parameters used), as data parallelism does.
class GradientReducer {
 public:
  // parameters: float32 leaves requiring grad, all on one device. Holds handles to them.
  GradientReducer(Communicator& comm, std::vector<torch::Tensor> parameters,
                  std::int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // After loss.backward(): completes the reduction and sets each parameter's .grad to the sum of
  // its gradients over ranks (zeros for a parameter no rank used), including the gradients of
  // every backward since the last finish().
  void finish();

  // Micro-batching: while false, the hooks only add each gradient into its bucket (no
  // communication); the first backward after turning it back on adds its gradients too and
  // starts the all-reduces, and finish() then yields the sum over micro-batches and ranks.
  // Call between backward passes only. On by default.
  void set_synchronize(bool on) { synchronize_ = on; }

  std::size_t bucket_count() const;
  // Seconds spent in finish() waiting for communication, since construction.
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket;
  void on_gradient(std::size_t parameter, const torch::Tensor& grad);
  void launch(Bucket& bucket);

  Communicator& comm_;
  std::vector<torch::Tensor> parameters_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::size_t> bucket_of_;   // parameter -> bucket
  std::vector<std::int64_t> offset_of_;  // parameter -> element offset in its bucket
  double wait_seconds_ = 0;
  bool synchronize_ = true;
};

// Every rank receives rank root's values of the tensors (parameters and buffers), in place.
void broadcast_tensors(Communicator& comm, const std::vector<torch::Tensor>& tensors, int root = 0);

// Throws DistError naming the first tensor (by `names`, same order) whose bits differ between
// ranks. Compares a per-tensor checksum of the raw bits, so any change of value is found.
void check_replicas_identical(Communicator& comm, const std::vector<torch::Tensor>& tensors,
                              const std::vector<std::string>& names);

}  // namespace shopclip::dist
