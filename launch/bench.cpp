#include "launch/bench.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>

#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "core/model/chinese_clip.h"
#include "core/config.h"
#include "core/train/loss.h"
#include "core/model/dual_encoder.h"
#include "core/train/optim.h"
#include "core/eval/retrieval.h"
#include "core/train/step.h"
#include "data/base64.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/prep.h"
#include "dist/autograd.h"
#include "dist/launch.h"
#include "dist/timed_communicator.h"

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

// Steps every rank runs: enough for `seconds` at rank 0's warm-up speed, at least 5.
int agreed_steps(dist::Communicator& comm, double seconds, double seconds_per_step) {
  auto steps = torch::tensor(
      {std::max<std::int64_t>(5, static_cast<std::int64_t>(seconds / seconds_per_step))},
      torch::kInt64);
  comm.broadcast(steps, 0);
  return static_cast<int>(steps.item<std::int64_t>());
}

// The largest of every rank's value (the slowest rank sets the pace).
double max_over_ranks(dist::Communicator& comm, double value) {
  auto t = torch::tensor({value}, torch::kFloat64);
  comm.all_reduce(t, dist::ReduceOp::kMax);
  return t.item<double>();
}

// Training steps of the configured model on random inputs of the configured shape (no data
// loading), timed after warm-up. train.batch_size is the batch of each rank: with R ranks the
// global batch is R times larger, and samples/s counts all ranks. Time inside collectives is
// measured on every rank (waiting for slower ranks included); the largest share is reported.
ordered_json bench_train(const BenchOptions& options, dist::Communicator& comm, Logger& log) {
  const Config config = Config::load(options.config_path, options.overrides);
  const double matmul = matmul_gflops(3.0);
  constexpr std::int64_t kVocab = 3000;
  dist::TimedCommunicator timed(comm);
  torch::manual_seed(static_cast<std::uint64_t>(config.run.seed));
  DualEncoder model(config.model, kVocab, 0, &timed);
  model->train();
  auto optimizer = make_adamw(model, config.train);
  const int batch = config.train.batch_size, resolution = config.model.image.resolution;
  const int context = config.model.text.context_length;
  auto images = torch::randn({batch, 3, resolution, resolution});
  // Queries of realistic length: [CLS] + ~16 tokens + [SEP], then padding.
  auto tokens = torch::zeros({batch, context}, torch::kLong);
  const int used = std::min(context, 18);
  tokens.slice(1, 0, used) = torch::randint(5, kVocab, {batch, used});
  TrainConfig train_config = config.train;
  StepRunner runner(model, *optimizer, timed, train_config);
  auto warm_start = Clock::now();
  for (int warm = 0; warm < 3; ++warm)
    runner.step({images, tokens, {}, 0}, config.train.lr);
  const int steps = agreed_steps(comm, options.seconds, since(warm_start) / 3);
  comm.barrier();
  timed.reset();
  const auto start = Clock::now();
  for (int step = 0; step < steps; ++step)
    runner.step({images, tokens, {}, 0}, config.train.lr);
  const double seconds = max_over_ranks(comm, since(start));
  const double communication_share = max_over_ranks(comm, timed.seconds() / seconds);
  const int world = comm.world_size();
  const double samples_per_second = double(steps) * batch * world / seconds;
  const double forward_flops = model_forward_flops(config.model);
  // Forward + backward is about 3x the forward multiply-adds; matmul is one rank's rate.
  const double model_gflops = 3.0 * forward_flops * samples_per_second / 1e9;
  const double machine_matmul = matmul * world;  // every rank measured its own share of cores
  log.info(
      "train: {} rank(s) x {} samples: {:.1f} samples/s, {:.1f}% of step time in communication, "
      "{:.1f} GFLOP/s = {:.1f}% of the ranks' matrix-product rate {:.1f}",
      world, batch, samples_per_second, 100 * communication_share, model_gflops,
      100 * model_gflops / machine_matmul, machine_matmul);
  return {{"bench", "train"},
          {"config", options.config_path},
          {"ranks", world},
          {"threads_per_rank", torch::get_num_threads()},
          {"batch_per_rank", batch},
          {"global_batch", batch * world},
          {"steps", steps},
          {"step_ms", 1000 * seconds / steps},
          {"samples_per_s", samples_per_second},
          {"communication_share", communication_share},
          {"forward_mflop_per_sample", forward_flops / 1e6},
          {"model_gflops", model_gflops},
          {"matmul_gflops", machine_matmul},
          {"share_of_matmul", model_gflops / machine_matmul}};
}

// Resident memory of this process now, MiB.
double current_rss_mib() {
  long pages = 0, resident = 0;
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm) {
    if (std::fscanf(statm, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(statm);
  }
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

// The contrastive loss alone (forward + backward) on a global batch of random unit embeddings
// split across the ranks, in local or full mode: its time and the growth of each rank's peak
// resident memory over the memory held before the first step. Run one (batch, mode) per process:
// the peak is a high-water mark of the whole process.
ordered_json bench_loss(const BenchOptions& options, dist::Communicator& comm, Logger& log) {
  const int world = comm.world_size();
  const std::int64_t global = options.global_batch, dim = options.dim;
  if (global % world != 0) {
    throw std::invalid_argument(
        fmt::format("--global-batch {} is not a multiple of {} ranks", global, world));
  }
  const std::int64_t local = global / world;
  torch::manual_seed(1 + comm.rank());
  auto images = torch::nn::functional::normalize(
      torch::randn({local, dim}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto texts = torch::nn::functional::normalize(
      torch::randn({local, dim}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  images.requires_grad_(true);
  texts.requires_grad_(true);
  auto logit_scale = torch::tensor(1 / 0.07, torch::requires_grad());
  auto run_step = [&] {
    ContrastiveBatch batch;
    batch.local_images = images;
    batch.local_texts = texts;
    const auto gathered = dist::all_gather_with_grad(comm, torch::cat({images, texts}, 1));
    batch.all_images = gathered.narrow(1, 0, dim);
    batch.all_texts = gathered.narrow(1, dim, dim);
    batch.offset = comm.rank() * local;
    auto loss = options.mode == "full" ? info_nce_full(batch, logit_scale, world)
                                       : info_nce_local(batch, logit_scale);
    loss.backward();
    images.mutable_grad().reset();
    texts.mutable_grad().reset();
    logit_scale.mutable_grad().reset();
  };
  const double before_mib = current_rss_mib();
  run_step();  // the peak of one step; later steps reuse the allocator's memory
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double growth_mib = max_over_ranks(comm, usage.ru_maxrss / 1024.0 - before_mib);
  const int steps = 5;
  comm.barrier();
  const auto start = Clock::now();
  for (int step = 0; step < steps; ++step)
    run_step();
  const double step_ms = 1000 * max_over_ranks(comm, since(start)) / steps;
  // Logit matrices per rank: local mode 2 x [b, B], full mode [B, B] twice (both directions).
  const double logits_mib =
      (options.mode == "full" ? 2.0 * global * global : 2.0 * local * global) * 4 / (1 << 20);
  log.info(
      "loss {} mode, global batch {} over {} rank(s): {:.1f} ms per step, peak memory +{:.0f} "
      "MiB per rank (logit matrices {:.0f} MiB)",
      options.mode, global, world, step_ms, growth_mib, logits_mib);
  return {{"bench", "loss"},
          {"mode", options.mode},
          {"ranks", world},
          {"global_batch", global},
          {"dim", dim},
          {"threads_per_rank", torch::get_num_threads()},
          {"step_ms", step_ms},
          {"peak_growth_mib_per_rank", growth_mib},
          {"logit_matrices_mib", logits_mib}};
}

// Forward, and forward + backward (symmetric InfoNCE over the batch), of a Chinese-CLIP model
// with random weights on random inputs: seconds per sample, the achieved FLOP/s as a share of
// the matrix-product rate measured in the same run, and the process's peak memory after each.
ordered_json bench_cnclip(const BenchOptions& options, Logger& log) {
  if (options.vision_config.empty() || options.text_config.empty()) {
    throw std::invalid_argument("bench cnclip needs --vision-config and --text-config");
  }
  const auto config =
      ChineseClipConfig::from_json_files(options.vision_config, options.text_config);
  const double matmul = matmul_gflops(5.0);
  torch::manual_seed(1);
  ChineseClip model(config);
  std::int64_t parameters = 0;
  for (const auto& p : model->parameters())
    parameters += p.numel();
  const int batch = options.batch, r = config.vision.image_resolution;
  const auto images = torch::randn({batch, 3, r, r});
  auto tokens = torch::zeros({batch, options.context_length}, torch::kLong);
  const int used = std::min(options.context_length, 20);  // a typical query: ~18 pieces
  tokens.slice(1, 0, used) = torch::randint(1000, config.text.vocab_size, {batch, used});
  const double forward_flops = chinese_clip_forward_flops(config, options.context_length);
  auto peak_mib = [] {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024.0;
  };
  auto time_passes = [&](const std::function<void()>& pass) {
    pass();  // warm-up: allocations, thread pools
    int passes = 0;
    const auto start = Clock::now();
    while (since(start) < options.seconds || passes < 2) {
      pass();
      ++passes;
    }
    return since(start) / (double(passes) * batch);  // seconds per sample
  };
  model->eval();
  const double forward_s = time_passes([&] {
    torch::NoGradGuard no_grad;
    model->encode_image(images);
    model->encode_text(tokens);
  });
  const double forward_peak = peak_mib();
  model->train();
  const double train_s = time_passes([&] {
    model->zero_grad();
    const auto image = torch::nn::functional::normalize(
        model->encode_image(images), torch::nn::functional::NormalizeFuncOptions().dim(1));
    const auto text = torch::nn::functional::normalize(
        model->encode_text(tokens), torch::nn::functional::NormalizeFuncOptions().dim(1));
    info_nce_loss(image, text, torch::tensor(100.0f), {}).backward();
  });
  const double train_peak = peak_mib();
  const double forward_gflops = forward_flops / forward_s / 1e9;
  const double train_gflops = 3 * forward_flops / train_s / 1e9;  // backward ~ 2x forward
  log.info(
      "cnclip: {:.0f}M parameters, {:.1f} GFLOP forward per sample; forward {:.3f} s/sample "
      "({:.1f} GFLOP/s = {:.1f}% of matmul {:.1f}), forward+backward {:.3f} s/sample ({:.1f} "
      "GFLOP/s = {:.1f}%), peak memory {:.0f} / {:.0f} MiB",
      parameters / 1e6, forward_flops / 1e9, forward_s, forward_gflops,
      100 * forward_gflops / matmul, matmul, train_s, train_gflops, 100 * train_gflops / matmul,
      forward_peak, train_peak);
  return {{"bench", "cnclip"},
          {"vision_config", options.vision_config},
          {"text_config", options.text_config},
          {"threads", torch::get_num_threads()},
          {"batch", batch},
          {"context_length", options.context_length},
          {"parameters_m", parameters / 1e6},
          {"forward_gflop_per_sample", forward_flops / 1e9},
          {"forward_s_per_sample", forward_s},
          {"forward_gflops", forward_gflops},
          {"forward_share_of_matmul", forward_gflops / matmul},
          {"forward_peak_rss_mib", forward_peak},
          {"train_s_per_sample", train_s},
          {"train_gflops", train_gflops},
          {"train_share_of_matmul", train_gflops / matmul},
          {"train_peak_rss_mib", train_peak},
          {"matmul_gflops", matmul}};
}

// Items per second of the fastest call of `round` (which processes `items`), after a warm-up
// call, repeated for min(seconds, 10) seconds.
double best_rate_of(const std::function<void()>& round, std::size_t items, double seconds) {
  round();  // warm-up
  double best = 0;
  const auto start = Clock::now();
  do {
    const auto t0 = Clock::now();
    round();
    best = std::max(best, items / since(t0));
  } while (since(start) < std::min(seconds, 10.0));
  return best;
}

// A child `shopclip` process (arguments[0] = "/proc/self/exe"): its wall time and peak memory.
struct ChildRun {
  bool ok = false;       // exited with status 0
  int exit_status = -1;  // -1 when it did not exit normally
  double wall_s = 0;
  double peak_rss_mib = 0;
};

ChildRun run_child(std::vector<std::string> arguments) {
  ChildRun run;
  const auto start = Clock::now();
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
  if (pid > 0 && wait4(pid, &status, 0, &usage) == pid && WIFEXITED(status))
    run.exit_status = WEXITSTATUS(status);
  run.ok = run.exit_status == 0;
  run.wall_s = since(start);
  run.peak_rss_mib = usage.ru_maxrss / 1024.0;  // Linux reports KiB
  return run;
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
  const double best_rate = best_rate_of(decode_round, fields.size(), options.seconds);

  const std::string prep_dir =
      fmt::format("{}/bench-prep-{}", fs::temp_directory_path().string(), getpid());
  fs::remove_all(prep_dir);
  std::vector<std::string> arguments = {"/proc/self/exe", "prep", "--split", options.split};
  if (!options.config_path.empty())
    arguments.insert(arguments.end(), {"--config", options.config_path});
  for (const auto& o : options.overrides)
    arguments.insert(arguments.end(), {"--set", o});
  arguments.insert(arguments.end(), {"--set", "data.prep_dir=" + prep_dir});
  const ChildRun child = run_child(arguments);
  if (!child.ok) {
    fs::remove_all(prep_dir);
    throw std::runtime_error("bench prep: the prep child process failed");
  }
  const double wall = child.wall_s;
  const auto manifest = data::read_manifest(prep_dir + "/" + options.split);
  fs::remove_all(prep_dir);
  const double prep_rate = manifest.num_images / wall;
  const double peak_mib = child.peak_rss_mib;
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

// `data stats` or `data check` (options.what) of a whole dataset in a child process: wall
// time, peak memory and images/s, against the raw decode rate measured in the same run (base64
// + full image decode of train images already in memory, on as many threads).
ordered_json bench_inspect(const BenchOptions& options, Logger& log) {
  if (options.data.empty()) throw std::invalid_argument("bench stats/check: give --data DIR");
  const int threads = data::resolve_threads(options.threads);
  std::int64_t images = 0, bytes = 0;
  std::vector<std::string> fields;
  for (const std::string split : {"train", "valid", "test"}) {
    const std::string tsv = data::images_file(options.data, split);
    if (!fs::exists(tsv)) continue;
    data::BadRowLog ignored;
    const auto rows = data::index_images_tsv(tsv, ignored);
    images += static_cast<std::int64_t>(rows.size());
    const std::size_t n = std::min<std::size_t>(
        rows.size(), static_cast<std::size_t>(options.decode_images) - fields.size());
    data::read_image_fields(tsv, rows, 0, n, [&](const data::ImageRow&, std::string_view field) {
      fields.emplace_back(field);
    });
  }
  for (const auto& entry : fs::directory_iterator(options.data))
    if (entry.is_regular_file()) bytes += static_cast<std::int64_t>(entry.file_size());
  if (fields.empty()) throw std::invalid_argument("bench stats/check: no images under --data");
  auto decode_round = [&] {
    data::parallel_for(0, fields.size(), threads, [&](std::size_t i) {
      const auto image = data::decode_image(data::decode_base64(fields[i]));
      if (image.width <= 0) throw std::logic_error("decoded an empty image");
    });
  };
  const double raw_rate = best_rate_of(decode_round, fields.size(), options.seconds);

  const std::string out =
      fmt::format("{}/bench-{}-{}", fs::temp_directory_path().string(), options.what, getpid());
  const ChildRun child = run_child({"/proc/self/exe", "data", options.what, options.data, "--out",
                                    out, "--threads", std::to_string(threads)});
  fs::remove_all(out);
  // data check exits 1 or 2 when it finds problems: that is a result, not a failure.
  if (child.exit_status < 0 || child.exit_status > (options.what == "check" ? 2 : 0))
    throw std::runtime_error(fmt::format("bench {}: the child process failed", options.what));
  const double rate = images / child.wall_s;
  log.info(
      "data {}: {} images ({:.0f} MiB) in {:.1f} s = {:.0f} images/s vs raw decode {:.0f} "
      "images/s ({:.0f}%), peak memory {:.0f} MiB",
      options.what, images, bytes / 1048576.0, child.wall_s, rate, raw_rate, 100 * rate / raw_rate,
      child.peak_rss_mib);
  return {{"bench", options.what},
          {"data", options.data},
          {"images", images},
          {"input_mib", bytes / 1048576.0},
          {"threads", threads},
          {"wall_s", child.wall_s},
          {"images_per_s", rate},
          {"input_mib_per_s", bytes / 1048576.0 / child.wall_s},
          {"raw_decode_images_per_s", raw_rate},
          {"share_of_raw", rate / raw_rate},
          {"peak_rss_mib", child.peak_rss_mib},
          {"exit_status", child.exit_status}};
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
  command->add_option("what", options.what, "matmul | train | loss | prep | search | cnclip")
      ->required()
      ->check(
          CLI::IsMember({"matmul", "train", "loss", "prep", "search", "cnclip", "stats", "check"}));
  command->add_option("--config,-c", options.config_path, "YAML config (train, prep)");
  command->add_option("--set", options.overrides, "override a config field: key.path=value");
  command->add_option("--split", options.split, "prep: split to prepare");
  command->add_option("--threads", options.threads, "LibTorch threads; 0 = all cores");
  command->add_option("--seconds", options.seconds, "minimum timed duration");
  command->add_option("--decode-images", options.decode_images,
                      "prep, stats, check: images for the raw rate");
  command->add_option("--data", options.data, "stats, check: dataset folder");
  command->add_option("--pool", options.pool, "search: pool size");
  command->add_option("--queries", options.queries, "search: queries");
  command->add_option("--dim", options.dim, "search, loss: embedding dimension");
  command->add_option("--global-batch", options.global_batch, "loss: global batch");
  command->add_option("--vision-config", options.vision_config, "cnclip: Chinese-CLIP vision JSON");
  command->add_option("--text-config", options.text_config, "cnclip: Chinese-CLIP text JSON");
  command->add_option("--batch", options.batch, "cnclip: samples per pass");
  command->add_option("--context-length", options.context_length, "cnclip: tokens per query");
  command->add_option("--mode", options.mode, "loss: local or full")
      ->check(CLI::IsMember({"local", "full"}));
}

int run_bench(const BenchOptions& options, dist::Communicator& comm, Logger& log) {
  if ((options.what != "train" && options.what != "loss") && comm.world_size() > 1) {
    throw std::invalid_argument("only bench train and bench loss run as several processes");
  }
  torch::set_num_threads(dist::threads_for_this_rank(options.threads, comm.local_world_size()));
  ordered_json result;
  if (options.what == "matmul") result = bench_matmul(options);
  if (options.what == "train") result = bench_train(options, comm, log);
  if (options.what == "loss") result = bench_loss(options, comm, log);
  if (options.what == "cnclip") result = bench_cnclip(options, log);
  if (options.what == "prep") result = bench_prep(options, log);
  if (options.what == "search") result = bench_search(options, log);
  if (options.what == "stats" || options.what == "check") result = bench_inspect(options, log);
  if (comm.is_main()) std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace shopclip
