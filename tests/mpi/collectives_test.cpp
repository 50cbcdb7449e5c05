// The MPI backend's collectives against closed-form answers, for any number of ranks N
// (ctest runs this binary with mpirun -np 2 and -np 4).

#include <cstdlib>

#include <gtest/gtest.h>

#include "dist/communicator.h"
#include "mpi_test_support.h"

namespace shopclip::dist {
namespace {

using shopclip::test_support::mpi_world;

class Collectives : public ::testing::Test {
 protected:
  Communicator& comm = *mpi_world;
  const int rank = comm.rank();
  const int n = comm.world_size();
};

TEST_F(Collectives, WorldIsTheLaunchersWorld) {
  EXPECT_EQ(comm.backend(), "mpi");
  EXPECT_GE(n, 2);
  EXPECT_LT(rank, n);
  // The ranks on this host are what mpirun placed here (all of them on one machine, one per
  // host in the multi-host tests): MPI's shared-memory split must agree with the launcher.
  const char* local_size = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const char* local_rank = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  ASSERT_NE(local_size, nullptr) << "not started by Open MPI's mpirun";
  ASSERT_NE(local_rank, nullptr);
  EXPECT_EQ(comm.local_world_size(), std::atoi(local_size));
  EXPECT_EQ(comm.local_rank(), std::atoi(local_rank));
  EXPECT_LE(comm.local_world_size(), n);
}

TEST_F(Collectives, AllReduceSumOfRanksIsTriangular) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32}) {
    auto t = torch::full({3, 2}, rank, torch::TensorOptions().dtype(dtype));
    comm.all_reduce(t, ReduceOp::kSum);
    EXPECT_TRUE(t.equal(torch::full({3, 2}, n * (n - 1) / 2, torch::TensorOptions().dtype(dtype))))
        << dtype;
  }
}

TEST_F(Collectives, AllReduceMax) {
  auto t = torch::tensor({double(rank), double(-rank), 7.0});
  comm.all_reduce(t, ReduceOp::kMax);
  EXPECT_TRUE(t.equal(torch::tensor({double(n - 1), 0.0, 7.0})));
}

TEST_F(Collectives, AllReduceOfANonContiguousTensorWritesBack) {
  auto base = torch::full({4, 4}, rank + 1.0f);
  auto view = base.t();  // not contiguous
  comm.all_reduce(view, ReduceOp::kSum);
  EXPECT_TRUE(base.equal(torch::full({4, 4}, float(n * (n + 1) / 2))));
}

TEST_F(Collectives, AllGatherEqualSizesInRankOrder) {
  auto t = torch::full({2, 3}, rank, torch::kFloat32);
  auto all = comm.all_gather(t);
  ASSERT_EQ(all.sizes(), (std::vector<std::int64_t>{2 * n, 3}));
  for (int r = 0; r < n; ++r)
    EXPECT_TRUE(all.slice(0, 2 * r, 2 * r + 2).eq(r).all().item<bool>());
}

TEST_F(Collectives, AllGatherUnequalSizes) {
  // Rank r sends r + 1 rows of value r: the result has N(N+1)/2 rows.
  auto t = torch::full({rank + 1, 2}, rank, torch::kInt64);
  auto all = comm.all_gather(t);
  ASSERT_EQ(all.size(0), n * (n + 1) / 2);
  std::int64_t row = 0;
  for (int r = 0; r < n; ++r) {
    for (int k = 0; k <= r; ++k, ++row)
      EXPECT_EQ(all[row][0].item<std::int64_t>(), r);
  }
}

TEST_F(Collectives, AllGatherOfAnEmptyContribution) {
  auto t = rank == 0 ? torch::ones({0, 4}) : torch::ones({1, 4}) * rank;
  auto all = comm.all_gather(t);
  EXPECT_EQ(all.size(0), n - 1);
}

TEST_F(Collectives, AllGatherRejectsMismatchedTrailingDims) {
  auto t = torch::zeros({1, rank == 0 ? 3 : 4});
  EXPECT_THROW(comm.all_gather(t), DistError);
}

TEST_F(Collectives, ReduceScatterSumsAndKeepsOwnRows) {
  // Every rank holds rows i = 0..R-1 with value (rank + 1) * i; counts give rank r r+1 rows.
  std::vector<std::int64_t> counts;
  for (int r = 0; r < n; ++r)
    counts.push_back(r + 1);
  const std::int64_t rows = n * (n + 1) / 2;
  auto t = (torch::arange(rows, torch::kFloat64) * (rank + 1)).unsqueeze(1).repeat({1, 2});
  auto mine = comm.reduce_scatter(t, counts);
  const auto offsets = partition_offsets(counts);
  ASSERT_EQ(mine.size(0), rank + 1);
  const double ranks_sum = n * (n + 1) / 2.0;
  for (std::int64_t k = 0; k < mine.size(0); ++k) {
    EXPECT_DOUBLE_EQ(mine[k][1].item<double>(), ranks_sum * double(offsets[rank] + k));
  }
}

TEST_F(Collectives, ReduceScatterRejectsBadCounts) {
  std::vector<std::int64_t> counts(n, 1);
  EXPECT_THROW(comm.reduce_scatter(torch::zeros({n + 1, 2}), counts), DistError);
}

TEST_F(Collectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < n; ++root) {
    auto t = torch::full({5}, rank * 10 + 1, torch::kInt64);
    comm.broadcast(t, root);
    EXPECT_TRUE(t.eq(root * 10 + 1).all().item<bool>()) << "root " << root;
  }
  auto bad = torch::zeros({1});
  EXPECT_THROW(comm.broadcast(bad, n), DistError);
}

TEST_F(Collectives, BarrierAndBytes) {
  comm.barrier();
  auto flags = torch::full({3}, rank == 1 ? 255 : 1, torch::kUInt8);
  comm.all_reduce(flags, ReduceOp::kMax);
  EXPECT_EQ(flags[0].item<int>(), 255);
}

TEST_F(Collectives, RejectsUnsupportedDtypes) {
  auto t = torch::zeros({2}, torch::kFloat16);
  EXPECT_THROW(comm.all_reduce(t, ReduceOp::kSum), DistError);
}

}  // namespace
}  // namespace shopclip::dist
