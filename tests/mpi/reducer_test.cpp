// GradientReducer under mpirun with closed-form answers: one backward, and micro-batches whose
// gradients are accumulated without communication until the last (synchronized) backward.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dist/gradients.h"
#include "mpi_test_support.h"

namespace shopclip::dist {
namespace {

using shopclip::test_support::mpi_world;

// Rank r's micro-batch k contributes gradient (r + 1) * coefficient[k] to w1 and, when used,
// (r + 1) * 10 * coefficient[k] to w2; summed over N ranks the factor is N(N+1)/2.
struct Parameters {
  torch::Tensor w1 = torch::zeros({3}, torch::requires_grad());
  torch::Tensor w2 = torch::zeros({2}, torch::requires_grad());
};

torch::Tensor micro_batch_loss(const Parameters& p, double coefficient, bool uses_w2) {
  const double rank_factor = mpi_world->rank() + 1;
  auto loss = (p.w1 * (rank_factor * coefficient)).sum();
  if (uses_w2) loss = loss + (p.w2 * (rank_factor * 10 * coefficient)).sum();
  return loss;
}

double triangular() {
  const double n = mpi_world->world_size();
  return n * (n + 1) / 2;
}

TEST(GradientReducer, OneBackwardSumsOverRanks) {
  Parameters p;
  GradientReducer reducer(*mpi_world, {p.w1, p.w2}, 8);  // 8 bytes: one bucket per parameter
  micro_batch_loss(p, 1.5, true).backward();
  reducer.finish();
  EXPECT_TRUE(p.w1.grad().allclose(torch::full({3}, 1.5 * triangular())));
  EXPECT_TRUE(p.w2.grad().allclose(torch::full({2}, 15.0 * triangular())));
}

TEST(GradientReducer, MicroBatchesWithoutSyncAddUpBeforeTheSynchronizedBackward) {
  Parameters p;
  GradientReducer reducer(*mpi_world, {p.w1, p.w2}, 1 << 20);  // one bucket for both
  reducer.set_synchronize(false);
  micro_batch_loss(p, 1.0, true).backward();  // w2 is used only by this micro-batch
  micro_batch_loss(p, 2.0, false).backward();
  reducer.set_synchronize(true);
  micro_batch_loss(p, 4.0, false).backward();
  reducer.finish();
  EXPECT_TRUE(p.w1.grad().allclose(torch::full({3}, 7.0 * triangular()))) << p.w1.grad();
  EXPECT_TRUE(p.w2.grad().allclose(torch::full({2}, 10.0 * triangular()))) << p.w2.grad();

  // The next step starts from empty buckets.
  p.w1.mutable_grad().zero_();
  p.w2.mutable_grad().zero_();
  micro_batch_loss(p, 1.0, false).backward();
  reducer.finish();
  EXPECT_TRUE(p.w1.grad().allclose(torch::full({3}, triangular())));
  EXPECT_TRUE(p.w2.grad().allclose(torch::zeros({2})));
}

}  // namespace
}  // namespace shopclip::dist
