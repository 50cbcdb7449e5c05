// Model selection and early stopping bookkeeping of the trainer (the loop itself is covered by
// the end-to-end test).

#include <gtest/gtest.h>

#include <stdexcept>

#include <torch/cuda.h>

#include "core/train/trainer.h"
#include "test_support.h"

namespace shopclip {
namespace {

TEST(ModelSelection, KeepsTheStrictlyBestEvaluation) {
  TrainState state;
  EXPECT_TRUE(record_evaluation(state, 40.0, 1));
  EXPECT_EQ(state.best_epoch, 1);
  EXPECT_TRUE(record_evaluation(state, 45.5, 2));
  EXPECT_FALSE(record_evaluation(state, 45.5, 3));  // a tie is not an improvement
  EXPECT_FALSE(record_evaluation(state, 30.0, 4));
  EXPECT_DOUBLE_EQ(state.best_score, 45.5);
  EXPECT_EQ(state.best_epoch, 2);
  EXPECT_EQ(state.evals_since_best, 2);
  EXPECT_TRUE(record_evaluation(state, 50.0, 5));
  EXPECT_EQ(state.evals_since_best, 0);
}

TEST(ModelSelection, FirstEvaluationIsAlwaysTheBestEvenAtZero) {
  TrainState state;
  EXPECT_TRUE(record_evaluation(state, 0.0, 1));
  EXPECT_EQ(state.best_epoch, 1);
}

TEST(EarlyStopping, StopsAfterPatienceEvaluationsWithoutImprovement) {
  TrainState state;
  record_evaluation(state, 10.0, 1);
  record_evaluation(state, 9.0, 2);
  EXPECT_FALSE(patience_exhausted(state, 2));
  record_evaluation(state, 8.0, 3);
  EXPECT_TRUE(patience_exhausted(state, 2));
  EXPECT_FALSE(patience_exhausted(state, 0));  // 0 = never stop early
  record_evaluation(state, 11.0, 4);
  EXPECT_FALSE(patience_exhausted(state, 2));
}

}  // namespace
}  // namespace shopclip
