// The start-up broadcast and the replica check (dist/gradients.h) under mpirun, with ranks that
// really differ: every rank of a training job seeds identically, so a broadcast that did nothing
// and a check that never fired would pass every training test.

#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dist/gradients.h"
#include "mpi_test_support.h"

namespace shopclip::dist {
namespace {

using shopclip::test_support::mpi_world;

// Tensors shaped like a model's: a weight, a bias, a BatchNorm running mean and its int64 step
// counter, all identical on every rank.
std::vector<torch::Tensor> replica_tensors() {
  return {torch::arange(12, torch::kFloat32).reshape({3, 4}).div(7), torch::full({4}, 0.5f),
          torch::linspace(-1, 1, 6, torch::kFloat32), torch::tensor({42}, torch::kInt64)};
}
const std::vector<std::string> kNames = {"weight", "bias", "bn.running_mean",
                                         "bn.num_batches_tracked"};

// The message of the DistError check_replicas_identical throws, or "" when it does not throw.
std::string replica_error(const std::vector<torch::Tensor>& tensors) {
  try {
    check_replicas_identical(*mpi_world, tensors, kNames);
  } catch (const DistError& e) {
    return e.what();
  }
  return "";
}

TEST(Replicas, BroadcastGivesEveryRankTheRootsValues) {
  Communicator& comm = *mpi_world;
  for (const int root : {0, comm.world_size() - 1}) {
    auto tensors = replica_tensors();
    // Every rank starts with its own values, in every dtype.
    for (auto& t : tensors)
      t.add_(comm.rank() + 1);
    broadcast_tensors(comm, tensors, root);
    const auto expected = replica_tensors();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(tensors[i].equal(expected[i] + (root + 1))) << kNames[i] << " root " << root;
    }
  }
}

TEST(Replicas, IdenticalReplicasPass) {
  EXPECT_EQ(replica_error(replica_tensors()), "");
}

TEST(Replicas, EveryRankNamesTheFirstDifferingTensor) {
  Communicator& comm = *mpi_world;
  auto tensors = replica_tensors();
  if (comm.rank() == comm.world_size() - 1) {
    // One ulp in the bias (the first that differs) and a larger change in a later tensor.
    tensors[1][2] = std::nextafter(0.5f, 1.0f);
    tensors[2][0] = 5.0f;
  }
  const std::string error = replica_error(tensors);
  EXPECT_NE(error.find("'bias' differs"), std::string::npos) << error;
}

TEST(Replicas, FindsAnIntegerBufferThatDiffers) {
  Communicator& comm = *mpi_world;
  auto tensors = replica_tensors();
  if (comm.rank() == 0) tensors[3][0] = 43;
  const std::string error = replica_error(tensors);
  EXPECT_NE(error.find("'bn.num_batches_tracked' differs"), std::string::npos) << error;
}

TEST(Replicas, FindsSwappedValuesWithTheSameSum) {
  Communicator& comm = *mpi_world;
  auto tensors = replica_tensors();
  if (comm.rank() == 1) {
    // Same values in another order: the plain checksum cannot see it, the weighted one must.
    auto& mean = tensors[2];
    auto first = mean[0].clone();
    mean[0] = mean[5];
    mean[5] = first;
  }
  const std::string error = replica_error(tensors);
  EXPECT_NE(error.find("'bn.running_mean' differs"), std::string::npos) << error;
}

}  // namespace
}  // namespace shopclip::dist
