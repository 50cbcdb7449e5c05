// `shopclip sweep`: runs a sweep's trials (launch/sweep_plan.h) and tabulates their results.
//
// Sweep directory:
//   sweep.yaml          the canonical spec; a later run with another spec is refused, naming
//                       what changed
//   trials/<name>/      one run directory per trial (train's run directory, plus stdout.log and
//                       exit_status, the trial process's output and status)
//   results.csv, results.md   one row per configuration (seeds pooled)
//   results.html        the table and MeanRecall against each varied key (core/report/html.h)
//
// Every trial is a child process: `shopclip train` (under `mpirun -np N` with --launcher mpirun)
// with --resume-if-present, so running the sweep again skips finished trials (summary.json) and
// resumes interrupted ones from their last checkpoint. Before the trials, each distinct prep
// folder the trials need is prepared once.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/report/analysis.h"
#include "core/report/html.h"
#include "data/files.h"
#include "launch/child_process.h"
#include "launch/commands.h"
#include "launch/sweep_plan.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct SweepOptions {
  std::string file;
  ConfigOptions config;
  std::vector<std::string> axes;
  std::vector<std::int64_t> seeds;
  std::string out;
  std::string launcher = "local";
  int ranks = 2;
  int array_limit = 0;  // slurm: tasks of the array at once (0 = no limit)
  std::string sbatch_args;
  int parallel = 1;
  bool dry_run = false;
  std::string status;
  int baseline = 0;  // the configuration others are compared with
  int resamples = 2000;
};

SweepSpec spec_from_options(const SweepOptions& options) {
  SweepSpec spec;
  if (!options.file.empty()) spec = read_sweep_file(options.file);
  if (!options.config.path.empty()) spec.base_config = fs::absolute(options.config.path).string();
  spec.base_overrides.insert(spec.base_overrides.end(), options.config.overrides.begin(),
                             options.config.overrides.end());
  for (const auto& axis : options.axes)
    spec.grid.push_back(parse_axis(axis));
  if (!options.seeds.empty()) spec.seeds = options.seeds;
  return spec;
}

// The valid evaluations in a run's metrics.jsonl, in order (a partly written last line is left
// for the next read).
std::vector<json> evaluation_rows(const std::string& run_dir) {
  std::vector<json> rows;
  const std::string path = run_dir + "/metrics.jsonl";
  if (!fs::exists(path)) return rows;
  std::istringstream lines(data::read_whole_file(path));
  for (std::string line; std::getline(lines, line);) {
    const json row = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_object() && row.value("type", "") == "eval") rows.push_back(row);
  }
  return rows;
}

// Written by the sweep when the early-stopping rule stops a trial: why.
constexpr const char* kEarlyStopFile = "/early_stopped";

// A trial is done when train wrote its summary (and did not merely pause), or when the early-
// stopping rule stopped it.
bool trial_done(const std::string& run_dir) {
  if (fs::exists(run_dir + kEarlyStopFile)) return true;
  const std::string path = run_dir + "/summary.json";
  if (!fs::exists(path)) return false;
  return !json::parse(data::read_whole_file(path)).value("paused", false);
}

std::string trial_status(const std::string& run_dir) {
  if (fs::exists(run_dir + kEarlyStopFile)) return data::read_whole_file(run_dir + kEarlyStopFile);
  if (trial_done(run_dir)) return "done";
  const std::string status_path = run_dir + "/exit_status";
  if (fs::exists(status_path)) {
    return "failed (exit " + data::read_whole_file(status_path) + ")";
  }
  if (fs::exists(run_dir + "/checkpoints/last.pt")) return "interrupted";
  return fs::exists(run_dir) ? "started" : "pending";
}

struct Row {
  std::string configuration;          // the varied keys except run.seed
  std::vector<std::string> run_dirs;  // of the finished trials
  std::vector<const Trial*> trials;
  std::map<std::string, std::vector<double>> values;  // metric -> one value per finished seed
  std::vector<std::string> statuses;
};

// Mean and sample standard deviation (n - 1) of one metric over a configuration's seeds.
struct Stats {
  std::size_t n = 0;
  double mean = 0, sd = 0;
};

Stats stats_of(const std::vector<double>& values) {
  Stats stats;
  stats.n = values.size();
  if (values.empty()) return stats;
  for (const double v : values)
    stats.mean += v;
  stats.mean /= values.size();
  if (values.size() < 2) return stats;
  double squares = 0;
  for (const double v : values)
    squares += (v - stats.mean) * (v - stats.mean);
  stats.sd = std::sqrt(squares / (values.size() - 1));
  return stats;
}

// "93.10 ± 0.42" (one seed: "93.10"; none: "-").
std::string mean_sd(const Stats& stats, int decimals) {
  if (stats.n == 0) return "-";
  if (stats.n == 1) return fmt::format("{:.{}f}", stats.mean, decimals);
  return fmt::format("{:.{}f} ± {:.{}f}", stats.mean, decimals, stats.sd, decimals);
}

std::vector<Row> collect_rows(const std::vector<Trial>& trials, const std::string& dir) {
  std::vector<Row> rows;
  for (const auto& trial : trials) {
    if (trial.configuration >= static_cast<int>(rows.size())) {
      rows.emplace_back();
      for (const auto& [key, value] : trial.assignments) {
        if (key == "run.seed") continue;
        rows.back().configuration +=
            (rows.back().configuration.empty() ? "" : " ") + key + "=" + value;
      }
      if (rows.back().configuration.empty()) rows.back().configuration = "(base)";
    }
    Row& row = rows[trial.configuration];
    row.trials.push_back(&trial);
    const std::string run_dir = dir + "/trials/" + trial.name;
    row.statuses.push_back(trial_status(run_dir));
    if (!trial_done(run_dir)) continue;
    if (fs::exists(run_dir + kEarlyStopFile)) {  // its last evaluation; no final one
      const auto evaluations = evaluation_rows(run_dir);
      if (evaluations.empty()) continue;
      for (const char* metric : {"r1", "r5", "r10", "mean_recall"})
        row.values[metric].push_back(evaluations.back().at(metric).get<double>());
      row.values["minutes"].push_back(evaluations.back().at("elapsed_s").get<double>() / 60);
      continue;
    }
    row.run_dirs.push_back(run_dir);
    const json summary = json::parse(data::read_whole_file(run_dir + "/summary.json"));
    const json& valid = summary.at("valid");
    for (const char* metric : {"r1", "r5", "r10", "mean_recall"})
      row.values[metric].push_back(valid.at(metric).get<double>());
    row.values["samples_per_s"].push_back(summary.at("samples_per_second").get<double>());
    row.values["minutes"].push_back(summary.at("wall_seconds_total").get<double>() / 60);
  }
  return rows;
}

// Each valid query's MeanRecall share, averaged over the row's finished seeds.
std::vector<double> per_query_mean_recall(const Row& row) {
  std::vector<double> sums;
  for (const auto& run_dir : row.run_dirs) {
    const RunResults results = load_run_results(run_dir, "valid");
    if (sums.empty()) sums.assign(results.queries.size(), 0.0);
    if (sums.size() != results.queries.size()) {
      throw std::runtime_error(run_dir + ": another number of valid queries than its seeds'");
    }
    for (std::size_t q = 0; q < sums.size(); ++q)
      sums[q] += results.queries[q].mean_recall();
  }
  for (double& sum : sums)
    sum /= row.run_dirs.size();
  return sums;
}

// MeanRecall difference of each configuration from the baseline one: the paired bootstrap over
// valid queries (of seed-averaged per-query recall) that `shopclip compare` uses. Known once
// both rows have every seed done.
struct Difference {
  bool known = false;
  PairedBootstrap bootstrap;
};

std::vector<Difference> differences_from_baseline(const std::vector<Row>& rows,
                                                  const SweepOptions& options) {
  std::vector<Difference> out(rows.size());
  if (options.baseline < 0 || options.baseline >= static_cast<int>(rows.size())) {
    throw std::invalid_argument(fmt::format("sweep: --baseline {} is not a configuration (0 to {})",
                                            options.baseline, rows.size() - 1));
  }
  const Row& base = rows[options.baseline];
  if (base.run_dirs.size() != base.trials.size()) return out;
  const auto base_recall = per_query_mean_recall(base);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (static_cast<int>(r) == options.baseline) continue;
    if (rows[r].run_dirs.size() != rows[r].trials.size()) continue;
    out[r].known = true;
    out[r].bootstrap =
        paired_bootstrap(base_recall, per_query_mean_recall(rows[r]), options.resamples, 1);
  }
  return out;
}

// results.html: the table, and for each varied key MeanRecall against its values (the mean over
// the finished configurations with that value, and the best of them).
void write_results_page(const std::vector<Trial>& trials, const std::vector<Row>& rows,
                        const std::vector<std::vector<std::string>>& table_rows,
                        const std::vector<std::string>& headers, const std::string& dir) {
  html::Page page("Sweep " + fs::path(dir).filename().string());
  std::size_t done = 0;
  for (const auto& row : rows)
    done += row.values.count("mean_recall") ? row.values.at("mean_recall").size() : 0;
  page.paragraph(fmt::format("{} trials in {} configurations, {} finished. Directory: {}",
                             trials.size(), rows.size(), done, dir));
  page.raw(html::table(headers, table_rows));
  std::vector<std::string> keys;  // varied keys, in order
  for (const auto& trial : trials)
    for (const auto& [key, value] : trial.assignments)
      if (key != "run.seed" && std::find(keys.begin(), keys.end(), key) == keys.end())
        keys.push_back(key);
  for (const auto& key : keys) {
    std::vector<std::string> labels;
    std::map<std::string, std::vector<double>> by_value;  // value -> configurations' means
    for (const auto& row : rows) {
      const Trial& first = *row.trials.front();
      const auto it = std::find_if(first.assignments.begin(), first.assignments.end(),
                                   [&key](const Assignment& a) { return a.first == key; });
      if (it == first.assignments.end()) continue;
      if (!by_value.count(it->second)) labels.push_back(it->second);
      auto& means = by_value[it->second];
      if (const auto values = row.values.find("mean_recall");
          values != row.values.end() && !values->second.empty()) {
        means.push_back(stats_of(values->second).mean);
      }
    }
    html::Bars mean{"mean over configurations", {}}, best{"best configuration", {}};
    for (const auto& label : labels) {
      const auto& means = by_value[label];
      const double nan = std::numeric_limits<double>::quiet_NaN();
      mean.values.push_back(means.empty() ? nan : stats_of(means).mean);
      best.values.push_back(means.empty() ? nan : *std::max_element(means.begin(), means.end()));
    }
    page.raw(html::bar_chart_svg("valid MeanRecall by " + key, labels, {mean, best},
                                 "valid MeanRecall"));
  }
  page.write(dir + "/results.html");
}

void write_results(const std::vector<Trial>& trials, const std::string& dir,
                   const SweepOptions& options) {
  const std::vector<std::string> headers = {"configuration",
                                            "seeds",
                                            "R@1",
                                            "R@5",
                                            "R@10",
                                            "MeanRecall",
                                            "vs baseline: MeanRecall [95 % CI] p",
                                            "samples/s",
                                            "minutes",
                                            "status"};
  std::vector<std::vector<std::string>> table_rows;
  std::string csv =
      "configuration,seeds_done,seeds,r1,r5,r10,mean_recall,mean_recall_sd,vs_baseline,"
      "vs_baseline_ci_low,vs_baseline_ci_high,vs_baseline_p,samples_per_s,minutes,status\n";
  std::string md =
      "| configuration | seeds | R@1 | R@5 | R@10 | MeanRecall | vs baseline: MeanRecall "
      "[95 % CI] p | samples/s | minutes | status |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  const auto rows = collect_rows(trials, dir);
  const auto differences = differences_from_baseline(rows, options);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const Row& row = rows[r];
    std::map<std::string, Stats> metric;
    for (const char* name : {"r1", "r5", "r10", "mean_recall", "samples_per_s", "minutes"}) {
      const auto it = row.values.find(name);
      metric[name] = it == row.values.end() ? Stats{} : stats_of(it->second);
    }
    const std::set<std::string> distinct(row.statuses.begin(), row.statuses.end());
    std::string status;
    for (const auto& s : distinct)
      status += (status.empty() ? "" : ", ") + s;
    auto plain = [&metric](const char* name) {
      return metric[name].n == 0 ? std::string() : fmt::format("{:.4f}", metric[name].mean);
    };
    std::string versus = static_cast<int>(r) == options.baseline ? "baseline" : "-";
    std::string versus_csv = ",,,";
    if (differences[r].known) {
      const PairedBootstrap& d = differences[r].bootstrap;
      versus = fmt::format("{:+.2f} [{:+.2f}, {:+.2f}] p={:.3f}", d.mean_difference, d.ci_low,
                           d.ci_high, d.p_value);
      versus_csv = fmt::format("{:.4f},{:.4f},{:.4f},{:.4f}", d.mean_difference, d.ci_low,
                               d.ci_high, d.p_value);
    }
    const Stats& recall = metric["mean_recall"];
    csv += fmt::format("\"{}\",{},{},{},{},{},{},{},{},{},{},\"{}\"\n", row.configuration, recall.n,
                       row.trials.size(), plain("r1"), plain("r5"), plain("r10"),
                       plain("mean_recall"), recall.n > 1 ? fmt::format("{:.4f}", recall.sd) : "",
                       versus_csv, plain("samples_per_s"), plain("minutes"), status);
    table_rows.push_back(
        {html::escape(row.configuration), fmt::format("{}/{}", recall.n, row.trials.size()),
         mean_sd(metric["r1"], 2), mean_sd(metric["r5"], 2), mean_sd(metric["r10"], 2),
         mean_sd(recall, 2), html::escape(versus), mean_sd(metric["samples_per_s"], 1),
         mean_sd(metric["minutes"], 2), html::escape(status)});
    md +=
        fmt::format("| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |\n", row.configuration,
                    recall.n, row.trials.size(), mean_sd(metric["r1"], 2), mean_sd(metric["r5"], 2),
                    mean_sd(metric["r10"], 2), mean_sd(recall, 2), versus,
                    mean_sd(metric["samples_per_s"], 1), mean_sd(metric["minutes"], 2), status);
  }
  data::write_file_atomic(dir + "/results.csv", csv);
  data::write_file_atomic(dir + "/results.md", md);
  write_results_page(trials, rows, table_rows, headers, dir);
}

// The sweep directory's spec: written the first time, compared afterwards.
void claim_directory(const SweepSpec& spec, const std::string& dir) {
  fs::create_directories(dir + "/trials");
  const std::string path = dir + "/sweep.yaml";
  const std::string yaml = spec.to_yaml();
  if (!fs::exists(path)) {
    data::write_file_atomic(path, yaml);
    return;
  }
  const auto changes = spec_differences(data::read_whole_file(path), yaml);
  if (!changes.empty()) {
    std::string list;
    for (const auto& change : changes)
      list += "\n  " + change;
    throw std::invalid_argument(fmt::format(
        "{} holds another sweep; what changed:{}\nuse another --out, or the sweep as it was", path,
        list));
  }
}

std::vector<std::string> trial_command(const SweepOptions& options, const SweepSpec& spec,
                                       const Trial& trial, const std::string& run_dir) {
  std::vector<std::string> argv;
  if (options.launcher == "mpirun") {
    argv = {"mpirun", "-np", std::to_string(options.ranks), "--bind-to", "none"};
  }
  argv.push_back(self_binary());
  argv.push_back("train");
  if (!spec.base_config.empty()) argv.insert(argv.end(), {"--config", spec.base_config});
  for (const auto& override : trial.overrides(spec))
    argv.insert(argv.end(), {"--set", override});
  argv.insert(argv.end(), {"--set", "run.dir=" + run_dir});
  if (options.parallel > 1) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    argv.insert(argv.end(),
                {"--set", fmt::format("run.threads={}", std::max(1u, cores / options.parallel))});
  }
  argv.push_back("--resume-if-present");
  return argv;
}

// Prepares every prep folder the trials need, once each (trials may vary the resolution).
void prepare_data(const SweepSpec& spec, const std::vector<Trial>& trials, const std::string& dir,
                  Logger& log) {
  std::set<std::string> prepared;
  for (const auto& trial : trials) {
    const auto overrides = trial.overrides(spec);
    const Config config = Config::load(spec.base_config, overrides);
    const std::string prep_dir = config.prep_dir();
    // The training split may live elsewhere (prep.resolution): both folders name the data.
    if (!prepared.insert(prep_dir + "|" + config.prep_split_dir(config.data.train_split)).second) {
      continue;
    }
    std::vector<std::string> argv = {self_binary(), "prep"};
    if (!spec.base_config.empty()) argv.insert(argv.end(), {"--config", spec.base_config});
    for (const auto& override : overrides)
      argv.insert(argv.end(), {"--set", override});
    log.info("sweep: preparing {}", prep_dir);
    if (const int status = run_and_wait(argv, dir + "/prep.log"); status != 0) {
      throw std::runtime_error(
          fmt::format("prep of {} failed with status {}; see {}/prep.log", prep_dir, status, dir));
    }
  }
}

int submit_slurm_array(const SweepOptions& options, const SweepSpec& spec,
                       const std::vector<Trial>& trials, Logger& log);

// Prints each trial's command line (--dry-run of the local and mpirun launchers).
void print_trial_commands(const SweepOptions& options, const SweepSpec& spec,
                          const std::vector<Trial>& trials) {
  for (const auto& trial : trials) {
    std::string line;
    for (const auto& arg :
         trial_command(options, spec, trial, options.out + "/trials/" + trial.name))
      line += (line.empty() ? "" : " ") + arg;
    fmt::print("{}\n", line);
  }
}

// The local and mpirun launchers: trials as child processes, at most options.parallel at once,
// the results table rewritten as each one ends, and (with early_stop) the successive-halving rule
// applied to every evaluation as it appears.
class LocalTrials {
 public:
  LocalTrials(const SweepOptions& options, const SweepSpec& spec, const std::vector<Trial>& trials,
              Logger& log)
      : options_(options), spec_(spec), trials_(trials), log_(log) {
    if (spec_.early_stop.enabled()) {
      rule_.emplace(spec_.early_stop);
      // Evaluations of earlier runs of the sweep reach the rule first, in trial order.
      for (const auto& trial : trials_)
        feed_rule(trial, 0);
    }
  }

  // Runs every unfinished trial; returns how many failed.
  int run() {
    for (const auto& trial : trials_) {
      const std::string run_dir = run_dir_of(trial);
      if (trial_done(run_dir)) {
        log_.info("sweep: trial {} already done", trial.name);
        continue;
      }
      while (static_cast<int>(running_.size()) >= options_.parallel)
        wait_a_little();
      fs::create_directories(run_dir);
      fs::remove(run_dir + "/exit_status");
      log_.info("sweep: trial {} starts", trial.name);
      running_[spawn(trial_command(options_, spec_, trial, run_dir), run_dir + "/stdout.log")] =
          &trial;
    }
    while (!running_.empty())
      wait_a_little();
    return failed_;
  }

 private:
  std::string run_dir_of(const Trial& trial) const {
    return options_.out + "/trials/" + trial.name;
  }

  // A trial's process ended: record how, and rewrite the results table.
  void finish(pid_t pid, int wait_status) {
    const Trial* trial = running_.at(pid);
    running_.erase(pid);
    const std::string run_dir = run_dir_of(*trial);
    const int exit_status = exit_status_of(wait_status);
    if (fs::exists(run_dir + kEarlyStopFile)) {
      log_.info("sweep: trial {} {}", trial->name, data::read_whole_file(run_dir + kEarlyStopFile));
    } else if (exit_status != 0) {
      ++failed_;
      data::write_file_atomic(run_dir + "/exit_status", std::to_string(exit_status));
      log_.warn("sweep: trial {} failed with status {}; see {}/stdout.log", trial->name,
                exit_status, run_dir);
    } else {
      log_.info("sweep: trial {} done", trial->name);
    }
    write_results(trials_, options_.out, options_);
  }

  // Gives the rule the trial's evaluations it has not seen; a running trial (pid > 0) that fails
  // a rung is marked and sent SIGTERM.
  void feed_rule(const Trial& trial, pid_t pid) {
    const auto rows = evaluation_rows(run_dir_of(trial));
    for (std::size_t i = evaluations_seen_[trial.index]; i < rows.size(); ++i) {
      const double position = spec_.early_stop.unit == EarlyStopSpec::Unit::kSteps
                                  ? rows[i].at("step").get<double>()
                                  : rows[i].at("elapsed_s").get<double>() / 60;
      const double score = rows[i].at("mean_recall").get<double>();
      const double milestone = rule_->record(trial.index, position, score);
      if (milestone >= 0 && pid > 0) {
        data::write_file_atomic(
            run_dir_of(trial) + kEarlyStopFile,
            fmt::format("stopped early at {:g} {} (valid MeanRecall {:.2f} below the top 1/{:g})",
                        milestone,
                        spec_.early_stop.unit == EarlyStopSpec::Unit::kSteps ? "steps" : "minutes",
                        score, spec_.early_stop.eta));
        ::kill(pid, SIGTERM);
        break;
      }
    }
    evaluations_seen_[trial.index] = rows.size();
  }

  // Reaps finished trials and applies the rule, for about half a second (or at once, blocking,
  // without early stopping).
  void wait_a_little() {
    if (!rule_) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, 0);
      if (pid > 0) finish(pid, status);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (int status = 0;;) {
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      finish(pid, status);
    }
    for (const auto& [pid, trial] : running_)
      if (!fs::exists(run_dir_of(*trial) + kEarlyStopFile)) feed_rule(*trial, pid);
  }

  const SweepOptions& options_;
  const SweepSpec& spec_;
  const std::vector<Trial>& trials_;
  Logger& log_;
  std::map<pid_t, const Trial*> running_;
  int failed_ = 0;
  std::optional<SuccessiveHalving> rule_;
  std::map<int, std::size_t> evaluations_seen_;
};

int run_sweep(const SweepOptions& options, Logger& log) {
  const SweepSpec spec = spec_from_options(options);
  const auto trials = expand_trials(spec);
  validate_trials(spec, trials);
  log.info("sweep: {} trials in {} configurations", trials.size(),
           trials.empty() ? 0 : trials.back().configuration + 1);
  if (options.launcher == "slurm") {
    if (spec.early_stop.enabled()) {
      throw std::invalid_argument(
          "sweep: early_stop needs the local or mpirun launcher (the sweep process watches the "
          "trials); the slurm launcher does not stop trials early");
    }
    claim_directory(spec, options.out);
    if (!options.dry_run) prepare_data(spec, trials, options.out, log);
    return submit_slurm_array(options, spec, trials, log);
  }
  if (options.dry_run) {
    print_trial_commands(options, spec, trials);
    return 0;
  }
  claim_directory(spec, options.out);
  prepare_data(spec, trials, options.out, log);
  const int failed = LocalTrials(options, spec, trials, log).run();
  write_results(trials, options.out, options);
  fmt::print("{}", data::read_whole_file(options.out + "/results.md"));
  return failed == 0 ? 0 : 1;
}

// One line per argument, for the array script's mapfile.
void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) {
    if (line.find('\n') != std::string::npos) {
      throw std::invalid_argument("sweep: a value holds a line break: " + line);
    }
    text += line + "\n";
  }
  data::write_file_atomic(path, text);
}

// Finds the source tree's launch/slurm.sbatch: beside the binary's build folder, or SHOPCLIP_ROOT.
std::string source_root() {
  if (const char* root = std::getenv("SHOPCLIP_ROOT")) return root;
  for (fs::path dir = fs::path(self_binary()).parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    if (fs::exists(dir / "launch/slurm.sbatch")) return dir.string();
  }
  throw std::runtime_error(
      "sweep: cannot find launch/slurm.sbatch above the binary; set SHOPCLIP_ROOT to the source "
      "tree");
}

// --launcher slurm: one job array, each task one trial through launch/slurm.sbatch (prep, which
// finds the shards done, train --resume-if-present, and the test submission). Writes
// DIR/sweep.sbatch and each trial's arguments; submits unless --dry-run.
int submit_slurm_array(const SweepOptions& options, const SweepSpec& spec,
                       const std::vector<Trial>& trials, Logger& log) {
  const std::string dir = fs::absolute(options.out).string();
  std::vector<std::string> names;
  for (const auto& trial : trials) {
    const std::string run_dir = dir + "/trials/" + trial.name;
    fs::create_directories(run_dir);
    std::vector<std::string> args;
    for (const auto& override : trial.overrides(spec))
      args.insert(args.end(), {"--set", override});
    args.insert(args.end(), {"--set", "run.dir=" + run_dir});
    write_lines(run_dir + "/slurm_args", args);
    names.push_back(trial.name);
  }
  write_lines(dir + "/trials.txt", names);
  const std::string root = source_root();
  const std::string script = fmt::format(
      R"(#!/usr/bin/env bash
# Written by `shopclip sweep --launcher slurm`: task i of the array runs trial i of trials.txt
# through launch/slurm.sbatch. A finished trial (summary.json) is skipped; an interrupted one
# resumes from its last checkpoint. The sweep prepared the data before submitting: tasks running
# at once must not prepare the same folder (SHOPCLIP_SKIP_PREP).
#SBATCH --job-name=sweep
#SBATCH --array=0-{}{}
#SBATCH --ntasks={}
#SBATCH --output={}/trials/slurm-%A_%a.out
#SBATCH --open-mode=append
set -euo pipefail
trial=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "{}/trials.txt")
run_dir="{}/trials/$trial"
if [ -f "$run_dir/summary.json" ]; then echo "trial $trial: already done"; exit 0; fi
mapfile -t args < "$run_dir/slurm_args"
export SHOPCLIP={} SHOPCLIP_ROOT={} SHOPCLIP_TRAIN_ARGS=--resume-if-present SHOPCLIP_SKIP_PREP=1
exec bash "$SHOPCLIP_ROOT/launch/slurm.sbatch" "{}" "${{args[@]}}"
)",
      trials.size() - 1, options.array_limit > 0 ? fmt::format("%{}", options.array_limit) : "",
      options.ranks, dir, dir, dir, self_binary(), root, spec.base_config);
  data::write_file_atomic(dir + "/sweep.sbatch", script);
  if (options.dry_run) {
    fmt::print("{}/sweep.sbatch\n", dir);
    return 0;
  }
  std::vector<std::string> argv = {"sbatch", "--parsable"};
  std::istringstream extra(options.sbatch_args);
  for (std::string word; extra >> word;)
    argv.push_back(word);
  argv.push_back(dir + "/sweep.sbatch");
  if (const int status = run_and_wait(argv, dir + "/sbatch.log"); status != 0) {
    throw std::runtime_error(fmt::format("sbatch failed with status {}: {}", status,
                                         data::read_whole_file(dir + "/sbatch.log")));
  }
  log.info("sweep: submitted job array {} ({} tasks); `shopclip sweep --status {}` shows the table",
           data::read_whole_file(dir + "/sbatch.log"), trials.size(), dir);
  return 0;
}

int print_status(const std::string& dir, const SweepOptions& options) {
  const SweepSpec spec =
      parse_sweep_yaml(data::read_whole_file(dir + "/sweep.yaml"), dir + "/sweep.yaml", dir);
  write_results(expand_trials(spec), dir, options);
  fmt::print("{}", data::read_whole_file(dir + "/results.md"));
  return 0;
}

}  // namespace

void register_sweep_commands(CommandRegistry& commands) {
  auto options = std::make_shared<SweepOptions>();
  CLI::App* command = commands.add(
      "sweep", "run a sweep of training trials (a sweep file and/or --axis) and tabulate them",
      Processes::kOne, [options](CommandContext& context) {
        if (!options->status.empty()) return print_status(options->status, *options);
        if (options->out.empty() && !options->dry_run) {
          throw std::invalid_argument("sweep: --out DIR is required");
        }
        if (options->launcher != "local" && options->launcher != "mpirun" &&
            options->launcher != "slurm") {
          throw std::invalid_argument("sweep: --launcher must be local, mpirun or slurm");
        }
        if (options->parallel < 1) throw std::invalid_argument("sweep: --parallel must be >= 1");
        return run_sweep(*options, context.log);
      });
  command->add_option("file", options->file, "sweep YAML file (base, grid, zip, random, seeds)");
  add_config_options(command, options->config);
  command->add_option("--axis", options->axes,
                      "a grid axis: key=value1,value2,... (repeatable; brackets keep lists whole)");
  command->add_option("--seeds", options->seeds, "repeat every configuration with these run.seed")
      ->delimiter(',');
  command->add_option("--out", options->out, "sweep directory");
  command->add_option("--launcher", options->launcher,
                      "local (default), mpirun, or slurm (one job array, a task per trial)");
  command->add_option("--ranks", options->ranks, "mpirun, slurm: ranks per trial");
  command->add_option("--array-limit", options->array_limit,
                      "slurm: trials running at once (sbatch --array=0-K%M)");
  command->add_option("--sbatch-args", options->sbatch_args,
                      "slurm: more sbatch options, e.g. \"--partition=gpu --time=2:00:00\"");
  command->add_option("--parallel", options->parallel,
                      "local: trials at once, the cores split between them (default 1)");
  command->add_option("--baseline", options->baseline,
                      "the configuration (row number, from 0) others are compared with");
  command->add_option("--resamples", options->resamples, "bootstrap resamples (default 2000)");
  command->add_flag("--dry-run", options->dry_run,
                    "print each trial's command (slurm: write the array script), run nothing");
  command->add_option("--status", options->status, "print the results table of sweep DIR");
}

}  // namespace shopclip
