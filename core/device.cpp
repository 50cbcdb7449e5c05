#include "core/device.h"

#include <stdexcept>

#include <fmt/format.h>
#include <torch/cuda.h>

namespace shopclip {

torch::Device training_device(const std::string& device, int local_rank) {
  if (device == "cpu") return torch::kCPU;
  if (device != "cuda") {
    throw std::invalid_argument(fmt::format("run.device '{}' is not cpu or cuda", device));
  }
  if (!torch::cuda::is_available()) {
    throw std::invalid_argument(
        "run.device is cuda, but this LibTorch has no CUDA or no GPU is visible (Debian's "
        "libtorch is CPU-only; build against a CUDA LibTorch)");
  }
  const int gpus = static_cast<int>(torch::cuda::device_count());
  if (local_rank >= gpus) {
    throw std::invalid_argument(fmt::format(
        "run.device is cuda: local rank {} needs GPU {}, but this node shows {}; start one rank "
        "per GPU",
        local_rank, local_rank, gpus));
  }
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank)};
}

}  // namespace shopclip
