// Tests for checkpoints: a save/load round trip of weights, BatchNorm statistics, config,
// vocabulary, training position and optimizer state; strict loading; errors that name the file;
// the atomic write leaving no temporary behind; a checkpoint readable after the writing process
// is killed right after the save.

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>
#include <unistd.h>

#include "core/checkpoint.h"
#include "core/model/dual_encoder.h"
#include "core/train/loss.h"
#include "core/train/optim.h"
#include "test_support.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;

Config tiny_config() {
  Config config;
  config.run.dir = "runs/checkpoint-test";
  config.model.embed_dim = 12;
  config.model.image.type = ImageTowerType::kCnn;
  config.model.image.resolution = 16;
  config.model.image.widths = {4, 8};
  config.model.text.context_length = 10;
  config.model.text.width = 16;
  config.model.text.layers = 1;
  config.model.text.heads = 2;
  config.model.text.mlp = 24;
  config.train.lr = 1e-2;
  config.train.batch_size = 4;
  config.validate();
  return config;
}

data::Vocab tiny_vocab() {
  return data::Vocab::from_tokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "包", "邮", "a",
                                   "b", "##c", "d", "e", "f", "g", "h", "i"});
}

DualEncoder make_model(const Config& config, const data::Vocab& vocab) {
  return DualEncoder(config.model, vocab.size(), vocab.pad_id());
}

// Parameters and buffers by name.
std::map<std::string, torch::Tensor> state_of(DualEncoder& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : model->named_parameters(true))
    state[item.key()] = item.value();
  for (const auto& item : model->named_buffers(true))
    state[item.key()] = item.value();
  return state;
}

struct Batch {
  torch::Tensor images, tokens;
};

Batch fixed_batch() {
  torch::manual_seed(123);
  Batch batch;
  batch.images = torch::randn({4, 3, 16, 16});
  batch.tokens = torch::tensor({2, 5,  6,  3,  0,  0,  0, 0, 0, 0,  //
                                2, 7,  8,  9,  3,  0,  0, 0, 0, 0,  //
                                2, 10, 3,  0,  0,  0,  0, 0, 0, 0,  //
                                2, 11, 12, 13, 14, 15, 3, 0, 0, 0},
                               torch::kLong)
                     .view({4, 10});
  return batch;
}

void train_step(DualEncoder& model, torch::optim::Optimizer& optimizer, const Batch& batch) {
  optimizer.zero_grad();
  const auto loss = info_nce_loss(model->encode_image(batch.images),
                                  model->encode_text(batch.tokens), model->logit_scale(), {});
  loss.backward();
  optimizer.step();
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::runtime_error";
  return "";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text)

TEST(Checkpoint, RoundTripRestoresWeightsBuffersConfigAndVocab) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  torch::manual_seed(1);
  DualEncoder model = make_model(config, vocab);
  // Two training-mode passes move the BatchNorm running statistics away from their initial
  // values, so the buffers are worth comparing.
  {
    torch::NoGradGuard no_grad;
    model->train();
    model->encode_image(torch::randn({4, 3, 16, 16}) * 2 + 1);
    model->encode_image(torch::randn({4, 3, 16, 16}));
  }
  const std::string path = dir.file("nested/checkpoints/last.pt");  // folders created on save
  save_checkpoint(path, config, vocab, *model, nullptr, TrainState{});

  LoadedModel loaded = load_model(path);
  EXPECT_FALSE(loaded.model->is_training());
  EXPECT_EQ(loaded.config.to_yaml(), config.to_yaml());
  EXPECT_EQ(loaded.vocab.tokens(), vocab.tokens());
  EXPECT_EQ(loaded.vocab.pad_id(), vocab.pad_id());

  auto original = state_of(model);
  auto restored = state_of(loaded.model);
  ASSERT_EQ(original.size(), restored.size());
  ASSERT_TRUE(original.count("image_tower.bn0.running_mean"));
  EXPECT_GT(original["image_tower.bn0.running_mean"].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(restored["image_tower.bn0.num_batches_tracked"].item<std::int64_t>(), 2);
  for (const auto& [name, tensor] : original) {
    ASSERT_TRUE(restored.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, restored[name])) << name;
  }

  model->eval();
  const auto batch = fixed_batch();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(
      torch::equal(model->encode_image(batch.images), loaded.model->encode_image(batch.images)));
  EXPECT_TRUE(
      torch::equal(model->encode_text(batch.tokens), loaded.model->encode_text(batch.tokens)));
  EXPECT_TRUE(torch::equal(model->logit_scale(), loaded.model->logit_scale()));
}

TEST(Checkpoint, TrainStateRoundTrips) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  DualEncoder model = make_model(config, vocab);
  TrainState state;
  state.epochs_done = 3;
  state.step = 1234567890123;
  state.schedule_steps = 2000000000000;
  state.best_score = 55.123456789;
  state.best_epoch = 2;
  state.evals_since_best = 1;
  state.elapsed_seconds = 98.25;
  save_checkpoint(dir.file("state.pt"), config, vocab, *model, nullptr, state);

  const auto header = read_checkpoint_header(dir.file("state.pt"));
  EXPECT_EQ(header.state.epochs_done, 3);
  EXPECT_EQ(header.state.step, 1234567890123);
  EXPECT_EQ(header.state.schedule_steps, 2000000000000);
  EXPECT_EQ(header.state.best_score, 55.123456789);
  EXPECT_EQ(header.state.best_epoch, 2);
  EXPECT_EQ(header.state.evals_since_best, 1);
  EXPECT_EQ(header.state.elapsed_seconds, 98.25);
  EXPECT_FALSE(header.has_optimizer);
  EXPECT_EQ(header.config.model.image.widths, config.model.image.widths);
  EXPECT_EQ(header.vocab.tokens(), vocab.tokens());

  // A weights-only checkpoint has no optimizer state to load.
  auto optimizer = make_adamw(model, config.train);
  const auto message = error_of([&] { load_optimizer_state(dir.file("state.pt"), *optimizer); });
  EXPECT_CONTAINS(message, dir.file("state.pt"));
  EXPECT_CONTAINS(message, "no optimizer state");
}

TEST(Checkpoint, OptimizerStateRoundTripGivesIdenticalNextStep) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  const Batch batch = fixed_batch();
  torch::manual_seed(2);
  DualEncoder model = make_model(config, vocab);
  model->train();
  auto optimizer = make_adamw(model, config.train);
  train_step(model, *optimizer, batch);
  train_step(model, *optimizer, batch);
  save_checkpoint(dir.file("last.pt"), config, vocab, *model, optimizer.get(), TrainState{});
  EXPECT_TRUE(read_checkpoint_header(dir.file("last.pt")).has_optimizer);

  // Resume: fresh model and optimizer from the file.
  LoadedModel resumed = load_model(dir.file("last.pt"));
  resumed.model->train();
  auto resumed_optimizer = make_adamw(resumed.model, config.train);
  load_optimizer_state(dir.file("last.pt"), *resumed_optimizer);

  // Control: the same weights with a fresh optimizer (no moments, step count 0).
  LoadedModel restarted = load_model(dir.file("last.pt"));
  restarted.model->train();
  auto restarted_optimizer = make_adamw(restarted.model, config.train);

  train_step(model, *optimizer, batch);
  train_step(resumed.model, *resumed_optimizer, batch);
  train_step(restarted.model, *restarted_optimizer, batch);

  auto expected = state_of(model);
  auto got = state_of(resumed.model);
  auto control = state_of(restarted.model);
  double control_difference = 0;
  for (const auto& [name, tensor] : expected) {
    EXPECT_TRUE(torch::equal(tensor, got[name])) << name;
    if (tensor.is_floating_point()) {
      control_difference =
          std::max(control_difference, (tensor - control[name]).abs().max().item<double>());
    }
  }
  // Without the saved moments the step differs, so the equality above is due to the state.
  EXPECT_GT(control_difference, 1e-4);
}

TEST(Checkpoint, StrictLoadingListsMismatchedNames) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  DualEncoder model = make_model(config, vocab);
  const std::string path = dir.file("small.pt");
  save_checkpoint(path, config, vocab, *model, nullptr, TrainState{});

  // Another text width: every text-tower tensor has another shape, the image tower matches.
  Config wider = config;
  wider.model.text.width = 32;
  DualEncoder wide_model = make_model(wider, vocab);
  const auto before = state_of(wide_model)["text_tower.token_embedding.weight"].clone();
  auto message = error_of([&] { load_model_weights(path, *wide_model); });
  EXPECT_CONTAINS(message, path);
  EXPECT_CONTAINS(message, "wrong shape");
  EXPECT_CONTAINS(message, "text_tower.token_embedding.weight");
  EXPECT_CONTAINS(message, "text_tower.positional_embedding");
  EXPECT_CONTAINS(message, "text_tower.blocks.0.fc1.weight");
  EXPECT_EQ(message.find("image_tower.conv0.weight"), std::string::npos) << message;
  EXPECT_EQ(message.find("missing"), std::string::npos) << message;
  // Nothing was copied: the load is all or nothing.
  EXPECT_TRUE(torch::equal(state_of(wide_model)["text_tower.token_embedding.weight"], before));

  // An extra stage: its tensors are missing from the checkpoint.
  Config deeper = config;
  deeper.model.image.widths = {4, 8, 8};
  DualEncoder deep_model = make_model(deeper, vocab);
  message = error_of([&] { load_model_weights(path, *deep_model); });
  EXPECT_CONTAINS(message, "missing");
  EXPECT_CONTAINS(message, "image_tower.conv4.weight");
  EXPECT_CONTAINS(message, "image_tower.bn5.running_var");

  // A stage fewer: the checkpoint has tensors the model does not.
  Config shallower = config;
  shallower.model.image.widths = {4};
  DualEncoder shallow_model = make_model(shallower, vocab);
  message = error_of([&] { load_model_weights(path, *shallow_model); });
  EXPECT_CONTAINS(message, "unexpected");
  EXPECT_CONTAINS(message, "image_tower.conv2.weight");
}

// model.init: a dual encoder's checkpoint starts a model that adds a reranker. The towers'
// tensors are copied, the reranker's keep their fresh values and are named; tensors of another
// shape or unknown to the model are still refused.
TEST(Checkpoint, InitialWeightsMayLackTheModelsNewTensors) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  DualEncoder model = make_model(config, vocab);
  const std::string path = dir.file("towers.pt");
  save_checkpoint(path, config, vocab, *model, nullptr, TrainState{});

  Config with_reranker = config;
  with_reranker.model.reranker.layers = 1;
  with_reranker.model.reranker.width = 8;
  with_reranker.model.reranker.heads = 2;
  with_reranker.model.reranker.mlp = 16;
  torch::manual_seed(99);
  DualEncoder bigger = make_model(with_reranker, vocab);
  const auto fresh_head = state_of(bigger)["reranker.head.weight"].clone();
  EXPECT_CONTAINS(error_of([&] { load_model_weights(path, *bigger); }), "reranker.head.weight");
  const auto fresh = load_model_weights(path, *bigger, /*allow_missing=*/true);
  EXPECT_FALSE(fresh.empty());
  for (const auto& name : fresh)
    EXPECT_EQ(name.rfind("reranker.", 0), 0u) << name;
  auto loaded = state_of(bigger);
  for (const auto& [name, tensor] : state_of(model))
    EXPECT_TRUE(torch::equal(loaded[name], tensor)) << name;
  EXPECT_TRUE(torch::equal(loaded["reranker.head.weight"], fresh_head));

  Config wider = config;
  wider.model.text.width = 32;
  DualEncoder wide_model = make_model(wider, vocab);
  EXPECT_CONTAINS(error_of([&] { load_model_weights(path, *wide_model, true); }), "wrong shape");
}

TEST(Checkpoint, MissingFileErrorNamesPath) {
  test_support::TempDir dir;
  const std::string path = dir.file("absent.pt");
  EXPECT_CONTAINS(error_of([&] { load_model(path); }), path);
  EXPECT_CONTAINS(error_of([&] { read_checkpoint_header(path); }), path);
}

TEST(Checkpoint, NonCheckpointFileErrorNamesPath) {
  test_support::TempDir dir;
  const std::string text_path = dir.file("notes.pt");
  test_support::write_file(text_path, "this is not a checkpoint\n");
  EXPECT_CONTAINS(error_of([&] { load_model(text_path); }), text_path);

  // A valid LibTorch archive that is not a shopclip checkpoint.
  const std::string archive_path = dir.file("other.pt");
  {
    torch::serialize::OutputArchive archive;
    archive.write("weights", torch::ones({2, 2}));
    archive.save_to(archive_path);
  }
  auto message = error_of([&] { load_model(archive_path); });
  EXPECT_CONTAINS(message, archive_path);
  EXPECT_CONTAINS(message, "not a shopclip checkpoint");

  // A shopclip checkpoint of another format version.
  const std::string future_path = dir.file("future.pt");
  {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string("shopclip-checkpoint")));
    archive.write("format_version", c10::IValue(static_cast<std::int64_t>(999)));
    archive.save_to(future_path);
  }
  message = error_of([&] { read_checkpoint_header(future_path); });
  EXPECT_CONTAINS(message, future_path);
  EXPECT_CONTAINS(message, "999");
}

TEST(Checkpoint, SaveLeavesNoTemporaryAndOverwrites) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  DualEncoder model = make_model(config, vocab);
  auto optimizer = make_adamw(model, config.train);
  TrainState state;
  state.step = 1;
  save_checkpoint(dir.file("last.pt"), config, vocab, *model, optimizer.get(), state);
  state.step = 2;
  save_checkpoint(dir.file("last.pt"), config, vocab, *model, optimizer.get(), state);

  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"last.pt"}));
  EXPECT_EQ(read_checkpoint_header(dir.file("last.pt")).state.step, 2);
}

TEST(Checkpoint, SavesToBareFileNameInWorkingDirectory) {
  // A path without a folder ("best.pt") has an empty parent path; saving must still work.
  test_support::TempDir dir;
  const auto previous = fs::current_path();
  fs::current_path(dir.path());
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  DualEncoder model = make_model(config, vocab);
  std::string error;
  try {
    save_checkpoint("best.pt", config, vocab, *model, nullptr, TrainState{});
  } catch (const std::exception& e) {
    error = e.what();
  }
  fs::current_path(previous);
  EXPECT_EQ(error, "");
  EXPECT_TRUE(fs::exists(dir.file("best.pt")));
  EXPECT_FALSE(fs::exists(dir.file("best.pt.tmp")));
}

// A process killed (SIGKILL: no destructors, no atexit handlers, no stdio flush) right after
// save_checkpoint returns must leave a complete, readable checkpoint under the final name that
// replaced the old one whole. A power loss cannot be simulated in a test: what makes the file
// survive one too is that save_checkpoint fsyncs the temporary file before the rename and the
// folder after it (data::commit_file); this test proves the part a process kill can show.
TEST(Checkpoint, ReadableAfterProcessKilledRightAfterSave) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  const std::string path = dir.file("checkpoints/last.pt");
  torch::manual_seed(11);
  DualEncoder old_model = make_model(config, vocab);
  save_checkpoint(path, config, vocab, *old_model, nullptr, TrainState{});
  torch::manual_seed(12);
  DualEncoder model = make_model(config, vocab);
  auto optimizer = make_adamw(model, config.train);
  TrainState state;
  state.step = 42;
  state.epochs_done = 3;

  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork: " << std::strerror(errno);
  if (child == 0) {
    // The child reports only through its exit: gtest assertions here would land in a copy of
    // the parent's state. Exit 3 = save_checkpoint threw.
    try {
      save_checkpoint(path, config, vocab, *model, optimizer.get(), state);
    } catch (...) {
      ::_exit(3);
    }
    ::raise(SIGKILL);
    ::_exit(4);  // not reached
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  pid_t waited = 0;
  while ((waited = ::waitpid(child, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (waited == 0) {  // hung (e.g. a lock held across fork): do not leave it behind
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    FAIL() << "the child saving the checkpoint did not finish within 120 s";
  }
  ASSERT_EQ(waited, child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child did not die by SIGKILL after saving (exit status "
      << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << "; 3 = save_checkpoint threw)";

  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const CheckpointHeader header = read_checkpoint_header(path);
  EXPECT_EQ(header.config.to_yaml(), config.to_yaml());
  EXPECT_EQ(header.vocab.tokens(), vocab.tokens());
  EXPECT_EQ(header.state.step, 42);
  EXPECT_EQ(header.state.epochs_done, 3);
  EXPECT_TRUE(header.has_optimizer);
  const auto stored = read_checkpoint_weights(path);
  const auto expected = state_of(model);
  ASSERT_EQ(stored.size(), expected.size());
  bool differs_from_old = false;
  const auto old_state = state_of(old_model);
  for (const auto& [name, tensor] : expected) {
    ASSERT_TRUE(stored.count(name)) << name;
    EXPECT_TRUE(torch::equal(stored.at(name), tensor)) << name;
    differs_from_old = differs_from_old || !torch::equal(old_state.at(name), tensor);
  }
  EXPECT_TRUE(differs_from_old) << "the two models must differ for the test to mean anything";
}

TEST(Checkpoint, WeightDifferenceAbsoluteAndRelative) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  torch::manual_seed(4);
  DualEncoder model = make_model(config, vocab);
  save_checkpoint(dir.file("a.pt"), config, vocab, *model, nullptr, TrainState{});
  EXPECT_EQ(weight_difference(dir.file("a.pt"), dir.file("a.pt")).absolute, 0.0);

  auto running_var = state_of(model)["image_tower.bn1.running_var"];  // all ones
  auto bias = state_of(model)["text_tower.ln_final.bias"];            // all zeros
  {
    torch::NoGradGuard no_grad;
    running_var.fill_(8.0);
    save_checkpoint(dir.file("b.pt"), config, vocab, *model, nullptr, TrainState{});
    running_var[0] = 8.5;  // 0.5 apart, relative 0.5 / 8
    bias[1] = 0.25;        // 0.25 apart, relative to a tensor of zeros: huge
  }
  save_checkpoint(dir.file("c.pt"), config, vocab, *model, nullptr, TrainState{});
  const WeightDifference difference = weight_difference(dir.file("b.pt"), dir.file("c.pt"));
  EXPECT_DOUBLE_EQ(difference.absolute, 0.5);
  EXPECT_EQ(difference.worst_absolute, "image_tower.bn1.running_var");
  EXPECT_GT(difference.relative, 1e20);
  EXPECT_EQ(difference.worst_relative, "text_tower.ln_final.bias");
  // Reversed, the zeros are in the second file and the bias's scale is 0.25: relative 1.
  const WeightDifference reversed = weight_difference(dir.file("c.pt"), dir.file("b.pt"));
  EXPECT_DOUBLE_EQ(reversed.relative, 1.0);
}

// A NaN difference fails every comparison; weights-diff must refuse it, not skip it.
TEST(Checkpoint, WeightDifferenceRefusesNonFiniteWeights) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  torch::manual_seed(4);
  DualEncoder model = make_model(config, vocab);
  save_checkpoint(dir.file("clean.pt"), config, vocab, *model, nullptr, TrainState{});
  auto running_mean = state_of(model)["image_tower.bn1.running_mean"];
  {
    torch::NoGradGuard no_grad;
    running_mean[2] = std::numeric_limits<float>::quiet_NaN();
  }
  save_checkpoint(dir.file("nan.pt"), config, vocab, *model, nullptr, TrainState{});
  {
    torch::NoGradGuard no_grad;
    running_mean[2] = std::numeric_limits<float>::infinity();
  }
  save_checkpoint(dir.file("inf.pt"), config, vocab, *model, nullptr, TrainState{});

  auto error_of = [&](const std::string& a, const std::string& b) {
    try {
      weight_difference(dir.file(a), dir.file(b));
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // Both files full of the same NaN, NaN in one file only (either side), and Inf.
  for (const auto& [a, b] :
       std::vector<std::pair<std::string, std::string>>{{"nan.pt", "nan.pt"},
                                                        {"clean.pt", "nan.pt"},
                                                        {"nan.pt", "clean.pt"},
                                                        {"inf.pt", "inf.pt"}}) {
    const std::string error = error_of(a, b);
    EXPECT_NE(error.find("non-finite"), std::string::npos) << a << " vs " << b << ": " << error;
    EXPECT_NE(error.find("image_tower.bn1.running_mean"), std::string::npos) << error;
  }
  EXPECT_NE(error_of("clean.pt", "nan.pt").find("1 NaN"), std::string::npos);
  EXPECT_NE(error_of("inf.pt", "clean.pt").find("1 Inf"), std::string::npos);
  EXPECT_EQ(error_of("clean.pt", "clean.pt"), "");
}

// A tensor only one checkpoint holds is an error whichever file is named first.
TEST(Checkpoint, WeightDifferenceRefusesOtherArchitectures) {
  test_support::TempDir dir;
  Config small = tiny_config();
  Config large = small;
  large.model.image.widths.push_back(large.model.image.widths.back());  // one more CNN stage
  const data::Vocab vocab = tiny_vocab();
  DualEncoder small_model = make_model(small, vocab), large_model = make_model(large, vocab);
  save_checkpoint(dir.file("small.pt"), small, vocab, *small_model, nullptr, TrainState{});
  save_checkpoint(dir.file("large.pt"), large, vocab, *large_model, nullptr, TrainState{});
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"small.pt", "large.pt"}, {"large.pt", "small.pt"}}) {
    try {
      weight_difference(dir.file(a), dir.file(b));
      ADD_FAILURE() << a << " vs " << b << " compared without error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("is only in"), std::string::npos) << e.what();
    }
  }
  Config wider = small;
  wider.model.embed_dim *= 2;
  DualEncoder wider_model = make_model(wider, vocab);
  save_checkpoint(dir.file("wider.pt"), wider, vocab, *wider_model, nullptr, TrainState{});
  EXPECT_THROW(weight_difference(dir.file("small.pt"), dir.file("wider.pt")), std::runtime_error);
}

// A soup of identical checkpoints is that checkpoint bit for bit (sums in float64).
TEST(Checkpoint, AverageOfIdenticalCheckpointsIsTheCheckpoint) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  torch::manual_seed(5);
  DualEncoder model = make_model(config, vocab);
  save_checkpoint(dir.file("a.pt"), config, vocab, *model, nullptr, TrainState{});
  const auto original = read_checkpoint_weights(dir.file("a.pt"));
  const auto soup =
      average_checkpoint_weights({dir.file("a.pt"), dir.file("a.pt"), dir.file("a.pt")});
  ASSERT_EQ(soup.size(), original.size());
  for (const auto& [name, tensor] : original) {
    ASSERT_TRUE(soup.count(name)) << name;
    EXPECT_EQ(soup.at(name).scalar_type(), tensor.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(soup.at(name), tensor)) << name;
  }
}

// Two different checkpoints: every floating tensor is their mean; the BatchNorm step counter
// (an integer buffer) is the first checkpoint's.
TEST(Checkpoint, AverageOfTwoCheckpointsIsTheirMean) {
  test_support::TempDir dir;
  const Config config = tiny_config();
  const data::Vocab vocab = tiny_vocab();
  torch::manual_seed(6);
  DualEncoder first = make_model(config, vocab);
  DualEncoder second = make_model(config, vocab);
  auto counter = state_of(second)["image_tower.bn1.num_batches_tracked"];
  {
    torch::NoGradGuard no_grad;
    counter.fill_(7);
  }
  save_checkpoint(dir.file("a.pt"), config, vocab, *first, nullptr, TrainState{});
  save_checkpoint(dir.file("b.pt"), config, vocab, *second, nullptr, TrainState{});
  const auto a = read_checkpoint_weights(dir.file("a.pt"));
  const auto b = read_checkpoint_weights(dir.file("b.pt"));
  const auto soup = average_checkpoint_weights({dir.file("a.pt"), dir.file("b.pt")});
  int compared = 0;
  for (const auto& [name, tensor] : a) {
    if (tensor.is_floating_point()) {
      EXPECT_TRUE(torch::allclose(soup.at(name), (tensor + b.at(name)) / 2, 1e-6, 1e-7)) << name;
      ++compared;
    } else {
      EXPECT_TRUE(torch::equal(soup.at(name), tensor)) << name;
    }
  }
  EXPECT_GT(compared, 10);
  EXPECT_EQ(soup.at("image_tower.bn1.num_batches_tracked").item<std::int64_t>(),
            a.at("image_tower.bn1.num_batches_tracked").item<std::int64_t>());
  // The two random initialisations differ, so the mean is neither of them.
  int moved = 0;
  for (const auto& [name, tensor] : a)
    if (tensor.is_floating_point() && !torch::equal(tensor, b.at(name)))
      moved += torch::equal(soup.at(name), tensor) ? 0 : 1;
  EXPECT_GT(moved, 5);
}

TEST(Checkpoint, AverageRefusesOtherArchitecturesNamingTheFile) {
  test_support::TempDir dir;
  Config small = tiny_config();
  Config wider = small;
  wider.model.embed_dim *= 2;
  const data::Vocab vocab = tiny_vocab();
  DualEncoder small_model = make_model(small, vocab), wider_model = make_model(wider, vocab);
  save_checkpoint(dir.file("small.pt"), small, vocab, *small_model, nullptr, TrainState{});
  save_checkpoint(dir.file("wider.pt"), wider, vocab, *wider_model, nullptr, TrainState{});
  const std::string error = error_of([&] {
    average_checkpoint_weights({dir.file("small.pt"), dir.file("wider.pt")});
  });
  EXPECT_CONTAINS(error, "wider.pt");
  EXPECT_CONTAINS(error, "shape");
  EXPECT_THROW(average_checkpoint_weights({}), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
