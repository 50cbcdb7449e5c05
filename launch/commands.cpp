#include "launch/commands.h"

#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace shopclip {

CommandRegistry::CommandRegistry(CLI::App& app) : app_(app) {
  app_.require_subcommand(1);
}

CLI::App* CommandRegistry::group(const std::string& name, const std::string& description) {
  for (CLI::App* existing : groups_)
    if (existing->get_name() == name) return existing;
  CLI::App* created = app_.add_subcommand(name, description);
  created->require_subcommand(1);
  groups_.push_back(created);
  return created;
}

CLI::App* CommandRegistry::add(const std::string& name, const std::string& description,
                               Processes processes, CommandRun run, CLI::App* group) {
  CLI::App* parent = group ? group : &app_;
  const std::string full_name = group ? group->get_name() + " " + name : name;
  for (const Entry& entry : entries_)
    if (entry.full_name == full_name)
      throw std::logic_error("command registered twice: " + full_name);
  CLI::App* command = parent->add_subcommand(name, description);
  entries_.push_back({full_name, command, processes, std::move(run)});
  return command;
}

const CommandRegistry::Entry& CommandRegistry::parsed_entry() const {
  for (const Entry& entry : entries_)
    if (entry.app->parsed()) return entry;
  throw std::logic_error("no registered command was parsed");
}

std::string CommandRegistry::parsed_name() const {
  return parsed_entry().full_name;
}

std::vector<std::string> CommandRegistry::multi_process_commands() const {
  std::vector<std::string> names;
  for (const Entry& entry : entries_)
    if (entry.processes == Processes::kMany) names.push_back(entry.full_name);
  return names;
}

void CommandRegistry::check_world_size(int world_size) const {
  const Entry& entry = parsed_entry();
  if (world_size > 1 && entry.processes == Processes::kOne) {
    throw std::invalid_argument(fmt::format(
        "'{}' runs as one process; start it without mpirun or srun (as {} processes only: {})",
        entry.full_name, world_size, fmt::join(multi_process_commands(), ", ")));
  }
}

int CommandRegistry::dispatch(CommandContext& context) const {
  check_world_size(context.comm.world_size());
  return parsed_entry().run(context);
}

void add_config_options(CLI::App* command, ConfigOptions& options) {
  command->add_option("--config,-c", options.path, "YAML config file");
  command
      ->add_option("--set", options.overrides,
                   "override a config field: key.path=value (repeatable)")
      ->allow_extra_args(false);
}

}  // namespace shopclip
