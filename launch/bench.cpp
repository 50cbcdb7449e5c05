#include "launch/bench.h"

#include <chrono>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/retrieval.h"
#include "core/train_step.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/prep.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::ordered_json;

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Best-of-repeats rate of a 2048 x 2048 fp32 matrix product, GFLOP/s: the machine's practical
// ceiling for the dense layers every model here is made of.
double matmul_gflops(double min_seconds) {
  constexpr int n = 2048;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up: thread pools, page faults
  double best = 0;
  const auto start = Clock::now();
  do {
    const auto t0 = Clock::now();
    c = torch::mm(a, b);
    best = std::max(best, 2.0 * n * n * n / since(t0) / 1e9);
  } while (since(start) < min_seconds);
  return best;
}

ordered_json bench_matmul(const BenchOptions& options) {
  return {{"bench", "matmul"},
          {"threads", torch::get_num_threads()},
          {"gflops", matmul_gflops(std::max(2.0, options.seconds / 4))}};
}

// Training steps of the configured model on random inputs of the configured shape (no data
// loading), timed after warm-up.
ordered_json bench_train(const BenchOptions& options, Logger& log) {
  const Config config = Config::load(options.config_path, options.overrides);
  const double matmul = matmul_gflops(3.0);
  constexpr std::int64_t kVocab = 3000;
  DualEncoder model(config.model, kVocab, 0);
  model->train();
  auto optimizer = make_adamw(model, config.train);
  const int batch = config.train.batch_size, resolution = config.model.image.resolution;
  const int context = config.model.text.context_length;
  auto images = torch::randn({batch, 3, resolution, resolution});
  // Queries of realistic length: [CLS] + ~16 tokens + [SEP], then padding.
  auto tokens = torch::zeros({batch, context}, torch::kLong);
  const int used = std::min(context, 18);
  tokens.slice(1, 0, used) = torch::randint(5, kVocab, {batch, used});
  dist::SingleProcessCommunicator single;
  StepRunner runner(model, *optimizer, single, config.train);
  for (int warm = 0; warm < 3; ++warm)
    runner.step({images, tokens, {}, 0}, config.train.lr);
  int steps = 0;
  const auto start = Clock::now();
  while (since(start) < options.seconds || steps < 5) {
    runner.step({images, tokens, {}, 0}, config.train.lr);
    ++steps;
  }
  const double seconds = since(start);
  const double samples_per_second = double(steps) * batch / seconds;
  const double forward_flops = model_forward_flops(config.model);
  // Forward + backward is about 3x the forward multiply-adds.
  const double model_gflops = 3.0 * forward_flops * samples_per_second / 1e9;
  log.info("train: {:.1f} samples/s, {:.1f} GFLOP/s = {:.1f}% of the matrix-product rate {:.1f}",
           samples_per_second, model_gflops, 100 * model_gflops / matmul, matmul);
  return {{"bench", "train"},
          {"config", options.config_path},
          {"threads", torch::get_num_threads()},
          {"batch_size", batch},
          {"steps", steps},
          {"step_ms", 1000 * seconds / steps},
          {"samples_per_s", samples_per_second},
          {"forward_mflop_per_sample", forward_flops / 1e6},
          {"model_gflops", model_gflops},
          {"matmul_gflops", matmul},
          {"share_of_matmul", model_gflops / matmul}};
}

// Raw decode + resize rate on images already in memory (the prep's ceiling), then `shopclip
// prep` of the split in a child process into a fresh folder: its wall time and peak memory.
ordered_json bench_prep(const BenchOptions& options, Logger& log) {
  const Config config = Config::load(options.config_path, options.overrides);
  const std::string tsv = data::images_file(config.data.root, options.split);
  data::BadRowLog ignored;
  const auto rows = data::index_images_tsv(tsv, ignored);
  const std::size_t n = std::min<std::size_t>(rows.size(), options.decode_images);
  std::vector<std::string> fields;
  data::read_image_fields(tsv, rows, 0, n, [&](const data::ImageRow&, std::string_view field) {
    fields.emplace_back(field);
  });
  const int resolution = config.model.image.resolution;
  const int threads = data::resolve_threads(config.prep.threads);
  auto decode_round = [&] {
    data::parallel_for(0, fields.size(), threads, [&](std::size_t i) {
      thread_local std::vector<std::uint8_t> pixels;
      pixels.resize(static_cast<std::size_t>(resolution) * resolution * 3);
      data::decode_and_resize(fields[i], resolution, pixels.data());
    });
  };
  decode_round();  // warm-up
  double best_rate = 0;
  const auto start = Clock::now();
  do {
    const auto t0 = Clock::now();
    decode_round();
    best_rate = std::max(best_rate, fields.size() / since(t0));
  } while (since(start) < std::min(options.seconds, 10.0));

  const std::string prep_dir =
      fmt::format("{}/bench-prep-{}", fs::temp_directory_path().string(), getpid());
  fs::remove_all(prep_dir);
  std::vector<std::string> arguments = {"/proc/self/exe", "prep", "--split", options.split};
  if (!options.config_path.empty())
    arguments.insert(arguments.end(), {"--config", options.config_path});
  for (const auto& o : options.overrides)
    arguments.insert(arguments.end(), {"--set", o});
  arguments.insert(arguments.end(), {"--set", "data.prep_dir=" + prep_dir});
  const auto child_start = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : arguments)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  if (pid < 0 || wait4(pid, &status, 0, &usage) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fs::remove_all(prep_dir);
    throw std::runtime_error("bench prep: the prep child process failed");
  }
  const double wall = since(child_start);
  const auto manifest = data::read_manifest(prep_dir + "/" + options.split);
  fs::remove_all(prep_dir);
  const double prep_rate = manifest.num_images / wall;
  const double peak_mib = usage.ru_maxrss / 1024.0;  // Linux reports KiB
  log.info(
      "prep {}: {:.0f} images/s end to end vs raw decode+resize {:.0f} images/s ({:.0f}%), "
      "peak memory {:.0f} MiB",
      options.split, prep_rate, best_rate, 100 * prep_rate / best_rate, peak_mib);
  return {{"bench", "prep"},
          {"data", config.data.root},
          {"split", options.split},
          {"images", manifest.num_images},
          {"threads", threads},
          {"resolution", resolution},
          {"prep_wall_s", wall},
          {"prep_images_per_s", prep_rate},
          {"raw_decode_resize_images_per_s", best_rate},
          {"share_of_raw", prep_rate / best_rate},
          {"peak_rss_mib", peak_mib}};
}

// Exact inner-product search of `queries` unit vectors over a `pool` (FAISS Flat).
ordered_json bench_search(const BenchOptions& options, Logger& log) {
  auto pool =
      torch::nn::functional::normalize(torch::randn({options.pool, options.dim}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto queries =
      torch::nn::functional::normalize(torch::randn({options.queries, options.dim}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::vector<std::int64_t> rows;
  std::vector<float> scores;
  double best = 1e30, build = 0;
  const auto start = Clock::now();
  do {
    const auto t0 = Clock::now();
    EmbeddingIndex index("Flat", options.dim);
    index.add(pool.data_ptr<float>(), options.pool);
    build = since(t0);
    index.search(queries.data_ptr<float>(), options.queries, 10, rows, scores);
    best = std::min(best, since(t0));
  } while (since(start) < std::min(options.seconds, 10.0));
  log.info("search: {} queries over {} images (dim {}) in {:.3f} s (index build {:.3f} s)",
           options.queries, options.pool, options.dim, best, build);
  return {{"bench", "search"},    {"index", "Flat"},
          {"pool", options.pool}, {"queries", options.queries},
          {"dim", options.dim},   {"threads", torch::get_num_threads()},
          {"seconds", best}};
}

}  // namespace

void add_bench_options(CLI::App* command, BenchOptions& options) {
  command->add_option("what", options.what, "matmul | train | prep | search")
      ->required()
      ->check(CLI::IsMember({"matmul", "train", "prep", "search"}));
  command->add_option("--config,-c", options.config_path, "YAML config (train, prep)");
  command->add_option("--set", options.overrides, "override a config field: key.path=value");
  command->add_option("--split", options.split, "prep: split to prepare");
  command->add_option("--threads", options.threads, "LibTorch threads; 0 = all cores");
  command->add_option("--seconds", options.seconds, "minimum timed duration");
  command->add_option("--decode-images", options.decode_images, "prep: images for the raw rate");
  command->add_option("--pool", options.pool, "search: pool size");
  command->add_option("--queries", options.queries, "search: queries");
  command->add_option("--dim", options.dim, "search: embedding dimension");
}

int run_bench(const BenchOptions& options, Logger& log) {
  torch::set_num_threads(data::resolve_threads(options.threads));
  ordered_json result;
  if (options.what == "matmul") result = bench_matmul(options);
  if (options.what == "train") result = bench_train(options, log);
  if (options.what == "prep") result = bench_prep(options, log);
  if (options.what == "search") result = bench_search(options, log);
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace shopclip
