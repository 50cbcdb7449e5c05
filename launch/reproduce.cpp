// `shopclip reproduce RUN_DIR [--out NEW_DIR]`: trains a run again from its provenance.json (the
// same resolved config, seeds and number of processes) after checking that every input file it
// read is unchanged, then reports how the new run differs: validation metrics and final weights.

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "data/files.h"
#include "launch/child_process.h"
#include "launch/commands.h"
#include "launch/provenance.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

struct ReproduceOptions {
  std::string run;
  std::string out;  // default: <run>-reproduced
};

json read_record(const std::string& run) {
  const std::string path = (fs::path(run) / "provenance.json").string();
  if (!fs::exists(path)) {
    throw std::invalid_argument(fmt::format(
        "{} has no provenance.json (runs record one since this version of shopclip)", run));
  }
  json record;
  try {
    record = json::parse(data::read_whole_file(path));
  } catch (const json::exception& e) {
    throw std::runtime_error(fmt::format("{}: not JSON: {}", path, e.what()));
  }
  if (record.value("format", "") != "shopclip-provenance" ||
      record.value("format_version", 0) != 1) {
    throw std::runtime_error(
        fmt::format("{}: not a shopclip provenance record of version 1", path));
  }
  const auto& command = record.at("command");
  if (command.size() < 2 || command[1] != "train") {
    throw std::invalid_argument(
        fmt::format("{}: records `{}`, not a training run; reproduce re-runs training runs", path,
                    command.size() > 1 ? command[1].get<std::string>() : ""));
  }
  if (record.value("status", "") != "finished") {
    throw std::invalid_argument(
        fmt::format("{}: the run did not finish (status {}); reproduce "
                    "compares finished runs",
                    path, record.value("status", "?")));
  }
  return record;
}

// Where the code now differs from the record's (warnings: the run is still made).
std::vector<std::string> code_differences(const json& recorded, const std::string& new_diff) {
  std::vector<std::string> notes;
  const ordered_json now = git_state(source_tree(), new_diff);
  if (recorded.contains("error") || now.contains("error")) {
    notes.push_back("the source tree's git state is unknown for one of the two runs");
    return notes;
  }
  if (recorded.value("commit", "") != now.value("commit", "")) {
    notes.push_back(fmt::format("the code is at commit {}, the run was made at {}",
                                now.value("commit", ""), recorded.value("commit", "")));
  }
  if (recorded.value("dirty", false)) {
    notes.push_back("the run was made from a tree with uncommitted changes (its diff: " +
                    recorded.value("diff", std::string("not saved")) + ")");
  }
  if (now.value("dirty", false)) notes.push_back("the tree has uncommitted changes now");
  return notes;
}

json valid_metrics(const std::string& run) {
  const json summary =
      json::parse(data::read_whole_file((fs::path(run) / "summary.json").string()));
  return summary.at("valid");
}

int reproduce(const ReproduceOptions& options, CommandContext& context) {
  const json record = read_record(options.run);
  const std::vector<std::string> changed = changed_inputs(record);
  if (!changed.empty()) {
    std::string message = fmt::format(
        "reproduce {}: {} input file(s) differ from what the run read, so a new run would not "
        "repeat it:",
        options.run, changed.size());
    for (const auto& change : changed)
      message += "\n  " + change;
    throw std::runtime_error(message);
  }
  const std::string out =
      options.out.empty() ? fs::path(options.run).string() + "-reproduced" : options.out;
  if (fs::exists(out) && !fs::is_empty(out)) {
    throw std::invalid_argument(fmt::format("--out {} exists and is not empty", out));
  }
  fs::create_directories(out);
  const std::vector<std::string> notes =
      code_differences(record.at("git"), (fs::path(out) / "code_now.diff").string());
  for (const auto& note : notes)
    context.log.warn("reproduce: {}", note);

  // The recorded resolved config, with the new run directory.
  const std::string config_path = (fs::path(out) / "recorded_config.yaml").string();
  data::write_file_atomic(config_path, record.at("config").get<std::string>());
  std::vector<std::string> command;
  const int world = record.at("processes").at("world_size").get<int>();
  if (world > 1) {
    // The same number of processes, started by mpirun (MPIRUN_ARGS adds options: hosts, binding).
    command = {"mpirun", "-np", std::to_string(world)};
    if (const char* extra = std::getenv("MPIRUN_ARGS"); extra != nullptr) {
      std::istringstream words(extra);
      for (std::string word; words >> word;)
        command.push_back(word);
    }
  }
  command.insert(command.end(), {self_binary(), "train", "--config", config_path, "--set",
                                 "run.dir=" + fs::absolute(out).string()});
  const std::string log_path = (fs::path(out) / "reproduce.log").string();
  context.log.info("reproduce: {} process(es), the recorded config and seed {}; log {}", world,
                   record.at("seeds").at("run.seed").dump(), log_path);
  const int status = run_and_wait(command, log_path);
  if (status != 0) {
    throw std::runtime_error(
        fmt::format("reproduce: the new run failed with status {} (see {})", status, log_path));
  }

  const json before = valid_metrics(options.run), after = valid_metrics(out);
  ordered_json metrics;
  for (const char* key : {"r1", "r5", "r10", "mean_recall"}) {
    metrics[key] = {{"recorded", before.at(key)},
                    {"reproduced", after.at(key)},
                    {"difference", after.at(key).get<double>() - before.at(key).get<double>()}};
  }
  const WeightDifference weights =
      weight_difference((fs::path(options.run) / "checkpoints" / "last.pt").string(),
                        (fs::path(out) / "checkpoints" / "last.pt").string());
  const ordered_json report{{"recorded_run", fs::absolute(options.run).string()},
                            {"reproduced_run", fs::absolute(out).string()},
                            {"inputs_checked", record.at("inputs").size()},
                            {"code_notes", notes},
                            {"valid_metrics", metrics},
                            {"final_weights",
                             {{"bit_identical", weights.absolute == 0.0},
                              {"max_abs_difference", weights.absolute},
                              {"worst_tensor", weights.worst_absolute},
                              {"max_relative_difference", weights.relative}}}};
  data::write_file_atomic((fs::path(out) / "reproduction.json").string(), report.dump(2) + "\n");
  std::cout << report.dump(2) << std::endl;
  context.log.info("reproduce: valid MeanRecall {:.2f} -> {:.2f}; final weights {}",
                   before.at("mean_recall").get<double>(), after.at("mean_recall").get<double>(),
                   weights.absolute == 0.0 ? std::string("bit-identical")
                                           : fmt::format("differ by up to {:.3g} ({})",
                                                         weights.absolute, weights.worst_absolute));
  return 0;
}

}  // namespace

void register_reproduce_command(CommandRegistry& commands) {
  auto options = std::make_shared<ReproduceOptions>();
  CLI::App* command = commands.add(
      "reproduce",
      "train a run again from its provenance.json after checking its input files, and compare",
      Processes::kOne, [options](CommandContext& context) { return reproduce(*options, context); });
  command->add_option("run", options->run, "run directory with provenance.json")->required();
  command->add_option("--out", options->out, "new run directory (default: <run>-reproduced)");
}

}  // namespace shopclip
