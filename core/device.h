#pragma once
// Which device a rank computes on, and the few device facts timers and memory reports need.

#include <string>

#include <torch/types.h>

namespace shopclip {

// The device for run.device on the rank with this local rank: CPU, or cuda:<local rank>.
// Throws std::invalid_argument when CUDA is asked for but LibTorch has none or the node has too
// few GPUs.
torch::Device training_device(const std::string& device, int local_rank);

// Waits until the work queued on a CUDA device has finished; nothing on the CPU. Timers need it:
// CUDA calls return as soon as the work is queued.
void synchronize_device(const torch::Device& device);

// The most memory tensors have held on a CUDA device since the last reset (LibTorch's caching
// allocator), MiB; 0 on the CPU, where the process's resident memory is the measure.
double device_peak_memory_mib(const torch::Device& device);
void reset_device_peak_memory(const torch::Device& device);

}  // namespace shopclip
