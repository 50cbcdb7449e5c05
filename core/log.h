#pragma once
// Logging with the rank in every line, to stderr and optionally to a file in the run directory,
// and a progress bar for long loops.

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <fmt/format.h>

namespace shopclip {

class Logger {
 public:
  // rank and world_size: with several ranks every line shows the rank, and ranks other than 0
  // print warnings and errors only.
  explicit Logger(int rank = 0, int world_size = 1);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // Also append every line (from every verbosity) to this file; "" closes it.
  void open_file(const std::string& path);

  template <class... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) {
    write(Level::kInfo, fmt::format(format, std::forward<Args>(args)...));
  }
  template <class... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) {
    write(Level::kWarn, fmt::format(format, std::forward<Args>(args)...));
  }
  template <class... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) {
    write(Level::kError, fmt::format(format, std::forward<Args>(args)...));
  }
  // Writes to the log file only (details too long for the terminal, e.g. every bad row).
  void file_only(const std::string& message);

  // Progress line: rewritten in place on a terminal, printed occasionally otherwise.
  void progress(const std::string& line, bool final);

  int rank() const { return rank_; }

 private:
  enum class Level { kInfo, kWarn, kError };
  void write(Level level, const std::string& message);
  std::string prefix(Level level) const;

  int rank_;
  int world_size_;
  bool terminal_;
  bool progress_open_ = false;
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
};

// Counts work done against a total; reports rate and ETA through Logger::progress at most every
// 0.2 s on a terminal and every 10% (or 30 s) otherwise.
class ProgressBar {
 public:
  ProgressBar(Logger& logger, std::string label, std::int64_t total, std::string unit = "it");
  // done: items completed so far; extra: text appended (loss, lr, ...).
  void update(std::int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");
  // For loops whose size is known only once they run.
  void set_total(std::int64_t total) { total_ = total; }
  double seconds() const;

 private:
  void render(std::int64_t done, const std::string& extra, bool final);

  Logger& logger_;
  std::string label_, unit_;
  std::int64_t total_;
  std::chrono::steady_clock::time_point start_, last_render_;
  int last_decile_ = -1;
};

std::string format_duration(double seconds);

}  // namespace shopclip
