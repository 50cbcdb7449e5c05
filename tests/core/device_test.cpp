#include "core/device.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "test_support.h"

namespace shopclip {
namespace {

TEST(TrainingDevice, CpuAndClearCudaErrors) {
  EXPECT_EQ(training_device("cpu", 3), torch::Device(torch::kCPU));
  EXPECT_THROW(training_device("tpu", 0), std::invalid_argument);
  if (torch::cuda::is_available()) {
    EXPECT_EQ(training_device("cuda", 0), torch::Device(torch::kCUDA, 0));
    try {
      training_device("cuda", static_cast<int>(torch::cuda::device_count()));
      ADD_FAILURE() << "a local rank beyond the GPUs must fail";
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(test_support::Contains(e.what(), "one rank per GPU"));
    }
  } else {
    try {
      training_device("cuda", 0);
      ADD_FAILURE() << "cuda without CUDA must fail";
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(test_support::Contains(e.what(), "no CUDA or no GPU"));
    }
  }
}

}  // namespace
}  // namespace shopclip
