#pragma once
// Which device a rank computes on.

#include <string>

#include <torch/types.h>

namespace shopclip {

// The device for run.device on the rank with this local rank: CPU, or cuda:<local rank>.
// Throws std::invalid_argument when CUDA is asked for but LibTorch has none or the node has too
// few GPUs.
torch::Device training_device(const std::string& device, int local_rank);

}  // namespace shopclip
