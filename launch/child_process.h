#pragma once
// Child processes of the commands that run other commands (`sweep` runs trials, `reproduce` runs
// a training run again): start, wait, exit status.

#include <string>
#include <vector>

#include <sys/types.h>

namespace shopclip {

// This process's own executable (/proc/self/exe), to start as a child.
std::string self_binary();

// Starts argv (argv[0] looked up in PATH) with stdout and stderr appended to log_path; returns the
// child's pid. Throws std::runtime_error naming the program when it cannot start.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path);

// A waitpid status as a shell would report it: the exit status, or 128 + the signal.
int exit_status_of(int wait_status);

// spawn, then wait: the child's exit status.
int run_and_wait(const std::vector<std::string>& argv, const std::string& log_path);

}  // namespace shopclip
