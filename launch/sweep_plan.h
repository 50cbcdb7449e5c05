#pragma once
// A sweep's plan: which trials a sweep file (or `shopclip sweep --axis ...`) asks for.
//
// Sweep file (YAML):
//   base:
//     config: configs/tiny.yaml          # the base config (a path, relative to the sweep file)
//     set: [train.epochs=2]              # overrides of every trial ("key=value" strings)
//   grid:                                # cartesian product, keys in file order, last fastest
//     train.lr: [1.0e-3, 3.0e-4]
//     train.batch_size: [64, 128]
//   zip:                                 # lists of one length, varied together
//     train.warmup_steps: [10, 20]
//     train.epochs: [1, 2]
//   random:                              # n trials drawn from per-key distributions
//     trials: 4
//     seed: 7
//     params:
//       train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
//       train.weight_decay: {uniform: [0.0, 0.2]}
//       model.embed_dim: {choice: [128, 256]}
//       train.warmup_steps: {int: [10, 100]}   # both ends included
//   seeds: [1, 2]                        # every configuration once per run.seed
//   early_stop:                          # successive halving (SuccessiveHalving below)
//     eta: 3
//     unit: steps                        # or minutes (of the trial's training)
//     milestones: [200, 600]
// Axes combine as a product: grid x zip x random draws x seeds. Values are YAML, passed to the
// trial as `--set key=value`, so lists work (`model.image.widths: [[16, 32], [32, 64]]`).
//
// Every trial's config is loaded before anything runs (validate_trials): an unknown key or an
// ill-typed value is refused naming the trial and the key.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace shopclip {

// One key and the YAML text of its value.
using Assignment = std::pair<std::string, std::string>;

struct RandomParam {
  enum class Kind { kChoice, kUniform, kLogUniform, kInt };
  std::string key;
  Kind kind = Kind::kChoice;
  std::vector<std::string> choices;  // kChoice: YAML values
  double low = 0, high = 0;          // kUniform, kLogUniform (high > low > 0), kInt (inclusive)
};

// Early stopping of poor trials; off unless eta > 1 and there are milestones.
struct EarlyStopSpec {
  enum class Unit { kSteps, kMinutes };
  double eta = 0;
  Unit unit = Unit::kSteps;
  std::vector<double> milestones;  // increasing
  bool enabled() const { return eta > 1 && !milestones.empty(); }
};

// Successive halving in the manner of ASHA (Li et al., MLSys 2020), as a stopping rule: a trial's
// first valid evaluation at or past a milestone is its score at that rung; it goes on only if
// that score is among the top 1/eta (at least one) of the scores the rung has seen so far, this
// one included. While a rung has seen fewer than eta trials, every trial goes on. Ties go on.
class SuccessiveHalving {
 public:
  explicit SuccessiveHalving(EarlyStopSpec spec);
  // An evaluation of `trial` at `position` (steps or minutes, the spec's unit; increasing per
  // trial) with valid MeanRecall `score`. Returns the milestone the trial failed (the trial is
  // to stop), or a negative number to go on.
  double record(int trial, double position, double score);

 private:
  EarlyStopSpec spec_;
  std::vector<std::map<int, double>> rungs_;  // per milestone: trial -> its score there
};

struct SweepSpec {
  std::string base_config;                                             // path; empty = the defaults
  std::vector<std::string> base_overrides;                             // "key=value"
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;  // key, YAML values
  std::vector<std::pair<std::string, std::vector<std::string>>> zip;   // lists of equal length
  int random_trials = 0;
  std::uint64_t random_seed = 0;
  std::vector<RandomParam> random_params;
  std::vector<std::int64_t> seeds;  // empty: the config's own run.seed
  EarlyStopSpec early_stop;

  // The spec as canonical YAML (what a sweep directory keeps to detect a changed sweep).
  std::string to_yaml() const;
};

struct Trial {
  int index = 0;                        // 0-based, in expansion order
  int configuration = 0;                // trials that differ only in seed share it
  std::vector<Assignment> assignments;  // the varied keys (run.seed last, when seeded)
  std::string name;                     // "003-lr=0.001-batch_size=64-seed=1"
  // --set arguments: the base overrides, then the assignments.
  std::vector<std::string> overrides(const SweepSpec& spec) const;
};

// Parses a sweep file; errors (std::invalid_argument) name the file and the key. The base config
// path is made relative to the sweep file's folder unless absolute.
SweepSpec read_sweep_file(const std::string& path);
SweepSpec parse_sweep_yaml(const std::string& yaml_text, const std::string& source,
                           const std::string& base_dir);

// `--axis key=v1,v2,...` (commas inside brackets or quotes do not split): a grid axis.
std::pair<std::string, std::vector<std::string>> parse_axis(const std::string& text);

// All trials, in order. Throws std::invalid_argument for zip lists of unequal length or a key
// varied by two axes.
std::vector<Trial> expand_trials(const SweepSpec& spec);

// Loads every trial's config (base, overrides, assignments); the first failure throws
// std::invalid_argument "trial N (name): <the config error>".
void validate_trials(const SweepSpec& spec, const std::vector<Trial>& trials);

// What changed between two canonical specs (SweepSpec::to_yaml), as "key: old -> new" lines;
// empty when equal.
std::vector<std::string> spec_differences(const std::string& old_yaml, const std::string& new_yaml);

}  // namespace shopclip
