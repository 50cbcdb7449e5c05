// The NCCL backend's collectives against closed-form answers, under mpirun with one GPU per rank.
// Built into test_mpi whenever the NCCL backend is built; each test is skipped (and says why)
// when LibTorch has no CUDA or this node has fewer GPUs than ranks, so on a CPU-only machine
// these tests run nothing.

#include <gtest/gtest.h>

#include <memory>
#include <numeric>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "mpi_test_support.h"
#include "shopclip_build_config.h"

#if SHOPCLIP_WITH_NCCL
#include "dist/nccl_communicator.h"

namespace shopclip::dist {
namespace {

using shopclip::test_support::mpi_world;

class NcclCollectives : public ::testing::Test {
 protected:
  void SetUp() override {
    const bool usable =
        torch::cuda::is_available() &&
        static_cast<int>(torch::cuda::device_count()) >= mpi_world->local_world_size();
    // Every rank must agree, or some would enter ncclCommInitRank and wait for the others.
    auto any_unusable = torch::tensor({usable ? 0 : 1}, torch::kInt32);
    mpi_world->all_reduce(any_unusable, ReduceOp::kMax);
    if (any_unusable.item<int>() != 0) {
      GTEST_SKIP() << "needs LibTorch with CUDA and one GPU per rank (CUDA available: "
                   << torch::cuda::is_available()
                   << ", GPUs: " << static_cast<int>(torch::cuda::device_count()) << ")";
    }
    comm = std::make_unique<NcclCommunicator>(*mpi_world);
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(comm->device_index()));
    rank = comm->rank();
    n = comm->world_size();
  }
  std::unique_ptr<NcclCommunicator> comm;
  torch::Device device{torch::kCPU};
  int rank = 0, n = 1;
};

TEST_F(NcclCollectives, AllReduceSumAndMax) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32}) {
    auto t = torch::full({3, 2}, rank, torch::TensorOptions().dtype(dtype).device(device));
    comm->all_reduce(t, ReduceOp::kSum);
    EXPECT_TRUE(
        t.cpu().equal(torch::full({3, 2}, n * (n - 1) / 2, torch::TensorOptions().dtype(dtype))));
  }
  auto m = torch::tensor({double(rank), double(-rank)}, torch::TensorOptions().device(device));
  comm->all_reduce(m, ReduceOp::kMax);
  EXPECT_TRUE(m.cpu().equal(torch::tensor({double(n - 1), 0.0})));
}

TEST_F(NcclCollectives, AllGatherEqualAndUnequal) {
  auto equal = comm->all_gather(torch::full({2, 3}, rank, torch::TensorOptions().device(device)));
  ASSERT_EQ(equal.sizes(), (std::vector<std::int64_t>{2 * n, 3}));
  for (int r = 0; r < n; ++r)
    EXPECT_TRUE(equal.slice(0, 2 * r, 2 * r + 2).eq(r).all().item<bool>());
  auto unequal =
      comm->all_gather(torch::full({rank + 1, 2}, rank, torch::TensorOptions().device(device)));
  ASSERT_EQ(unequal.size(0), n * (n + 1) / 2);
  std::int64_t row = 0;
  for (int r = 0; r < n; ++r) {
    EXPECT_TRUE(unequal.slice(0, row, row + r + 1).eq(r).all().item<bool>()) << r;
    row += r + 1;
  }
}

TEST_F(NcclCollectives, ReduceScatterEqualAndUnequal) {
  // Every rank sends rows 0..K-1 of value (row + 1) * (rank + 1); sums are (row + 1) * n(n+1)/2.
  const auto expected_factor = n * (n + 1) / 2;
  for (bool unequal : {false, true}) {
    std::vector<std::int64_t> counts;
    for (int r = 0; r < n; ++r)
      counts.push_back(unequal ? r + 1 : 2);
    const auto total = std::accumulate(counts.begin(), counts.end(), std::int64_t{0});
    auto rows =
        torch::arange(1, total + 1, torch::TensorOptions().dtype(torch::kFloat64).device(device));
    auto mine = comm->reduce_scatter((rows * (rank + 1)).view({total, 1}), counts);
    const auto offsets = partition_offsets(counts);
    auto expected =
        torch::arange(offsets[rank] + 1, offsets[rank + 1] + 1, torch::kFloat64) * expected_factor;
    EXPECT_TRUE(mine.cpu().view({-1}).equal(expected)) << "unequal " << unequal;
  }
}

TEST_F(NcclCollectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < n; ++root) {
    auto t = torch::full({5}, rank * 10.0f, torch::TensorOptions().device(device));
    comm->broadcast(t, root);
    EXPECT_TRUE(t.cpu().equal(torch::full({5}, root * 10.0f)));
  }
  comm->barrier();
}

TEST_F(NcclCollectives, RejectsCpuTensors) {
  auto cpu = torch::zeros({2});
  EXPECT_THROW(comm->all_reduce(cpu, ReduceOp::kSum), DistError);
}

}  // namespace
}  // namespace shopclip::dist
#endif  // SHOPCLIP_WITH_NCCL
