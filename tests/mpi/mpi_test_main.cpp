// main() of the test suites run under `mpirun -np N`: every rank runs every test; only rank 0
// prints gtest's report, and the exit status is non-zero on every rank when any rank failed.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
// The C API only: Open MPI would otherwise pull in its deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include "dist/mpi_communicator.h"
#include "mpi_test_support.h"

namespace shopclip::test_support {
dist::Communicator* mpi_world = nullptr;
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  shopclip::dist::MpiRuntime runtime(&argc, &argv);
  int result = 0;
  {
    shopclip::dist::MpiCommunicator comm;
    // One rank proves little about collectives, except on a machine with one GPU, where it is
    // the only NCCL run there is (SHOPCLIP_MPI_TESTS_ONE_RANK=1, experiments/gpu/).
    const char* one_rank = std::getenv("SHOPCLIP_MPI_TESTS_ONE_RANK");
    const bool one_rank_allowed = one_rank != nullptr && std::string(one_rank) == "1";
    if (comm.world_size() < 2 && !one_rank_allowed) {
      std::fprintf(stderr, "run this suite under a launcher: mpirun -np N %s (N >= 2)\n", argv[0]);
      return 2;
    }
    shopclip::test_support::mpi_world = &comm;
    if (comm.rank() != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
    }
    result = RUN_ALL_TESTS();
    torch::Tensor failed = torch::tensor({result}, torch::kInt32);
    comm.all_reduce(failed, shopclip::dist::ReduceOp::kMax);
    if (failed.item<int>() != 0 && result == 0 && comm.rank() == 0) {
      std::fprintf(stderr, "a test failed on another rank\n");
    }
    result = failed.item<int>();
    shopclip::test_support::mpi_world = nullptr;
  }
  return result;
}
