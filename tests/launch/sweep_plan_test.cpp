// The sweep plan: a sweep file's axes expanded into trials (grid, zip, random draws, seeds: counts,
// values, names), `--axis` parsing, refusal of bad files and of trials whose config is invalid,
// and the differences between two specs.

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch/sweep_plan.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::Contains;

SweepSpec parse(const std::string& yaml) {
  return parse_sweep_yaml(yaml, "sweep.yaml", "/s");
}

std::string value_of(const Trial& trial, const std::string& key) {
  for (const auto& [k, v] : trial.assignments)
    if (k == key) return v;
  return "(unset)";
}

TEST(SweepPlan, GridIsTheCartesianProductWithTheLastKeyFastest) {
  const auto trials = expand_trials(parse(R"(
base: {config: configs/tiny.yaml, set: [train.epochs=1]}
grid:
  train.lr: [1.0e-3, 3.0e-4]
  train.batch_size: [64, 128, 256]
)"));
  ASSERT_EQ(trials.size(), 6u);
  EXPECT_EQ(value_of(trials[0], "train.lr"), "1.0e-3");
  EXPECT_EQ(value_of(trials[0], "train.batch_size"), "64");
  EXPECT_EQ(value_of(trials[1], "train.batch_size"), "128");
  EXPECT_EQ(value_of(trials[3], "train.lr"), "3.0e-4");
  EXPECT_EQ(value_of(trials[3], "train.batch_size"), "64");
  EXPECT_EQ(trials[4].name, "004-lr=3.0e-4-batch_size=128");
  EXPECT_EQ(trials[4].index, 4);
  EXPECT_EQ(trials[4].configuration, 4);
  const SweepSpec spec = parse("base: {config: configs/tiny.yaml, set: [train.epochs=1]}");
  EXPECT_EQ(spec.base_config, "/s/configs/tiny.yaml");  // relative to the sweep file
  EXPECT_EQ(
      trials[4].overrides(spec),
      (std::vector<std::string>{"train.epochs=1", "train.lr=3.0e-4", "train.batch_size=128"}));
}

TEST(SweepPlan, ZipVariesListsTogetherAndSeedsRepeatEachConfiguration) {
  const auto trials = expand_trials(parse(R"(
grid: {train.lr: [0.1, 0.2]}
zip:
  train.warmup_steps: [10, 20, 30]
  train.epochs: [1, 2, 3]
seeds: [7, 8]
)"));
  ASSERT_EQ(trials.size(), 2u * 3u * 2u);
  std::set<std::string> zipped;
  for (const auto& trial : trials) {
    zipped.insert(value_of(trial, "train.warmup_steps") + "/" + value_of(trial, "train.epochs"));
    EXPECT_EQ(trial.configuration, trial.index / 2);  // seeds are the fastest axis
    EXPECT_EQ(trial.assignments.back().first, "run.seed");
  }
  EXPECT_EQ(zipped, (std::set<std::string>{"10/1", "20/2", "30/3"}));
  EXPECT_EQ(value_of(trials[0], "run.seed"), "7");
  EXPECT_EQ(value_of(trials[1], "run.seed"), "8");
  EXPECT_EQ(trials[1].name, "001-lr=0.1-warmup_steps=10-epochs=1-seed=8");
}

TEST(SweepPlan, RandomDrawsAreRepeatableAndWithinTheirRanges) {
  const std::string yaml = R"(
random:
  trials: 50
  seed: 3
  params:
    train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
    train.weight_decay: {uniform: [0.0, 0.2]}
    model.embed_dim: {choice: [64, 128]}
    train.warmup_steps: {int: [10, 12]}
)";
  const auto trials = expand_trials(parse(yaml));
  ASSERT_EQ(trials.size(), 50u);
  std::set<std::string> dims, warmups;
  double smallest_lr = 1, largest_lr = 0;
  for (const auto& trial : trials) {
    const double lr = std::stod(value_of(trial, "train.lr"));
    smallest_lr = std::min(smallest_lr, lr);
    largest_lr = std::max(largest_lr, lr);
    const double decay = std::stod(value_of(trial, "train.weight_decay"));
    EXPECT_GE(decay, 0.0);
    EXPECT_LT(decay, 0.2);
    dims.insert(value_of(trial, "model.embed_dim"));
    warmups.insert(value_of(trial, "train.warmup_steps"));
  }
  EXPECT_GE(smallest_lr, 1e-4);
  EXPECT_LE(largest_lr, 1e-2);
  EXPECT_LT(smallest_lr, 1e-3);  // log-uniform: a tenth of the draws fall below 1e-3 ... 1e-4
  EXPECT_EQ(dims, (std::set<std::string>{"64", "128"}));
  EXPECT_EQ(warmups, (std::set<std::string>{"10", "11", "12"}));  // both ends included
  // The same seed draws the same trials; another seed others.
  EXPECT_EQ(expand_trials(parse(yaml))[17].assignments, trials[17].assignments);
  std::string reseeded = yaml;
  reseeded.replace(reseeded.find("seed: 3"), 7, "seed: 4");
  EXPECT_NE(expand_trials(parse(reseeded))[17].assignments, trials[17].assignments);
}

TEST(SweepPlan, NoAxesIsOneTrial) {
  const auto trials = expand_trials(parse("base: {set: [train.epochs=1]}"));
  ASSERT_EQ(trials.size(), 1u);
  EXPECT_EQ(trials[0].name, "000");
}

TEST(SweepPlan, AxisFromTheCommandLineKeepsBracketsWhole) {
  auto [key, values] = parse_axis("model.image.widths=[16,32],[32,64]");
  EXPECT_EQ(key, "model.image.widths");
  EXPECT_EQ(values, (std::vector<std::string>{"[16,32]", "[32,64]"}));
  std::tie(key, values) = parse_axis("train.lr=1e-3,3e-4");
  EXPECT_EQ(values, (std::vector<std::string>{"1e-3", "3e-4"}));
  EXPECT_THROW(parse_axis("train.lr"), std::invalid_argument);
  EXPECT_THROW(parse_axis("train.lr=1,,2"), std::invalid_argument);
}

TEST(SweepPlan, BadFilesAreRefusedNamingTheKey) {
  auto refused = [](const std::string& yaml, const std::string& expected) {
    try {
      expand_trials(parse(yaml));
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(Contains(e.what(), expected)) << e.what();
    }
  };
  refused("grids: {train.lr: [1]}", "'grids': unknown section");
  refused("grid: {train.lr: 1}", "'grid.train.lr': expected a non-empty list");
  refused("zip: {train.lr: [1, 2], train.epochs: [1]}", "zip lists must have one length");
  refused("grid: {train.lr: [1]}\nzip: {train.lr: [2]}", "'train.lr' is varied by two axes");
  refused("grid: {run.seed: [1]}\nseeds: [1, 2]", "'run.seed' is varied by two axes");
  refused("random: {trials: 2, params: {train.lr: {gauss: [0, 1]}}}", "unknown distribution");
  refused("random: {trials: 2, params: {train.lr: {log_uniform: [0, 1]}}}", "low > 0");
  refused("random: {trials: 2, params: {train.lr: {uniform: [1, 1]}}}", "high must exceed low");
  refused("random: {trials: 0, params: {train.lr: {uniform: [0, 1]}}}", "at least 1");
  refused("base: {conf: x.yaml}", "'base.conf': unknown key");
}

TEST(SweepPlan, TrialsWithAnInvalidConfigAreRefusedBeforeAnythingRuns) {
  SweepSpec spec = parse("grid: {train.lr: [0.1, 0.2]}\nseeds: [1]");
  spec.base_config = SHOPCLIP_SOURCE_DIR "/configs/tiny.yaml";
  EXPECT_NO_THROW(validate_trials(spec, expand_trials(spec)));
  auto refused = [&spec](const std::string& key, const std::string& value,
                         const std::string& expected) {
    SweepSpec bad = spec;
    bad.grid.emplace_back(key, std::vector<std::string>{"1", value});
    try {
      validate_trials(bad, expand_trials(bad));
      ADD_FAILURE() << key << "=" << value << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(Contains(e.what(), expected)) << e.what();
    }
  };
  refused("train.learning_rate", "1", "trial 0 (000-lr=0.1-learning_rate=1-seed=1)");
  refused("train.epochs", "many", "trial 1 (");
  refused("train.epochs", "many", "train.epochs");
  refused("train.epochs", "-3", "trial 1 (001-lr=0.1-epochs=-3-seed=1)");
}

TEST(SweepPlan, SpecDifferencesNameTheChangedKeys) {
  const SweepSpec a = parse("grid: {train.lr: [0.1, 0.2]}\nseeds: [1]");
  SweepSpec b = a;
  EXPECT_TRUE(spec_differences(a.to_yaml(), b.to_yaml()).empty());
  b.grid[0].second.push_back("0.3");
  b.seeds = {1, 2};
  const auto changes = spec_differences(a.to_yaml(), b.to_yaml());
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0], "grid.train.lr: [0.1, 0.2] -> [0.1, 0.2, 0.3]");
  EXPECT_EQ(changes[1], "seeds: [1] -> [1, 2]");
  // The canonical YAML reads back to the same trials.
  EXPECT_EQ(expand_trials(parse(b.to_yaml()))[5].name, expand_trials(b)[5].name);
}

// The stopping rule on scripted curves: eta 2, milestones at 10 and 20 steps.
TEST(SuccessiveHalving, StopsTrialsBelowTheTopOneOverEtaOfTheirRung) {
  EarlyStopSpec spec;
  spec.eta = 2;
  spec.milestones = {10, 20};
  SuccessiveHalving rule(spec);
  EXPECT_LT(rule.record(0, 5, 10.0), 0);    // before any milestone
  EXPECT_LT(rule.record(0, 10, 50.0), 0);   // alone at the rung: fewer than eta, goes on
  EXPECT_EQ(rule.record(1, 10, 40.0), 10);  // {50, 40}: only the best 1 goes on
  EXPECT_LT(rule.record(2, 12, 60.0), 0);   // the first evaluation past 10 counts: the best
  EXPECT_LT(rule.record(3, 10, 55.0), 0);   // {60, 55, 50, 40}: top 2 = 60, 55
  EXPECT_LT(rule.record(0, 20, 70.0), 0);   // alone at the second rung
  EXPECT_EQ(rule.record(2, 25, 65.0), 20);  // {70, 65}
  EXPECT_EQ(rule.record(4, 30, 10.0), 10);  // past both at once: fails the first
  EXPECT_LT(rule.record(5, 10, 60.0), 0);   // a tie with the third best of 6 goes on
  EXPECT_LT(rule.record(1, 15, 100.0), 0);  // a second evaluation past a rung is not counted
}

TEST(SweepPlan, EarlyStopIsParsedCheckedAndKeptInTheCanonicalSpec) {
  const SweepSpec spec =
      parse("grid: {train.lr: [1, 2]}\nearly_stop: {eta: 3, unit: minutes, milestones: [2, 6]}");
  EXPECT_TRUE(spec.early_stop.enabled());
  EXPECT_EQ(spec.early_stop.eta, 3);
  EXPECT_EQ(spec.early_stop.unit, EarlyStopSpec::Unit::kMinutes);
  EXPECT_EQ(spec.early_stop.milestones, (std::vector<double>{2, 6}));
  const SweepSpec again = parse(spec.to_yaml());
  EXPECT_EQ(again.early_stop.milestones, spec.early_stop.milestones);
  EXPECT_EQ(again.early_stop.unit, spec.early_stop.unit);
  EXPECT_FALSE(parse("grid: {train.lr: [1]}").early_stop.enabled());
  auto refused = [](const std::string& yaml, const std::string& expected) {
    try {
      parse(yaml);
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(Contains(e.what(), expected)) << e.what();
    }
  };
  refused("early_stop: {eta: 1, milestones: [1]}", "'early_stop.eta': must exceed 1");
  refused("early_stop: {eta: 2, milestones: [5, 5]}", "milestones must increase");
  refused("early_stop: {eta: 2, unit: hours, milestones: [5]}", "steps or minutes");
  refused("early_stop: {eta: 2}", "needs eta and milestones");
}

}  // namespace
}  // namespace shopclip
