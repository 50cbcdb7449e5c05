// The trainer: model selection and early-stopping bookkeeping, and its phases on the tiny built-in
// dataset (callback order, the time budget under a fake clock, pause and resume, fault
// injection). The end-to-end tests cover the command, several ranks and the run directory.

#include <gtest/gtest.h>
#include <algorithm>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/cuda.h>
#include <nlohmann/json.hpp>

#include "core/train/trainer.h"
#include "data/prep.h"
#include "data/synth.h"
#include "test_paths.h"
#include "test_support.h"
#include "tiny_dataset.h"

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

// Both towers frozen (a reranker learning on fixed towers): equal scores move best.pt to the
// latest evaluation; a lower one still does not.
TEST(ModelSelection, TiesWinWhenAsked) {
  TrainState state;
  EXPECT_TRUE(record_evaluation(state, 45.5, 1, true));
  EXPECT_TRUE(record_evaluation(state, 45.5, 2, true));
  EXPECT_EQ(state.best_epoch, 2);
  EXPECT_FALSE(record_evaluation(state, 45.0, 3, true));
  EXPECT_EQ(state.best_epoch, 2);
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

// ---- the Trainer's phases -----------------------------------------------------------------------

// The tiny built-in dataset, made and prepared once for the suite.
class TrainerPhases : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test_support::TempDir();
    test_support::make_tiny_dataset(dir_->file("data"), 3);
    const Config config = base_config("unused");
    for (const std::string split : {"train", "valid"})
      test_support::prepare_split(config, split);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // configs/tiny.yaml with 128-pair batches (9 steps per epoch) and 2 epochs.
  static Config base_config(const std::string& run) {
    return Config::load(SHOPCLIP_SOURCE_DIR "/configs/tiny.yaml",
                        {"data.root=" + dir_->file("data"), "run.dir=" + dir_->file(run),
                         "train.batch_size=128", "train.epochs=2"});
  }

  static test_support::TempDir* dir_;
  dist::SingleProcessCommunicator comm_;
  Logger log_;
};
test_support::TempDir* TrainerPhases::dir_ = nullptr;

// Writes down every callback it receives, in order.
struct Recorder : TrainCallback {
  std::vector<std::string> events;
  std::vector<double> eval_scores;
  std::vector<double> learning_rates;  // of each step, in order
  void on_model_ready(Replicas& replicas) override {
    events.push_back("ready " + std::to_string(replicas.tensors.size() > 0));
  }
  void on_epoch_begin(int epoch, std::int64_t steps) override {
    events.push_back(fmt::format("epoch {} begins with {} steps", epoch, steps));
  }
  void on_step_begin(std::int64_t step) override { events.push_back(fmt::format("step {}", step)); }
  void on_step_end(const StepEvent& event) override {
    events.push_back(fmt::format("step {} done", event.step));
    learning_rates.push_back(event.lr);
  }
  void on_epoch_end(int epoch, double) override {
    events.push_back(fmt::format("epoch {} ends", epoch));
  }
  void on_evaluation(const EvalEvent& event) override {
    events.push_back(fmt::format("eval after epoch {} step {}", event.epoch, event.step));
    eval_scores.push_back(event.scores.mean_recall);
  }
};

std::vector<std::string> expected_epoch(int epoch, std::int64_t first_step, std::int64_t steps) {
  std::vector<std::string> out = {fmt::format("epoch {} begins with {} steps", epoch, steps)};
  for (std::int64_t step = first_step; step < first_step + steps; ++step) {
    out.push_back(fmt::format("step {}", step));
    out.push_back(fmt::format("step {} done", step));
  }
  out.push_back(fmt::format("epoch {} ends", epoch));
  return out;
}

TEST_F(TrainerPhases, CallbacksSeeEveryPhaseInOrder) {
  const Config config = base_config("phases");
  Trainer trainer(config, comm_, TrainOptions{}, log_);
  auto recorder = std::make_shared<Recorder>();
  trainer.add_callback(recorder);
  const TrainSummary summary = trainer.run();

  std::vector<std::string> expected = {"ready 1"};
  for (int epoch = 0; epoch < 2; ++epoch) {
    const auto steps = expected_epoch(epoch, 1 + 9 * epoch, 9);
    expected.insert(expected.end(), steps.begin(), steps.end());
    expected.push_back(fmt::format("eval after epoch {} step {}", epoch + 1, 9 * (epoch + 1)));
  }
  EXPECT_EQ(recorder->events, expected);
  EXPECT_EQ(summary.steps, 18);
  EXPECT_EQ(summary.epochs_done, 2);
  EXPECT_EQ(summary.stop_reason, "all epochs done");
  // Model selection kept the better of the two evaluations, and the final evaluation is of it.
  ASSERT_EQ(recorder->eval_scores.size(), 2u);
  EXPECT_EQ(summary.best_epoch, recorder->eval_scores[1] > recorder->eval_scores[0] ? 2 : 1);
  EXPECT_DOUBLE_EQ(summary.valid.mean_recall,
                   std::max(recorder->eval_scores[0], recorder->eval_scores[1]));
  for (const std::string file :
       {"checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/epoch-0001.pt",
        "checkpoints/epoch-0002.pt", "summary.json", "metrics.jsonl", "predictions/valid.jsonl"}) {
    EXPECT_TRUE(std::filesystem::exists(config.run.dir + "/" + file)) << file;
  }
}

// train.profile_steps writes an operator table of steps 3 to 5 and changes nothing else.
TEST_F(TrainerPhases, ProfilesTheRequestedStepsWithoutChangingTheRun) {
  Config plain = base_config("unprofiled");
  plain.train.epochs = 1;
  Config profiled = base_config("profiled");
  profiled.train.epochs = 1;
  profiled.train.profile_steps = 3;
  const TrainSummary expected = Trainer(plain, comm_, TrainOptions{}, log_).run();
  Trainer trainer(profiled, comm_, TrainOptions{}, log_);
  auto recorder = std::make_shared<Recorder>();
  trainer.add_callback(recorder);
  const TrainSummary summary = trainer.run();
  EXPECT_EQ(summary.valid.mean_recall, expected.valid.mean_recall);
  EXPECT_EQ(recorder->learning_rates.size(), 9u);

  const auto json =
      nlohmann::json::parse(test_support::read_file(profiled.run.dir + "/profile.json"));
  EXPECT_EQ(json["steps"], 3);
  bool convolution = false, backward = false;
  for (const auto& op : json["operators"]) {
    convolution |= op["name"] == "aten::convolution";
    backward |= op["name"].get<std::string>().find("Backward") != std::string::npos;
    EXPECT_GE(op["total_ms"].get<double>() + 1e-9, op["self_ms"].get<double>()) << op;
  }
  EXPECT_TRUE(convolution);
  EXPECT_TRUE(backward);
  EXPECT_LE(json["operator_ms"].get<double>(), json["window_ms"].get<double>());
  const std::string table = test_support::read_file(profiled.run.dir + "/profile.md");
  EXPECT_EQ(table.rfind("# Operator profile of training steps 3 to 5", 0), 0u) << table;
  EXPECT_NE(table.find("| outside operators |"), std::string::npos);
  // Written atomically: no temporary file is left beside the tables.
  EXPECT_FALSE(std::filesystem::exists(profiled.run.dir + "/profile.md.tmp"));
  EXPECT_FALSE(std::filesystem::exists(profiled.run.dir + "/profile.json.tmp"));
  EXPECT_FALSE(std::filesystem::exists(plain.run.dir + "/profile.json"));
}

// A fake clock that advances 1 s whenever it is read: the 20-second budget ends the run early,
// at a deterministic step, with a final evaluation and a summary.
TEST_F(TrainerPhases, TheTimeBudgetStopsTheRunOnAFakeClock) {
  const Config config = base_config("budget");
  Config budgeted = config;
  budgeted.train.max_minutes = 20.0 / 60.0;
  double now = 0;
  Trainer trainer(budgeted, comm_, TrainOptions{}, log_, [&now] { return now += 1.0; });
  auto recorder = std::make_shared<Recorder>();
  trainer.add_callback(recorder);
  const TrainSummary summary = trainer.run();
  EXPECT_LT(summary.steps, 18);
  EXPECT_GT(summary.steps, 0);
  EXPECT_EQ(summary.stop_reason.rfind("time budget", 0), 0u) << summary.stop_reason;
  EXPECT_TRUE(std::filesystem::exists(config.run.dir + "/summary.json"));
  // The stop happened after a whole step and was followed by an evaluation.
  EXPECT_EQ(recorder->events.back().rfind("eval after epoch", 0), 0u) << recorder->events.back();
}

// A paused run resumes at its step, and ends with the weights of an uninterrupted one.
TEST_F(TrainerPhases, APausedRunResumesAtItsStepWithTheSameWeights) {
  const Config whole_config = base_config("whole");
  Trainer(whole_config, comm_, TrainOptions{}, log_).run();

  const Config config = base_config("paused");
  TrainOptions pause;
  pause.stop_after_steps = 5;
  const TrainSummary paused = Trainer(config, comm_, pause, log_).run();
  EXPECT_TRUE(paused.paused);
  EXPECT_EQ(paused.steps, 5);
  EXPECT_FALSE(std::filesystem::exists(config.run.dir + "/summary.json"));

  TrainOptions resume;
  resume.resume = true;
  Trainer resumed(config, comm_, resume, log_);
  auto recorder = std::make_shared<Recorder>();
  resumed.add_callback(recorder);
  const TrainSummary summary = resumed.run();
  ASSERT_GE(recorder->events.size(), 3u);
  EXPECT_EQ(recorder->events[1], "epoch 0 begins with 4 steps");
  EXPECT_EQ(recorder->events[2], "step 6");
  EXPECT_EQ(summary.steps, 18);
  const auto difference = weight_difference(whole_config.run.dir + "/checkpoints/last.pt",
                                            config.run.dir + "/checkpoints/last.pt");
  EXPECT_EQ(difference.absolute, 0.0) << difference.worst_absolute;
}

// train.checkpoint_every_minutes on a fake clock (1 s per read, a save due every 6 s): a run that
// fails before step 8 has saved last.pt inside epoch 0, and --resume-if-present continues from
// there and ends with the weights of an uninterrupted run.
TEST_F(TrainerPhases, CheckpointsByTimeInsideAnEpochAndResumesFromThem) {
  const Config whole_config = base_config("whole-by-time");
  Trainer(whole_config, comm_, TrainOptions{}, log_).run();

  Config config = base_config("by-time");
  config.train.checkpoint_every_minutes = 0.1;
  TrainOptions failing;
  failing.faults.fail_at_step = 8;
  double now = 0;
  auto fake_clock = [&now] { return now += 1.0; };
  EXPECT_THROW(Trainer(config, comm_, failing, log_, fake_clock).run(), std::runtime_error);
  const TrainState saved = read_checkpoint_header(config.run.dir + "/checkpoints/last.pt").state;
  EXPECT_GT(saved.step, 0);  // saved by time: the epoch (9 steps) never ended
  EXPECT_LT(saved.step, 8);
  EXPECT_EQ(saved.epochs_done, 0);

  TrainOptions resume;
  resume.resume_if_present = true;
  Trainer resumed(config, comm_, resume, log_, fake_clock);
  auto recorder = std::make_shared<Recorder>();
  resumed.add_callback(recorder);
  const TrainSummary summary = resumed.run();
  ASSERT_GE(recorder->events.size(), 3u);
  EXPECT_EQ(recorder->events[2], fmt::format("step {}", saved.step + 1));
  EXPECT_EQ(summary.steps, 18);
  const auto difference = weight_difference(whole_config.run.dir + "/checkpoints/last.pt",
                                            config.run.dir + "/checkpoints/last.pt");
  EXPECT_EQ(difference.absolute, 0.0) << difference.worst_absolute;
}

// train.ema_decay: both weights are evaluated each time, best.pt keeps the better (and the summary
// says which), last.pt carries the average, and a paused run resumes it exactly.
TEST_F(TrainerPhases, TheWeightAverageIsEvaluatedKeptAndResumedExactly) {
  struct Evaluations : TrainCallback {
    std::vector<std::pair<std::string, double>> scores;  // (weights, MeanRecall) in order
    void on_evaluation(const EvalEvent& event) override {
      scores.emplace_back(event.weights, event.scores.mean_recall);
    }
  };
  Config whole_config = base_config("ema-whole");
  whole_config.train.ema_decay = 0.9;
  Trainer whole(whole_config, comm_, TrainOptions{}, log_);
  auto evaluations = std::make_shared<Evaluations>();
  whole.add_callback(evaluations);
  const TrainSummary summary = whole.run();

  ASSERT_EQ(evaluations->scores.size(), 4u);  // two epochs, raw then average
  double best = -1;
  bool best_is_average = false;
  for (std::size_t i = 0; i < 4; i += 2) {
    EXPECT_EQ(evaluations->scores[i].first, "raw");
    EXPECT_EQ(evaluations->scores[i + 1].first, "ema");
    const double raw = evaluations->scores[i].second, ema = evaluations->scores[i + 1].second;
    if (std::max(raw, ema) > best) {
      best = std::max(raw, ema);
      best_is_average = ema > raw;
    }
  }
  EXPECT_DOUBLE_EQ(summary.valid.mean_recall, best) << "the final evaluation is of the winner";
  EXPECT_EQ(summary.best_is_average, best_is_average);
  EXPECT_EQ(
      read_checkpoint_header(whole_config.run.dir + "/checkpoints/best.pt").state.best_is_average,
      best_is_average);
  const std::string metrics = test_support::read_file(whole_config.run.dir + "/metrics.jsonl");
  EXPECT_TRUE(test_support::Contains(metrics, R"("type":"eval_ema")"));
  EXPECT_TRUE(test_support::Contains(
      test_support::read_file(whole_config.run.dir + "/summary.json"),
      best_is_average ? R"("best_weights": "ema")" : R"("best_weights": "raw")"));

  // The average differs from the raw weights (it is not a copy) ...
  const std::string whole_last = whole_config.run.dir + "/checkpoints/last.pt";
  const auto average = read_checkpoint_average(whole_last);
  const auto weights = read_checkpoint_weights(whole_last);
  ASSERT_FALSE(average.empty());
  double largest_gap = 0;
  for (const auto& [name, tensor] : average) {
    ASSERT_EQ(weights.count(name), 1u) << name;
    if (tensor.is_floating_point())
      largest_gap = std::max(largest_gap, (tensor - weights.at(name)).abs().max().item<double>());
  }
  EXPECT_GT(largest_gap, 1e-4);

  // ... and a run paused at step 5 and resumed ends with the same average, bit for bit.
  Config config = base_config("ema-paused");
  config.train.ema_decay = 0.9;
  TrainOptions pause;
  pause.stop_after_steps = 5;
  Trainer(config, comm_, pause, log_).run();
  TrainOptions resume;
  resume.resume = true;
  Trainer(config, comm_, resume, log_).run();
  const auto resumed = read_checkpoint_average(config.run.dir + "/checkpoints/last.pt");
  ASSERT_EQ(resumed.size(), average.size());
  for (const auto& [name, tensor] : average)
    EXPECT_TRUE(torch::equal(resumed.at(name), tensor)) << name;
}

// Every technique of the recipe issue at once (Chinese-CLIP's image recipe, word swaps, MixGen,
// GradCache micro-batches, hard-negative mining from epoch 2, weight averaging): a run paused
// inside epoch 2, after its mining, and resumed ends with the weights of an uninterrupted run,
// because every random view is keyed by (seed, epoch, step, row) and the mined lists are read
// back from the run directory.
TEST_F(TrainerPhases, ARunWithEveryTechniqueResumesBitIdentically) {
  const std::vector<std::string> techniques = {
      "train.augment=chinese_clip", "train.text_augment.swap=0.5", "train.mixgen=0.25",
      "train.micro_batch=48",       "train.mine_every=1",          "train.mine_depth=10",
      "train.ema_decay=0.9"};
  const auto configured = [&](const std::string& run) {
    Config config = base_config(run);
    for (const auto& setting : techniques)
      config = Config::from_yaml(config.to_yaml(), "test", {setting});
    return config;
  };
  const Config whole_config = configured("all-whole");
  const TrainSummary whole = Trainer(whole_config, comm_, TrainOptions{}, log_).run();
  EXPECT_EQ(whole.steps, 18);
  EXPECT_TRUE(std::filesystem::exists(whole_config.run.dir + "/mined_negatives.pt"));
  const std::string log = test_support::read_file(whole_config.run.dir + "/log.txt");
  EXPECT_TRUE(test_support::Contains(log, "mining before epoch 2")) << log;
  EXPECT_TRUE(test_support::Contains(log, "mined pairs")) << log;

  const Config config = configured("all-paused");
  TrainOptions pause;
  pause.stop_after_steps = 12;  // inside epoch 2 (steps 10..18), after its mining
  Trainer(config, comm_, pause, log_).run();
  TrainOptions resume;
  resume.resume = true;
  Trainer(config, comm_, resume, log_).run();
  const auto difference = weight_difference(whole_config.run.dir + "/checkpoints/last.pt",
                                            config.run.dir + "/checkpoints/last.pt");
  EXPECT_EQ(difference.absolute, 0.0) << difference.worst_absolute;
  const std::string resumed_log = test_support::read_file(config.run.dir + "/log.txt");
  EXPECT_FALSE(test_support::Contains(resumed_log, "mining again")) << "the lists were read back";
}

// prep.resolution: the training split prepared at 48 pixels for a 32-pixel model, cropped by
// Chinese-CLIP's recipe and resized by the loader; valid stays at 32.
TEST_F(TrainerPhases, TrainsFromALargerStoredTrainingSplit) {
  Config config = base_config("larger-prep");
  config =
      Config::from_yaml(config.to_yaml(), "test",
                        {"prep.resolution=48", "train.augment=chinese_clip", "train.epochs=1"});
  ASSERT_EQ(config.prep_split_dir("train"), dir_->file("data/prep-r48/train"));
  test_support::prepare_split(config, "train");
  const TrainSummary summary = Trainer(config, comm_, TrainOptions{}, log_).run();
  EXPECT_EQ(summary.steps, 9);
  EXPECT_GT(summary.valid.queries, 0);
}

// A time budget that fits far fewer steps than train.warmup_steps: under a budget warm-up takes at
// most 10% of the schedule (fitted after 20 steps), so the run reaches the peak learning rate,
// and its last step is at the floor.
TEST_F(TrainerPhases, AShortBudgetStillReachesThePeakAndDecays) {
  Config config = base_config("short-warmup");
  config.train.epochs = 20;  // 180 planned steps
  config.train.warmup_steps = 1000;
  config.train.min_lr_ratio = 0.1;
  config.train.max_minutes = 0.5;
  // A clock that moves 1 s as each step begins and not otherwise: about 30 steps fit the budget.
  double now = 0;
  struct Tick : TrainCallback {
    double* now;
    void on_step_begin(std::int64_t) override { *now += 1.0; }
  };
  auto tick = std::make_shared<Tick>();
  tick->now = &now;
  Trainer trainer(config, comm_, TrainOptions{}, log_, [&now] { return now; });
  auto recorder = std::make_shared<Recorder>();
  trainer.add_callback(recorder);
  trainer.add_callback(tick);
  const TrainSummary summary = trainer.run();
  const auto& lrs = recorder->learning_rates;
  ASSERT_GT(summary.steps, 25) << "the schedule must be fitted (after 20 steps)";
  ASSERT_LT(summary.steps, 180) << "the budget must shorten the schedule";
  EXPECT_DOUBLE_EQ(*std::max_element(lrs.begin(), lrs.end()), config.train.lr);
  EXPECT_NEAR(lrs.back(), config.train.lr * config.train.min_lr_ratio, 1e-12)
      << "the last of " << lrs.size() << " steps";
}

// train.warmup_fraction replaces warmup_steps with a share of the schedule.
TEST_F(TrainerPhases, WarmupFractionIsAShareOfTheSchedule) {
  Config config = base_config("warmup-fraction");  // 18 steps
  config.train.warmup_fraction = 0.5;
  auto recorder = std::make_shared<Recorder>();
  Trainer trainer(config, comm_, TrainOptions{}, log_);
  trainer.add_callback(recorder);
  trainer.run();
  const auto& lrs = recorder->learning_rates;
  ASSERT_EQ(lrs.size(), 18u);
  for (int step = 0; step < 9; ++step)  // 9 warm-up steps reach the peak at the ninth
    EXPECT_NEAR(lrs[step], config.train.lr * (step + 1) / 9, 1e-12) << step;
  EXPECT_LT(lrs[17], lrs[9]);
}

// A finished run resumed with more train.epochs keeps its learning-rate schedule, which has ended:
// it stops at once and says why, rather than train on at a rate of 0.
TEST_F(TrainerPhases, ResumingAFinishedRunWithMoreEpochsNamesTheEndOfItsSchedule) {
  Config config = base_config("extended");
  const TrainSummary first = Trainer(config, comm_, TrainOptions{}, log_).run();
  config.train.epochs += 1;
  TrainOptions resume;
  resume.resume = true;
  const TrainSummary summary = Trainer(config, comm_, resume, log_).run();
  EXPECT_LE(summary.steps, first.steps + 1);
  EXPECT_EQ(summary.stop_reason.rfind("end of the run's learning-rate schedule", 0), 0u)
      << summary.stop_reason;
}

// --resume-if-present in a run directory without a checkpoint starts the run.
TEST_F(TrainerPhases, ResumeIfPresentStartsARunWithoutCheckpoint) {
  TrainOptions options;
  options.resume_if_present = true;
  options.stop_after_steps = 2;
  const TrainSummary summary = Trainer(base_config("fresh"), comm_, options, log_).run();
  EXPECT_EQ(summary.steps, 2);
}

TEST_F(TrainerPhases, AnInjectedFailureStopsTheRunBeforeItsStep) {
  TrainOptions options;
  options.faults.fail_at_step = 3;
  Trainer trainer(base_config("failing"), comm_, options, log_);
  auto recorder = std::make_shared<Recorder>();
  trainer.add_callback(recorder);
  try {
    trainer.run();
    FAIL() << "no failure";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(test_support::Contains(e.what(), "injected failure before step 3"));
  }
  // Steps 1 and 2 ran; the failure came before step 3 reached the extra callback.
  EXPECT_EQ(recorder->events.back(), "step 2 done");
}

}  // namespace
}  // namespace shopclip
