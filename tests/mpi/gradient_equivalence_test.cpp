// Gradient equivalence under mpirun: R ranks x b rows must give the same loss and the same
// parameter gradients as one process on the whole global batch of R*b rows (relative tolerance
// 1e-5), for InfoNCE in local and full mode, the hardest-negative triplet loss and their sum,
// with the ViT tower (no cross-row state) and the CNN tower (synchronised BatchNorm, whose running
// statistics after the step must also equal those of one process on the global batch).
//
// GradCache (train.micro_batch) is held to the same standard: micro-batched steps on one process
// and on R ranks against the whole-batch step of one process, with the ViT and the Chinese-CLIP
// towers (a CNN tower's BatchNorm sees micro-batch statistics by design, core/train/step.h).
// So are the distillation terms, with teacher rows of another width.
//
// Every rank also computes the single-process reference itself (same seed, whole batch, the
// single-process backend), so each rank compares against its own copy. The learned reranker's
// matching loss, whose token features are gathered with gradient, is checked the same way.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "core/train/distill_loss.h"
#include "core/train/optim.h"
#include "core/train/step.h"
#include "dist/communicator.h"
#include "mpi_test_support.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip {
namespace {

constexpr std::int64_t kVocab = 30, kPad = 0, kContext = 8;
constexpr std::int64_t kGlobalBatch = 8;

ModelConfig small_model(ImageTowerType image_type) {
  ModelConfig config = test_support::tiny_model_config(image_type);
  config.text.context_length = kContext;
  config.text.layers = 1;
  return config;
}

// Chinese-CLIP's towers from the test fixture (vocabulary of 21128, 32-pixel images).
constexpr std::int64_t kChineseClipVocab = 21128;
ModelConfig chinese_clip_model() {
  ModelConfig config;
  config.embed_dim = 24;
  config.image.resolution = 32;
  config.text.context_length = kContext;
  config.chinese_clip.vision_config =
      SHOPCLIP_SOURCE_DIR "/tests/fixtures/chinese_clip_tiny/vision.json";
  config.chinese_clip.text_config =
      SHOPCLIP_SOURCE_DIR "/tests/fixtures/chinese_clip_tiny/text.json";
  return config;
}

struct GlobalBatch {
  torch::Tensor images, tokens, relevant;
};

// The same batch on every rank. Rows 1 and 5 share a text, so the mask has off-diagonal entries
// that cross rank boundaries for every R that divides 8.
GlobalBatch make_batch(std::int64_t resolution = 16, std::int64_t vocab = kVocab) {
  torch::manual_seed(11);
  GlobalBatch batch;
  batch.images = torch::randn({kGlobalBatch, 3, resolution, resolution});
  batch.tokens = torch::randint(4, vocab, {kGlobalBatch, kContext}, torch::kLong);
  batch.tokens.index_put_({torch::indexing::Slice(), torch::indexing::Slice(5)}, kPad);
  batch.tokens[5].copy_(batch.tokens[1]);
  batch.relevant = torch::zeros({kGlobalBatch, kGlobalBatch}, torch::kBool);
  batch.relevant[1][5] = true;
  batch.relevant[5][1] = true;
  return batch;
}

struct Outcome {
  StepResult loss;
  std::vector<std::pair<std::string, torch::Tensor>> gradients;
  std::vector<std::pair<std::string, torch::Tensor>> buffers;  // BatchNorm running statistics
};

// teacher: per-row extras of the whole global batch ([8, ...]); this rank's rows are passed.
Outcome run_step(const ModelConfig& model_config, const TrainConfig& train_config,
                 dist::Communicator& comm, const GlobalBatch& batch, std::int64_t begin,
                 std::int64_t rows, const DistillConfig& distill = {},
                 const std::map<std::string, torch::Tensor>& teacher = {}) {
  torch::manual_seed(5);  // identical initial weights on every rank and in the reference
  const bool chinese_clip = model_config.chinese_clip.enabled();
  DualEncoder model(model_config, chinese_clip ? kChineseClipVocab : kVocab, kPad, &comm);
  model->train();
  model->freeze(train_config.freeze);
  auto optimizer = make_adamw(model, train_config);
  StepRunner runner(model, *optimizer, comm, train_config, distill);
  StepInputs inputs;
  inputs.images = batch.images.narrow(0, begin, rows);
  inputs.tokens = batch.tokens.narrow(0, begin, rows);
  inputs.relevant = batch.relevant;
  inputs.step = 10;
  for (const auto& [name, all_rows] : teacher)
    inputs.extras[name] = all_rows.narrow(0, begin, rows);
  Outcome outcome;
  outcome.loss = runner.forward_backward(inputs);
  // A parameter the loss does not reach (the logit scale under the triplet loss alone) has no
  // gradient in one process but a zero one after the bucketed sum: compare both as zeros.
  for (const auto& item : model->named_parameters(true)) {
    const auto& grad = item.value().grad();
    outcome.gradients.emplace_back(item.key(),
                                   grad.defined() ? grad.clone() : torch::zeros_like(item.value()));
  }
  for (const auto& item : model->named_buffers(true))
    outcome.buffers.emplace_back(item.key(), item.value().clone());
  return outcome;
}

// |a - b| <= rtol * max|b| elementwise over each tensor: relative to the tensor's scale, since
// single elements of a gradient can be arbitrarily close to zero.
// floor: the smallest scale used (a tensor whose gradient vanishes mathematically, such as an
// attention key bias, is compared at a scale relative to the model's gradients instead).
void expect_close(const torch::Tensor& actual, const torch::Tensor& expected,
                  const std::string& what, double floor = 0) {
  const double scale = std::max(expected.abs().max().item<double>(), floor);
  const double error = (actual - expected).abs().max().item<double>();
  EXPECT_LE(error, 1e-5 * std::max(scale, 1e-12))
      << what << ": max abs error " << error << ", scale " << scale;
}

struct Case {
  ImageTowerType image_type;
  LossMode loss_mode;
  double infonce_weight, triplet_weight;
};

void PrintTo(const Case& c, std::ostream* out) {
  *out << enum_name(c.image_type) << " tower, " << enum_name(c.loss_mode)
       << " mode, InfoNCE weight " << c.infonce_weight << ", triplet weight " << c.triplet_weight;
}

class GradientEquivalence : public ::testing::TestWithParam<Case> {};

TEST_P(GradientEquivalence, MatchesOneProcessOnTheGlobalBatch) {
  auto& world = *test_support::mpi_world;
  ASSERT_EQ(kGlobalBatch % world.world_size(), 0) << "run with 2 or 4 ranks";
  const Case& c = GetParam();
  const ModelConfig model_config = small_model(c.image_type);
  TrainConfig train_config;
  train_config.loss_mode = c.loss_mode;
  train_config.infonce_weight = c.infonce_weight;
  train_config.triplet_weight = c.triplet_weight;
  train_config.triplet_margin = 0.5;  // wide enough that most rows violate it at initialisation
  train_config.bucket_mb = 0.001;     // ~1 KB buckets: several buckets in flight
  const GlobalBatch batch = make_batch();

  dist::SingleProcessCommunicator single;
  const Outcome reference = run_step(model_config, train_config, single, batch, 0, kGlobalBatch);
  const std::int64_t rows = kGlobalBatch / world.world_size();
  const Outcome sharded =
      run_step(model_config, train_config, world, batch, world.rank() * rows, rows);

  if (c.triplet_weight > 0) {
    ASSERT_GT(reference.loss.part("triplet"), 0.0) << "no violated triplet";
  }
  EXPECT_NEAR(sharded.loss.loss, reference.loss.loss, 1e-5 * reference.loss.loss);
  for (const std::string part : {"infonce", "triplet"}) {
    EXPECT_NEAR(sharded.loss.part(part), reference.loss.part(part),
                1e-5 * reference.loss.part(part))
        << part;
  }
  ASSERT_EQ(sharded.gradients.size(), reference.gradients.size());
  for (size_t i = 0; i < reference.gradients.size(); ++i) {
    ASSERT_EQ(sharded.gradients[i].first, reference.gradients[i].first);
    expect_close(sharded.gradients[i].second, reference.gradients[i].second,
                 reference.gradients[i].first);
  }
  // Synchronised BatchNorm: running mean and (unbiased) variance from the global batch's
  // statistics, the same step count on every rank.
  ASSERT_EQ(sharded.buffers.size(), reference.buffers.size());
  int running_statistics = 0;
  for (size_t i = 0; i < reference.buffers.size(); ++i) {
    const auto& [name, expected] = reference.buffers[i];
    ASSERT_EQ(sharded.buffers[i].first, name);
    if (expected.is_floating_point()) {
      expect_close(sharded.buffers[i].second, expected, name);
      ++running_statistics;
    } else {
      EXPECT_TRUE(sharded.buffers[i].second.equal(expected)) << name;
    }
  }
  if (c.image_type == ImageTowerType::kCnn) {
    ASSERT_GT(running_statistics, 0) << "the CNN tower has no BatchNorm statistics to compare";
    // Not vacuous: the step moved them away from their initial zeros and ones.
    const auto& [name, mean] = reference.buffers.front();
    EXPECT_GT(mean.abs().max().item<double>(), 1e-3) << name << " did not move";
  }
}

INSTANTIATE_TEST_SUITE_P(LossesAndTowers, GradientEquivalence,
                         ::testing::Values(Case{ImageTowerType::kVit, LossMode::kLocal, 1.0, 0.0},
                                           Case{ImageTowerType::kVit, LossMode::kFull, 1.0, 0.0},
                                           Case{ImageTowerType::kVit, LossMode::kLocal, 0.0, 1.0},
                                           Case{ImageTowerType::kVit, LossMode::kFull, 1.0, 0.5},
                                           Case{ImageTowerType::kCnn, LossMode::kLocal, 1.0, 0.0},
                                           Case{ImageTowerType::kCnn, LossMode::kFull, 1.0, 0.5}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& c = info.param;
                           std::string name =
                               enum_name(c.image_type) + "_" + enum_name(c.loss_mode);
                           if (c.infonce_weight > 0) name += "_infonce";
                           if (c.triplet_weight > 0) name += "_triplet";
                           return name;
                         });

// ---- GradCache ---------------------------------------------------------------------------------

struct MicroCase {
  bool chinese_clip;  // else the ViT tower
  LossMode loss_mode;
  double infonce_weight, triplet_weight;
  std::int64_t micro_batch;
};

void PrintTo(const MicroCase& c, std::ostream* out) {
  *out << (c.chinese_clip ? "Chinese-CLIP" : "ViT") << " towers, " << enum_name(c.loss_mode)
       << " mode, InfoNCE weight " << c.infonce_weight << ", triplet weight " << c.triplet_weight
       << ", micro-batch " << c.micro_batch;
}

void expect_same_step(const Outcome& actual, const Outcome& expected, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_NEAR(actual.loss.loss, expected.loss.loss, 1e-5 * expected.loss.loss);
  for (const std::string part : {"infonce", "triplet", "distill_feature", "distill_contrastive",
                                 "distill_relational", "rerank"})
    EXPECT_NEAR(actual.loss.part(part), expected.loss.part(part), 1e-5 * expected.loss.part(part))
        << part;
  ASSERT_EQ(actual.gradients.size(), expected.gradients.size());
  double largest = 0;
  for (const auto& gradient : expected.gradients)
    largest = std::max(largest, gradient.second.abs().max().item<double>());
  int nonzero = 0;
  for (size_t i = 0; i < expected.gradients.size(); ++i) {
    ASSERT_EQ(actual.gradients[i].first, expected.gradients[i].first);
    // The micro-batches sum rows in another order: a gradient that is zero but for rounding
    // (an attention key bias's) is compared at 1e-3 of the model's largest gradient.
    expect_close(actual.gradients[i].second, expected.gradients[i].second,
                 expected.gradients[i].first, 1e-3 * largest);
    nonzero += expected.gradients[i].second.abs().max().item<double>() > 0;
  }
  EXPECT_GT(nonzero, static_cast<int>(expected.gradients.size()) / 2) << "gradients are zeros";
}

class GradCacheEquivalence : public ::testing::TestWithParam<MicroCase> {};

TEST_P(GradCacheEquivalence, MatchesTheWholeBatchStepOfOneProcess) {
  auto& world = *test_support::mpi_world;
  ASSERT_EQ(kGlobalBatch % world.world_size(), 0) << "run with 2 or 4 ranks";
  const MicroCase& c = GetParam();
  const ModelConfig model_config =
      c.chinese_clip ? chinese_clip_model() : small_model(ImageTowerType::kVit);
  TrainConfig whole;
  whole.loss_mode = c.loss_mode;
  whole.infonce_weight = c.infonce_weight;
  whole.triplet_weight = c.triplet_weight;
  whole.triplet_margin = 0.5;
  whole.bucket_mb = 0.001;
  TrainConfig micro = whole;
  micro.micro_batch = c.micro_batch;
  const GlobalBatch batch = c.chinese_clip ? make_batch(32, kChineseClipVocab) : make_batch();

  dist::SingleProcessCommunicator single;
  const Outcome reference = run_step(model_config, whole, single, batch, 0, kGlobalBatch);
  if (c.triplet_weight > 0) ASSERT_GT(reference.loss.part("triplet"), 0.0) << "no violated triplet";
  expect_same_step(run_step(model_config, micro, single, batch, 0, kGlobalBatch), reference,
                   "one process, micro-batches");
  const std::int64_t rows = kGlobalBatch / world.world_size();
  expect_same_step(run_step(model_config, micro, world, batch, world.rank() * rows, rows),
                   reference, "every rank, micro-batches");
}

INSTANTIATE_TEST_SUITE_P(TowersAndLosses, GradCacheEquivalence,
                         ::testing::Values(MicroCase{false, LossMode::kLocal, 1.0, 0.0, 1},
                                           MicroCase{false, LossMode::kFull, 1.0, 0.5, 3},
                                           MicroCase{false, LossMode::kLocal, 0.0, 1.0, 2},
                                           MicroCase{true, LossMode::kLocal, 1.0, 0.5, 3}),
                         [](const ::testing::TestParamInfo<MicroCase>& info) {
                           const MicroCase& c = info.param;
                           std::string name = std::string(c.chinese_clip ? "chinese_clip" : "vit") +
                                              "_" + enum_name(c.loss_mode) + "_micro" +
                                              std::to_string(c.micro_batch);
                           if (c.infonce_weight > 0) name += "_infonce";
                           if (c.triplet_weight > 0) name += "_triplet";
                           return name;
                         });

// ---- distillation ------------------------------------------------------------------------------

// The distillation terms (core/train/distill_loss.h) from a teacher of another width (20 against
// the student's 12, so the projections are trained too), whole-batch and micro-batched, against
// one process on the global batch.
struct DistillCase {
  double feature, contrastive, relational;
  std::int64_t micro_batch;
};

void PrintTo(const DistillCase& c, std::ostream* out) {
  *out << "feature " << c.feature << ", contrastive " << c.contrastive << ", relational "
       << c.relational << ", micro-batch " << c.micro_batch;
}

class DistillationEquivalence : public ::testing::TestWithParam<DistillCase> {};

TEST_P(DistillationEquivalence, MatchesTheWholeBatchStepOfOneProcess) {
  auto& world = *test_support::mpi_world;
  ASSERT_EQ(kGlobalBatch % world.world_size(), 0) << "run with 2 or 4 ranks";
  const DistillCase& c = GetParam();
  ModelConfig model_config = small_model(ImageTowerType::kVit);
  model_config.distill_dim = 20;
  TrainConfig whole;
  whole.bucket_mb = 0.001;
  TrainConfig micro = whole;
  micro.micro_batch = c.micro_batch;
  DistillConfig distill;
  distill.teacher_cache = "unused: the rows come with the inputs";
  distill.feature_weight = c.feature;
  distill.contrastive_weight = c.contrastive;
  distill.relational_weight = c.relational;
  distill.teacher_temperature = 0.05;
  const GlobalBatch batch = make_batch();
  torch::manual_seed(13);
  auto unit = [](torch::Tensor x) { return x / x.norm(2, 1, true); };
  const std::map<std::string, torch::Tensor> teacher{
      {kTeacherImagesExtra, unit(torch::randn({kGlobalBatch, 20}))},
      {kTeacherTextsExtra, unit(torch::randn({kGlobalBatch, 20}))}};

  dist::SingleProcessCommunicator single;
  const Outcome reference =
      run_step(model_config, whole, single, batch, 0, kGlobalBatch, distill, teacher);
  for (const auto& [name, weight] : {std::pair<std::string, double>{"distill_feature", c.feature},
                                     {"distill_contrastive", c.contrastive},
                                     {"distill_relational", c.relational}}) {
    if (weight > 0) {
      EXPECT_GT(reference.loss.part(name), 0.0) << name;
    }
  }
  const std::int64_t rows = kGlobalBatch / world.world_size();
  expect_same_step(
      run_step(model_config, whole, world, batch, world.rank() * rows, rows, distill, teacher),
      reference, "every rank, whole batch");
  expect_same_step(
      run_step(model_config, micro, world, batch, world.rank() * rows, rows, distill, teacher),
      reference, "every rank, micro-batches");
}

INSTANTIATE_TEST_SUITE_P(Terms, DistillationEquivalence,
                         ::testing::Values(DistillCase{1.0, 0.0, 0.0, 1},
                                           DistillCase{0.0, 1.0, 0.0, 3},
                                           DistillCase{0.0, 0.0, 1.0, 2},
                                           DistillCase{1.0, 0.5, 0.5, 3}),
                         [](const ::testing::TestParamInfo<DistillCase>& info) {
                           const DistillCase& c = info.param;
                           std::string name;
                           if (c.feature > 0) name += "feature_";
                           if (c.contrastive > 0) name += "contrastive_";
                           if (c.relational > 0) name += "relational_";
                           return name + "micro" + std::to_string(c.micro_batch);
                         });

// ---- learned reranker --------------------------------------------------------------------------

// The reranker's matching loss (core/train/rerank_loss.h) beside InfoNCE: its pairs are chosen on
// the gathered embeddings and its token features are gathered with gradient, so R ranks must
// match one process on the global batch, for the CNN (grid pooled from 4 x 4 to 2 x 2) and the
// ViT tower, with the towers trained or both frozen (only the reranker and the logit scale
// learn).
struct RerankCase {
  ImageTowerType image_type;
  FrozenTower freeze;
};

void PrintTo(const RerankCase& c, std::ostream* out) {
  *out << enum_name(c.image_type) << " tower, frozen: " << enum_name(c.freeze);
}

class RerankEquivalence : public ::testing::TestWithParam<RerankCase> {};

TEST_P(RerankEquivalence, MatchesTheWholeBatchStepOfOneProcess) {
  auto& world = *test_support::mpi_world;
  ASSERT_EQ(kGlobalBatch % world.world_size(), 0) << "run with 2 or 4 ranks";
  const RerankCase& c = GetParam();
  ModelConfig model_config = small_model(c.image_type);
  model_config.reranker.layers = 1;
  model_config.reranker.width = 8;
  model_config.reranker.heads = 2;
  model_config.reranker.mlp = 16;
  model_config.reranker.image_tokens = 4;
  TrainConfig train_config;
  train_config.bucket_mb = 0.001;
  train_config.rerank_weight = 1.0;
  train_config.freeze = c.freeze;
  const GlobalBatch batch = make_batch();

  dist::SingleProcessCommunicator single;
  const Outcome reference = run_step(model_config, train_config, single, batch, 0, kGlobalBatch);
  ASSERT_GT(reference.loss.part("rerank"), 0.0);
  const std::int64_t rows = kGlobalBatch / world.world_size();
  const Outcome sharded =
      run_step(model_config, train_config, world, batch, world.rank() * rows, rows);
  EXPECT_NEAR(sharded.loss.loss, reference.loss.loss, 1e-5 * reference.loss.loss);
  for (const std::string part : {"infonce", "rerank"})
    EXPECT_NEAR(sharded.loss.part(part), reference.loss.part(part),
                1e-5 * reference.loss.part(part))
        << part;
  double largest = 0;
  for (const auto& gradient : reference.gradients)
    largest = std::max(largest, gradient.second.abs().max().item<double>());
  ASSERT_EQ(sharded.gradients.size(), reference.gradients.size());
  for (size_t i = 0; i < reference.gradients.size(); ++i) {
    const auto& [name, expected] = reference.gradients[i];
    ASSERT_EQ(sharded.gradients[i].first, name);
    expect_close(sharded.gradients[i].second, expected, name, 1e-3 * largest);
    const bool in_reranker = name.rfind("reranker.", 0) == 0;
    const double size = expected.abs().max().item<double>();
    // Every reranker weight learns (its head's bias included); frozen towers get nothing.
    if (in_reranker && name.find("weight") != std::string::npos) EXPECT_GT(size, 0.0) << name;
    if (c.freeze == FrozenTower::kBoth && !in_reranker && name != "log_logit_scale") {
      EXPECT_EQ(size, 0.0) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TowersAndFreezing, RerankEquivalence,
                         ::testing::Values(RerankCase{ImageTowerType::kCnn, FrozenTower::kNone},
                                           RerankCase{ImageTowerType::kVit, FrozenTower::kNone},
                                           RerankCase{ImageTowerType::kCnn, FrozenTower::kBoth}),
                         [](const ::testing::TestParamInfo<RerankCase>& info) {
                           return enum_name(info.param.image_type) + "_frozen_" +
                                  enum_name(info.param.freeze);
                         });

}  // namespace
}  // namespace shopclip
