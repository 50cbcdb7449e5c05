#pragma once
// `shopclip bench ...`: speed measurements, each compared with a limit measured in the same run
// (the machine's matrix-product rate, the raw decode + resize rate). Each prints one JSON object
// on stdout; experiments/bench.sh runs them and records the figures with their commands.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/log.h"
#include "dist/communicator.h"

namespace shopclip {

struct BenchOptions {
  std::string what;  // matmul | train | loss | prep | search | cnclip | stats | check
  std::string config_path;
  std::vector<std::string> overrides;
  std::string split = "train";
  int threads = 0;                         // 0 = all cores
  double seconds = 20;                     // minimum timed duration of a measurement
  int decode_images = 3000;                // images for the raw decode (+ resize) rate
  std::string data;                        // stats, check: dataset folder
  std::int64_t pool = 30000;               // search: pool size
  std::int64_t queries = 5000;             // search: query count
  int dim = 256;                           // search, loss: embedding dimension
  std::int64_t global_batch = 1024;        // loss: rows of the global batch
  std::string mode = "local";              // loss: local | full
  std::string vision_config, text_config;  // cnclip: Chinese-CLIP model configs
  int batch = 8;                           // cnclip: samples per pass
  int context_length = 52;                 // cnclip: tokens per query
};

void add_bench_options(CLI::App* command, BenchOptions& options);
// train and loss run on every rank of `comm` (rank 0 prints); the others need one process.
int run_bench(const BenchOptions& options, dist::Communicator& comm, Logger& log);

}  // namespace shopclip
