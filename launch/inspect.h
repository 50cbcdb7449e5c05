#pragma once
// The look-at-it commands: `data stats`, `data check`, `report` and `compare`. Each writes an
// HTML page (core/report/pages.h) and a JSON file with every number beside it.

#include <string>

#include <CLI/CLI.hpp>

#include "core/log.h"

namespace shopclip {

struct StatsCommandOptions {
  std::string root;        // MUGE dataset folder
  std::string out;         // report folder; empty: reports/stats-<basename of root>
  std::string dictionary;  // jieba-format dict.txt; empty: Debian python3-jieba's
  int threads = 0;
};

struct CheckCommandOptions {
  std::string root;
  std::string out;      // report folder; empty: reports/check-<basename of root>
  int max_listed = 20;  // findings per code printed (the JSON has all)
  int threads = 0;
  int min_side = 32, max_side = 4096, max_query_chars = 64;
  double max_aspect = 5.0;
};

struct ReportCommandOptions {
  std::string run_dir;
  std::string split = "valid";
  std::string data_root;  // empty: the run's data.root
  std::string reference;  // ground-truth queries when the split's own file has none (test)
  std::string out;        // empty: RUN_DIR/report/<split>.html
  std::string dictionary;
  int worst = 30;     // worst queries shown with thumbnails
  int keywords = 20;  // keyword groups in the breakdown
  int threads = 0;
};

struct CompareCommandOptions {
  std::string run_a, run_b;
  std::string split = "valid";
  std::string data_root, reference;
  std::string out;  // empty: reports/compare-<a>-vs-<b>-<split>.html
  int resamples = 10000;
  std::uint64_t seed = 1;
  int max_listed = 20;
  int threads = 0;
};

void add_stats_options(CLI::App* command, StatsCommandOptions& options);
void add_check_options(CLI::App* command, CheckCommandOptions& options);
void add_report_options(CLI::App* command, ReportCommandOptions& options);
void add_compare_options(CLI::App* command, CompareCommandOptions& options);

int run_stats(const StatsCommandOptions& options, Logger& log);
// Exit status: 0 clean, 1 warnings only, 2 errors.
int run_check(const CheckCommandOptions& options, Logger& log);
int run_report(const ReportCommandOptions& options, Logger& log);
int run_compare(const CompareCommandOptions& options, Logger& log);

}  // namespace shopclip
