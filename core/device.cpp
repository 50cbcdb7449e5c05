#include "core/device.h"

#include <stdexcept>

#include <fmt/format.h>
#include <torch/cuda.h>

#include "shopclip_build_config.h"
#if SHOPCLIP_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

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

void synchronize_device(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
}

double device_peak_memory_mib(const torch::Device& device) {
#if SHOPCLIP_TORCH_CUDA
  if (device.is_cuda()) {
    // Index 0 of each statistic is the aggregate over pool kinds (StatType::AGGREGATE).
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1 << 20);
  }
#endif
  return 0;
}

void reset_device_peak_memory(const torch::Device& device) {
#if SHOPCLIP_TORCH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
}

}  // namespace shopclip
