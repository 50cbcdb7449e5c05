#pragma once
// The command registry: the one place a `shopclip` subcommand is declared. Each launch/ file
// registers its commands (name, description, options, whether it may run as several processes,
// and what runs) in its register_*_commands function; main() only sets up the process group,
// parses and dispatches. A new command is a new registration, not an edit of main().
//
// Options live as long as the registry's CLI::App: a command keeps them in a shared_ptr that its
// run function captures, and parsing fills them in before run is called.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/log.h"
#include "dist/communicator.h"

namespace shopclip {

// What a running command gets: the process group (one process, or every rank under mpirun or
// srun) and the rank's logger. Both outlive the call.
struct CommandContext {
  dist::Communicator& comm;
  Logger& log;
  std::vector<std::string> command_line;  // argv as the process received it (provenance.json)
};

// Whether a command may be started as several processes (under mpirun or srun).
enum class Processes { kOne, kMany };

// Runs a parsed command; the return value is the process's exit status.
using CommandRun = std::function<int(CommandContext&)>;

class CommandRegistry {
 public:
  // Commands are added to `app` (the root, which the registry does not own and must outlive it).
  explicit CommandRegistry(CLI::App& app);

  // A group of commands ("data", "bench"): a subcommand of the root that needs one of its own.
  // Returns the existing group when `name` was added before (several files add to "data").
  CLI::App* group(const std::string& name, const std::string& description);

  // A command under the root (group == nullptr) or under a group. The caller adds its options to
  // the returned CLI::App. Throws std::logic_error for a name used twice at the same level.
  CLI::App* add(const std::string& name, const std::string& description, Processes processes,
                CommandRun run, CLI::App* group = nullptr);

  // The full name ("data synth") of the parsed command. Throws std::logic_error when no
  // registered command was parsed (call after CLI::App::parse).
  std::string parsed_name() const;

  // Throws std::invalid_argument when the parsed command may not run as `world_size` processes;
  // the message names the command and lists the ones that may.
  void check_world_size(int world_size) const;

  // check_world_size(context.comm.world_size()), then the parsed command's run.
  int dispatch(CommandContext& context) const;

  // Full names of the commands that may run as several processes, in registration order.
  std::vector<std::string> multi_process_commands() const;

 private:
  struct Entry {
    std::string full_name;
    CLI::App* app;
    Processes processes;
    CommandRun run;
  };
  const Entry& parsed_entry() const;

  CLI::App& app_;
  std::vector<Entry> entries_;
  std::vector<CLI::App*> groups_;
};

// --config/-c and --set for config-driven commands.
struct ConfigOptions {
  std::string path;                    // YAML file; empty: the defaults
  std::vector<std::string> overrides;  // key.path=value, in order
};
void add_config_options(CLI::App* command, ConfigOptions& options);

// Each launch/ file's registrations (called by main() in this order, which is the help order).
void register_pipeline_commands(CommandRegistry& commands);  // launch/pipeline.cpp
void register_inspect_commands(CommandRegistry& commands);   // launch/inspect.cpp
void register_feature_commands(CommandRegistry& commands);   // launch/features.cpp
void register_distill_commands(CommandRegistry& commands);   // launch/distill.cpp
void register_ensemble_commands(CommandRegistry& commands);  // launch/ensemble.cpp
void register_index_commands(CommandRegistry& commands);     // launch/index.cpp
void register_serve_command(CommandRegistry& commands);      // launch/serve.cpp
void register_sweep_commands(CommandRegistry& commands);     // launch/sweep.cpp
void register_reproduce_command(CommandRegistry& commands);  // launch/reproduce.cpp
void register_version_command(CommandRegistry& commands);    // launch/version.cpp
void register_bench_commands(CommandRegistry& commands);     // launch/bench.cpp

}  // namespace shopclip
