// Tests for the learned reranker at search time (core/eval/learned_rerank.h): each query's
// logits against its candidates equal the reranker on that pair alone, do not depend on how many
// queries share a forward, and bad input is refused. (The pool-token encoding across ranks and
// its cache are exercised end to end in tests/e2e/ensemble.sh.)

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include <torch/torch.h>

#include "core/eval/learned_rerank.h"
#include "core/model/dual_encoder.h"
#include "test_support.h"

namespace shopclip {
namespace {

DualEncoder model_with_reranker() {
  ModelConfig config = test_support::tiny_model_config(ImageTowerType::kCnn);
  config.reranker.layers = 1;
  config.reranker.width = 8;
  config.reranker.heads = 2;
  config.reranker.mlp = 16;
  config.reranker.image_tokens = 4;
  torch::manual_seed(12);
  DualEncoder model(config, 16, 0);
  model->eval();
  return model;
}

TEST(RerankLogits, EachEqualsTheRerankerOnItsPairAlone) {
  DualEncoder model = model_with_reranker();
  const auto pool = model->image_tokens(torch::randn({5, 3, 16, 16})).to(torch::kFloat16);
  const auto tokens = torch::tensor(
      {{2, 5, 6, 3, 0, 0, 0, 0, 0, 0}, {2, 7, 8, 9, 10, 3, 0, 0, 0, 0}}, torch::kLong);
  const std::vector<std::int64_t> candidates = {4, 0, 2, 1, 3, 0};  // K = 3
  const auto logits = rerank_logits(model, tokens, pool, candidates, 3);
  ASSERT_EQ(logits.sizes(), torch::IntArrayRef({2, 3}));
  torch::NoGradGuard no_grad;
  for (int q = 0; q < 2; ++q) {
    for (int c = 0; c < 3; ++c) {
      const auto query = tokens.narrow(0, q, 1);
      const auto alone =
          model->reranker()->forward(model->text_token_states(query), query.eq(0),
                                     pool.narrow(0, candidates[q * 3 + c], 1).to(torch::kFloat32));
      EXPECT_NEAR(logits[q][c].item<double>(), alone.item<double>(), 1e-5) << q << ", " << c;
    }
  }
  // Several queries per forward: the same logits.
  EXPECT_TRUE(
      torch::allclose(rerank_logits(model, tokens, pool, candidates, 3, 2), logits, 1e-5, 1e-6));
}

TEST(RerankLogits, RefusesBadInput) {
  DualEncoder model = model_with_reranker();
  const auto pool = torch::zeros({3, 4, 8}, torch::kFloat16);
  const auto tokens = torch::tensor({{2, 5, 3, 0, 0, 0, 0, 0, 0, 0}}, torch::kLong);
  EXPECT_THROW(rerank_logits(model, tokens, pool, {0, 1}, 3), std::invalid_argument);  // not Q * K
  EXPECT_THROW(rerank_logits(model, tokens, pool, {0, 1, 3}, 3), std::invalid_argument);  // row 3
  EXPECT_THROW(rerank_logits(model, tokens, pool.flatten(1), {0, 1, 2}, 3), std::invalid_argument);
  DualEncoder plain(test_support::tiny_model_config(ImageTowerType::kCnn), 16, 0);
  test_support::expect_throw_containing<std::invalid_argument>(
      [&] {
        rerank_logits(plain, tokens, pool, {0, 1, 2}, 3);
      },
      "no reranker");
}

}  // namespace
}  // namespace shopclip
