#pragma once
// `shopclip bench ...`: speed measurements, each compared with a limit measured in the same run
// (the machine's matrix-product rate, the raw decode + resize rate). Each prints one JSON object
// on stdout; experiments/bench.sh runs them and records the figures with their commands.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/log.h"

namespace shopclip {

struct BenchOptions {
  std::string what;  // matmul | train | prep | search
  std::string config_path;
  std::vector<std::string> overrides;
  std::string split = "train";
  int threads = 0;              // 0 = all cores
  double seconds = 20;          // minimum timed duration of a measurement
  int decode_images = 3000;     // images for the raw decode + resize rate
  std::int64_t pool = 30000;    // search: pool size
  std::int64_t queries = 5000;  // search: query count
  int dim = 256;                // search: embedding dimension
};

void add_bench_options(CLI::App* command, BenchOptions& options);
int run_bench(const BenchOptions& options, Logger& log);

}  // namespace shopclip
