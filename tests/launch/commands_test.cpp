// The command registry (launch/commands.h): dispatch runs exactly the parsed command with its
// parsed options, groups nest, names are unique, and commands that run as one process are
// refused under several with a message that names them.

#include "launch/commands.h"

#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dist/communicator.h"

namespace shopclip {
namespace {

// Parses argv (without the program name) with CLI11 as main() does.
void parse(CLI::App& app, std::vector<std::string> arguments) {
  std::reverse(arguments.begin(), arguments.end());  // CLI11 takes them last first
  app.parse(arguments);
}

struct Fixture {
  CLI::App app{"test"};
  CommandRegistry commands{app};
  std::vector<std::string> ran;  // names of the commands whose run was called, in order
  int value = 0;                 // `alpha --value`
  std::string word;              // `tools beta WORD`

  Fixture() {
    CLI::App* alpha = commands.add("alpha", "a command that may run as many processes",
                                   Processes::kMany, [this](CommandContext&) {
                                     ran.push_back("alpha");
                                     return value;
                                   });
    alpha->add_option("--value", value);
    CLI::App* tools = commands.group("tools", "a group");
    CLI::App* beta = commands.add(
        "beta", "a one-process command in a group", Processes::kOne,
        [this](CommandContext&) {
          ran.push_back("tools beta " + word);
          return 0;
        },
        tools);
    beta->add_option("word", word)->required();
  }
};

TEST(CommandRegistry, DispatchRunsOnlyTheParsedCommandWithItsOptions) {
  Fixture f;
  parse(f.app, {"alpha", "--value", "7"});
  dist::SingleProcessCommunicator comm;
  Logger log(0, 1);
  CommandContext context{comm, log};
  EXPECT_EQ(f.commands.parsed_name(), "alpha");
  EXPECT_EQ(f.commands.dispatch(context), 7);  // the run's return value is the exit status
  EXPECT_EQ(f.ran, std::vector<std::string>{"alpha"});
}

TEST(CommandRegistry, GroupsNestAndAreFoundAgainByName) {
  Fixture f;
  EXPECT_EQ(f.commands.group("tools", "again"), f.app.get_subcommand("tools"));
  f.commands.add(
      "gamma", "added later to the same group", Processes::kOne,
      [&](CommandContext&) {
        f.ran.push_back("tools gamma");
        return 0;
      },
      f.commands.group("tools", ""));
  parse(f.app, {"tools", "beta", "shoes"});
  dist::SingleProcessCommunicator comm;
  Logger log(0, 1);
  CommandContext context{comm, log};
  EXPECT_EQ(f.commands.parsed_name(), "tools beta");
  EXPECT_EQ(f.commands.dispatch(context), 0);
  EXPECT_EQ(f.ran, std::vector<std::string>{"tools beta shoes"});
}

TEST(CommandRegistry, AGroupNeedsOneOfItsCommands) {
  Fixture f;
  EXPECT_THROW(parse(f.app, {"tools"}), CLI::ParseError);
}

TEST(CommandRegistry, ANameUsedTwiceAtOneLevelIsAnError) {
  Fixture f;
  EXPECT_THROW(f.commands.add("alpha", "", Processes::kOne, [](CommandContext&) { return 0; }),
               std::logic_error);
  // The same name in a group is another command.
  EXPECT_NO_THROW(f.commands.add(
      "alpha", "", Processes::kOne, [](CommandContext&) { return 0; },
      f.commands.group("tools", "")));
}

TEST(CommandRegistry, OneProcessCommandsAreRefusedUnderSeveralNamingWhatMay) {
  Fixture f;
  parse(f.app, {"tools", "beta", "x"});
  EXPECT_NO_THROW(f.commands.check_world_size(1));
  try {
    f.commands.check_world_size(2);
    FAIL() << "a one-process command was allowed as 2 processes";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'tools beta' runs as one process"), std::string::npos) << message;
    EXPECT_NE(message.find("as 2 processes only: alpha"), std::string::npos) << message;
  }
  EXPECT_EQ(f.commands.multi_process_commands(), std::vector<std::string>{"alpha"});
}

TEST(CommandRegistry, ManyProcessCommandsRunUnderSeveral) {
  Fixture f;
  parse(f.app, {"alpha"});
  EXPECT_NO_THROW(f.commands.check_world_size(4));
}

TEST(CommandRegistry, NothingParsedIsALogicError) {
  Fixture f;
  EXPECT_THROW(f.commands.parsed_name(), std::logic_error);
}

TEST(ConfigOptions, ConfigAndRepeatedOverridesInOrder) {
  CLI::App app{"test"};
  ConfigOptions options;
  add_config_options(&app, options);
  parse(app, {"-c", "a.yaml", "--set", "train.lr=1", "--set", "run.seed=2"});
  EXPECT_EQ(options.path, "a.yaml");
  EXPECT_EQ(options.overrides, (std::vector<std::string>{"train.lr=1", "run.seed=2"}));
}

}  // namespace
}  // namespace shopclip
