// `shopclip bench ...`: speed and memory figures as one JSON line on stdout, each compared with a
// limit measured in the same run (the matrix-product rate, the raw decode rate).

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
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

#include "core/config.h"
#include "core/device.h"
#include "core/eval/retrieval.h"
#include "core/model/autocast.h"
#include "core/model/chinese_clip.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoder.h"
#include "core/model/linear.h"
#include "core/train/loss.h"
#include "core/train/optim.h"
#include "core/train/profile.h"
#include "core/train/step.h"
#include "data/base64.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/prep.h"
#include "dist/autograd.h"
#include "dist/launch.h"
#include "dist/timed_communicator.h"
#include "launch/commands.h"
#include "launch/measure.h"
#include "launch/open_run.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

struct BenchOptions {
  std::string
      what;  // the benchmark: matmul | train | loss | prep | search | cnclip | stats | check
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
  int query_tokens = 18;        // train, encode, cnclip: tokens of each random query, then padding
  std::string device = "cpu";   // cnclip: cpu | cuda
  bool amp = false;             // cnclip: bfloat16 autocast (cuda)
  int warmup_steps = 3;         // train: untimed steps first
  int steps = 0;                // train: timed steps; 0 = enough for --seconds
  int profile_steps = 0;        // train: steps profiled per operator after timing
  std::string run, checkpoint;  // encode: the trained run (default its best.pt)
  int encode_batch = 256;       // encode: images or queries per forward
};

// Best-of-repeats rate of a 2048 x 2048 fp32 matrix product on one CPU library, GFLOP/s.
double library_matmul_gflops(CpuGemm library, double min_seconds) {
  constexpr int n = 2048;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::Tensor c;
  const auto product = [&] { c = cpu_matrix_product(a, b, library); };
  return best_rate(product, 2ull * n * n * n, min_seconds) / 1e9;
}

// The square product's rate on each library shopclip's CPU products may run on (OpenBLAS
// through LibTorch, oneDNN; 0 for oneDNN in a build without it), GFLOP/s.
struct CpuMatmulRates {
  double openblas = 0, onednn = 0;
  // The machine's practical ceiling for the dense layers every model here is made of, whichever
  // library the model's layers use (core/model/linear.h).
  double best() const { return std::max(openblas, onednn); }
};

CpuMatmulRates cpu_matmul_rates(double min_seconds) {
  CpuMatmulRates rates;
  rates.openblas = library_matmul_gflops(CpuGemm::kOpenBlas, min_seconds);
  if (onednn_gemm_available()) rates.onednn = library_matmul_gflops(CpuGemm::kOneDnn, min_seconds);
  return rates;
}

// The same ceiling on a device in the precision the model computes in: on a GPU an 8192 x 8192
// product (smaller ones leave a large GPU partly idle), bfloat16 under train.amp, else float32
// (LibTorch's default: no TF32).
double device_matmul_gflops(const torch::Device& device, bool bf16, double min_seconds) {
  if (!device.is_cuda()) return cpu_matmul_rates(min_seconds).best();
  min_seconds = std::min(min_seconds, 2.0);  // thousands of products: enough for a stable best
  constexpr int n = 8192;
  const auto options =
      torch::TensorOptions().device(device).dtype(bf16 ? torch::kBFloat16 : torch::kFloat32);
  auto a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  torch::Tensor c;
  const auto product = [&] {
    c = torch::mm(a, b);
    synchronize_device(device);
  };
  return best_rate(product, 2ull * n * n * n, min_seconds) / 1e9;
}

ordered_json bench_matmul(const BenchOptions& options) {
  const CpuMatmulRates rates = cpu_matmul_rates(std::max(2.0, options.seconds / 4));
  return {{"bench", "matmul"},
          {"threads", torch::get_num_threads()},
          {"gflops", rates.best()},
          {"openblas_gflops", rates.openblas},
          {"onednn_gflops", rates.onednn},
          {"cpu_gemm", cpu_gemm_name(cpu_gemm())}};
}

std::int64_t parameter_count(torch::nn::Module& model) {
  std::int64_t count = 0;
  for (const auto& p : model.parameters())
    count += p.numel();
  return count;
}

// Token ids [batch, context] on `device`: the first min(context, length) positions drawn from
// [first_id, vocab), the rest padding (0).
torch::Tensor random_queries(int batch, int context, int length, std::int64_t first_id,
                             std::int64_t vocab, const torch::Device& device) {
  auto tokens = torch::zeros({batch, context}, torch::kLong);
  const int used = std::min(context, length);
  tokens.slice(1, 0, used) = torch::randint(first_id, vocab, {batch, used});
  return tokens.to(device);
}

// Steps every rank runs: enough for `seconds` at rank 0's warm-up speed, at least 5; or `fixed`
// when positive.
int agreed_steps(dist::Communicator& comm, double seconds, double seconds_per_step, int fixed) {
  const std::int64_t by_time =
      std::max<std::int64_t>(5, static_cast<std::int64_t>(seconds / seconds_per_step));
  auto steps = torch::tensor({fixed > 0 ? std::int64_t{fixed} : by_time}, torch::kInt64);
  comm.broadcast(steps, 0);
  return static_cast<int>(steps.item<std::int64_t>());
}

// The largest of every rank's value (the slowest rank sets the pace).
double max_over_ranks(dist::Communicator& comm, double value) {
  auto t = torch::tensor({value}, torch::kFloat64);
  comm.all_reduce(t, dist::ReduceOp::kMax);
  return t.item<double>();
}

// Runs `step` `steps` times under the operator profiler and returns its table as JSON (the
// Markdown table goes to the log, the 25 costliest operators). `rank` names the process in it.
template <typename Step>
ordered_json profile_steps(int steps, const torch::Device& device, int rank, Logger& log,
                           Step&& step) {
  OperatorProfiler profiler;
  profiler.start();
  for (int i = 0; i < steps; ++i)
    step();
  synchronize_device(device);
  profiler.stop();
  const OperatorProfile result = profiler.result(steps);
  log.info("operator profile of rank {} ({} steps):\n{}", rank, steps,
           profile_markdown(result, 25));
  return ordered_json::parse(profile_json(result));
}

// What the timed steps of bench train measured (the slowest rank's figures).
struct TrainTiming {
  int steps = 0;
  double seconds = 0;              // wall time of the timed steps
  double communication_share = 0;  // of that time, inside collectives
  double cpu_growth_mib = 0;       // growth of the peak resident set over the steps
};

// Runs `step` warmup_steps times, agrees on the step count over the ranks (options.steps, or as
// many as fit options.seconds at the warm-up's speed), then times that many steps.
template <typename Step>
TrainTiming time_train_steps(const BenchOptions& options, dist::Communicator& comm,
                             dist::TimedCommunicator& timed, const torch::Device& device,
                             Step&& step) {
  const double rss_before_mib = current_rss_mib();
  const int warmup = std::max(1, options.warmup_steps);
  auto warm_start = MeasureClock::now();
  for (int warm = 0; warm < warmup; ++warm)
    step();
  synchronize_device(device);
  TrainTiming timing;
  timing.steps =
      agreed_steps(comm, options.seconds, seconds_since(warm_start) / warmup, options.steps);
  comm.barrier();
  timed.reset();
  reset_device_peak_memory(device);
  const auto start = MeasureClock::now();
  for (int i = 0; i < timing.steps; ++i)
    step();
  synchronize_device(device);
  timing.seconds = max_over_ranks(comm, seconds_since(start));
  timing.communication_share = max_over_ranks(comm, timed.seconds() / timing.seconds);
  timing.cpu_growth_mib = max_over_ranks(comm, peak_rss_mib() - rss_before_mib);
  return timing;
}

// Training steps of the configured model on random inputs of the configured shape (no data
// loading), timed after warm-up. train.batch_size is the batch of each rank: with R ranks the
// global batch is R times larger, and samples/s counts all ranks. Time inside collectives is
// measured on every rank (waiting for slower ranks included); the largest share is reported.
// Memory: on a GPU the caching allocator's peak over the timed steps; on the CPU the growth of
// the peak resident memory over what the process held before the first step (model, optimizer
// and inputs excluded), the largest over ranks: run one configuration per process.
ordered_json bench_train(const BenchOptions& options, dist::Communicator& comm, Logger& log) {
  const Config config = Config::load(options.config_path, options.overrides);
  // run.device and train.amp as in training: on cuda, one GPU per rank and the NCCL backend.
  const torch::Device device = training_device(config.run.device, comm.local_rank());
  const auto device_comm = dist::make_device_communicator(comm, device);
  const double matmul = device_matmul_gflops(device, config.train.amp, 3.0);
  constexpr std::int64_t kVocab = 3000;
  dist::TimedCommunicator timed(device_comm ? *device_comm : comm);
  torch::manual_seed(static_cast<std::uint64_t>(config.run.seed));
  DualEncoder model(config.model, kVocab, 0, &timed);
  model->to(device);
  model->train();
  auto optimizer = make_adamw(model, config.train);
  const int batch = config.train.batch_size, resolution = config.model.image.resolution;
  // In the layout the loader delivers (data::normalize_pixels: channels-last strides).
  auto images = torch::randn({batch, resolution, resolution, 3}).permute({0, 3, 1, 2}).to(device);
  // Queries of realistic length (default [CLS] + 16 tokens + [SEP]), then padding.
  const auto tokens = random_queries(batch, config.model.text.context_length, options.query_tokens,
                                     5, kVocab, device);
  StepRunner runner(model, *optimizer, timed, config.train);
  const auto train_step = [&] { runner.step({images, tokens, {}, 0, {}}, config.train.lr); };
  // The text tower computes the batch's longest query, not the context (trim_trailing_padding).
  const int text_tokens = static_cast<int>(trim_trailing_padding(tokens, 0).size(1));
  const TrainTiming timing = time_train_steps(options, comm, timed, device, train_step);
  const auto payload = timed.payload();  // a copy: the profiled steps below add to it
  // After the timed steps, so that the profiler's bookkeeping is not in the figures.
  const ordered_json profile =
      options.profile_steps > 0
          ? profile_steps(options.profile_steps, device, comm.rank(), log, train_step)
          : ordered_json();

  const int world = comm.world_size();
  const double samples_per_second = double(timing.steps) * batch * world / timing.seconds;
  const double forward_flops = model_forward_flops(config.model, text_tokens);
  // Forward + backward is about 3x the forward multiply-adds; matmul is one rank's rate.
  const double model_gflops = 3.0 * forward_flops * samples_per_second / 1e9;
  const double machine_matmul = matmul * world;  // every rank measured its own share of cores
  const double peak_mib = device.is_cuda() ? device_peak_memory_mib(device) : timing.cpu_growth_mib;
  log.info(
      "train on {}{}: {} rank(s) x {} samples{}: {:.1f} samples/s, {:.1f}% of step time in "
      "communication, {:.1f} GFLOP/s = {:.1f}% of the ranks' matrix-product rate {:.1f}; peak "
      "memory {:.0f} MiB",
      device.str(), config.train.amp ? " (bf16 autocast)" : "", world, batch,
      config.train.micro_batch > 0
          ? fmt::format(" in micro-batches of {}", config.train.micro_batch)
          : "",
      samples_per_second, 100 * timing.communication_share, model_gflops,
      100 * model_gflops / machine_matmul, machine_matmul, peak_mib);
  const double per_step_mb = 1e6 * timing.steps;
  return {{"bench", "train"},
          {"config", options.config_path},
          {"device", device.is_cuda() ? "cuda" : "cpu"},
          {"amp", config.train.amp},
          {"backend", timed.backend()},
          {"ranks", world},
          {"threads_per_rank", torch::get_num_threads()},
          {"batch_per_rank", batch},
          {"global_batch", batch * world},
          {"text_tokens_computed", text_tokens},
          {"steps", timing.steps},
          {"step_ms", 1000 * timing.seconds / timing.steps},
          {"samples_per_s", samples_per_second},
          {"communication_share", timing.communication_share},
          {"all_reduce_mb_per_step", payload.all_reduce / per_step_mb},
          {"all_gather_mb_per_step", payload.all_gather / per_step_mb},
          {"reduce_scatter_mb_per_step", payload.reduce_scatter / per_step_mb},
          {"ring_mb_sent_per_step", payload.ring_bytes_sent(world) / per_step_mb},
          {"forward_mflop_per_sample", forward_flops / 1e6},
          {"parameters", parameter_count(*model)},
          {"model_gflops", model_gflops},
          {"matmul_gflops", machine_matmul},
          {"share_of_matmul", model_gflops / machine_matmul},
          {"cpu_gemm", device.is_cuda() ? "" : cpu_gemm_name(cpu_gemm())},
          {"micro_batch", config.train.micro_batch},
          {"device_peak_mib", device_peak_memory_mib(device)},
          {"cpu_peak_growth_mib", timing.cpu_growth_mib},
          {"profile", profile}};
}

// Encoding speed of a trained run's model, tower by tower (evaluation mode, no gradients, on
// the run's device): parameters, forward FLOPs per image and per query, images/s and queries/s
// in batches of --batch (as when indexing a pool or encoding a query set) and the latency of one
// query alone (as a search box sends them), the rates also as GFLOP/s against the
// matrix-product rate measured in the same run. Inputs are random, of the model's shapes; a
// query holds --query-tokens tokens (default [CLS] + 16 + [SEP]), then padding, which the tower
// trims: the FLOPs count the tokens computed.
ordered_json bench_encode(const BenchOptions& options, dist::Communicator& comm, Logger& log) {
  if (options.run.empty()) throw std::invalid_argument("bench encode needs --run DIR");
  if (options.encode_batch < 1)
    throw std::invalid_argument(fmt::format("--batch {} must be >= 1", options.encode_batch));
  const OpenedRun opened = open_run(options.run, options.checkpoint, {}, comm);
  DualEncoder model = opened.loaded.model;
  const ModelConfig& config = opened.config.model;
  const torch::Device device = model->parameters().front().device();
  const double matmul = device_matmul_gflops(device, false, 3.0);
  torch::NoGradGuard no_grad;
  const int batch = options.encode_batch, resolution = config.image.resolution;
  // In the layout the loader delivers (data::normalize_pixels: channels-last strides).
  const auto images =
      torch::randn({batch, resolution, resolution, 3}).permute({0, 3, 1, 2}).to(device);
  auto tokens = random_queries(batch, config.text.context_length, options.query_tokens, 5,
                               static_cast<std::int64_t>(opened.loaded.vocab.size()), device);
  tokens.masked_fill_(tokens.eq(0), model->pad_id());
  const auto one_query = tokens.slice(0, 0, 1).clone();
  const double seconds = std::max(2.0, options.seconds / 3);
  const auto rate = [&](const std::function<void()>& pass, std::size_t items) {
    return best_rate(
        [&] {
          pass();
          synchronize_device(device);
        },
        items, seconds);
  };
  const double images_per_s = rate([&] { model->encode_image(images); }, batch);
  const double queries_per_s = rate([&] { model->encode_text(tokens); }, batch);
  const double single_query_s = mean_seconds_per_call(
      [&] {
        model->encode_text(one_query);
        synchronize_device(device);
      },
      seconds, 20);
  const int text_tokens = static_cast<int>(trim_trailing_padding(tokens, model->pad_id()).size(1));
  const double image_flops = image_forward_flops(config);
  const double text_flops = text_forward_flops(config, text_tokens);
  const std::int64_t image_parameters = count_parameters(*model->tower(FrozenTower::kImage));
  const std::int64_t text_parameters = count_parameters(*model->tower(FrozenTower::kText));
  log.info(
      "encode {} on {}: image tower {:.2f}M parameters, {:.1f} MFLOP per image, {:.0f} images/s "
      "({:.1f} GFLOP/s); text tower {:.2f}M parameters, {:.1f} MFLOP per query, {:.0f} "
      "queries/s ({:.1f} GFLOP/s), one query alone {:.2f} ms; batch {}; matrix-product rate "
      "{:.1f} GFLOP/s",
      options.run, device.str(), image_parameters / 1e6, image_flops / 1e6, images_per_s,
      image_flops * images_per_s / 1e9, text_parameters / 1e6, text_flops / 1e6, queries_per_s,
      text_flops * queries_per_s / 1e9, 1000 * single_query_s, batch, matmul);
  return {{"bench", "encode"},
          {"run", options.run},
          {"checkpoint", opened.checkpoint},
          {"device", device.str()},
          {"threads", torch::get_num_threads()},
          {"batch", batch},
          {"image_parameters", image_parameters},
          {"text_parameters", text_parameters},
          {"parameters", count_parameters(*model)},
          {"image_mflop", image_flops / 1e6},
          {"query_mflop", text_flops / 1e6},
          {"query_tokens_computed", text_tokens},
          {"images_per_s", images_per_s},
          {"queries_per_s", queries_per_s},
          {"single_query_ms", 1000 * single_query_s},
          {"image_gflops", image_flops * images_per_s / 1e9},
          {"query_gflops", text_flops * queries_per_s / 1e9},
          {"matmul_gflops", matmul},
          {"cpu_gemm", device.is_cuda() ? "" : cpu_gemm_name(cpu_gemm())}};
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
  const double growth_mib = max_over_ranks(comm, peak_rss_mib() - before_mib);
  const int steps = 5;
  comm.barrier();
  const auto start = MeasureClock::now();
  for (int step = 0; step < steps; ++step)
    run_step();
  const double step_ms = 1000 * max_over_ranks(comm, seconds_since(start)) / steps;
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

// Seconds per sample and peak memory (MiB) of Chinese-CLIP's inference pass (both towers, no
// gradients) and of its training pass (both towers, InfoNCE, backward), each repeated for
// options.seconds.
struct CnclipTimings {
  double forward_s = 0, forward_peak_mib = 0, train_s = 0, train_peak_mib = 0;
};

CnclipTimings time_cnclip_passes(ChineseClip& model, const torch::Tensor& images,
                                 const torch::Tensor& tokens, const BenchOptions& options,
                                 const torch::Device& device) {
  const auto batch = images.size(0);
  auto time_passes = [&](const std::function<void()>& pass) {  // seconds per sample
    const auto synchronized_pass = [&] {
      pass();
      synchronize_device(device);
    };
    return mean_seconds_per_call(synchronized_pass, options.seconds, 2) / batch;
  };
  const auto peak_mib = [&] {
    return device.is_cuda() ? device_peak_memory_mib(device) : peak_rss_mib();
  };
  CnclipTimings timings;
  model->eval();
  timings.forward_s = time_passes([&] {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(options.amp);
    model->encode_image(images);
    model->encode_text(tokens);
  });
  timings.forward_peak_mib = peak_mib();
  model->train();
  reset_device_peak_memory(device);
  timings.train_s = time_passes([&] {
    model->zero_grad();
    torch::Tensor image_features, text_features;
    {
      AutocastGuard autocast(options.amp);
      image_features = model->encode_image(images).to(torch::kFloat32);
      text_features = model->encode_text(tokens).to(torch::kFloat32);
    }
    const auto image = torch::nn::functional::normalize(
        image_features, torch::nn::functional::NormalizeFuncOptions().dim(1));
    const auto text = torch::nn::functional::normalize(
        text_features, torch::nn::functional::NormalizeFuncOptions().dim(1));
    info_nce_loss(image, text, torch::tensor(100.0f, image.options()), {}).backward();
  });
  timings.train_peak_mib = peak_mib();
  return timings;
}

// Forward, and forward + backward (symmetric InfoNCE over the batch), of a Chinese-CLIP model
// with random weights on random inputs, on the CPU or one GPU, in float32 or under bfloat16
// autocast (as train.amp: towers under autocast, the loss and backward outside): seconds per
// sample, the achieved FLOP/s as a share of the matrix-product rate measured in the same run, and
// the peak memory after each (resident memory on the CPU, the caching allocator's peak on a GPU).
ordered_json bench_cnclip(const BenchOptions& options, Logger& log) {
  if (options.vision_config.empty() || options.text_config.empty()) {
    throw std::invalid_argument("bench cnclip needs --vision-config and --text-config");
  }
  if (options.amp && options.device != "cuda") {
    throw std::invalid_argument("bench cnclip --amp needs --device cuda");
  }
  const auto config =
      ChineseClipConfig::from_json_files(options.vision_config, options.text_config);
  const torch::Device device = training_device(options.device, 0);
  const double matmul = device_matmul_gflops(device, options.amp, 5.0);
  torch::manual_seed(1);
  ChineseClip model(config);
  model->to(device);
  const std::int64_t parameters = parameter_count(*model);
  const int batch = options.batch, r = config.vision.image_resolution;
  const auto images = torch::randn({batch, 3, r, r}).to(device);
  // A typical query: ~18 pieces + [CLS] + [SEP] (--query-tokens, default 20). Ids from 1000 up
  // skip the vocabulary's special and unused tokens (a small test vocabulary has fewer: then its
  // upper half).
  const auto tokens = random_queries(batch, options.context_length, options.query_tokens,
                                     std::min<std::int64_t>(1000, config.text.vocab_size / 2),
                                     config.text.vocab_size, device);
  // The text tower computes the batch's longest query (trim_trailing_padding), not the context.
  const int text_tokens = static_cast<int>(trim_trailing_padding(tokens, 0).size(1));
  const double forward_flops = chinese_clip_forward_flops(config, text_tokens);
  const CnclipTimings timings = time_cnclip_passes(model, images, tokens, options, device);
  const double forward_gflops = forward_flops / timings.forward_s / 1e9;
  const double train_gflops = 3 * forward_flops / timings.train_s / 1e9;  // backward ~ 2x forward
  log.info(
      "cnclip on {}{}: {:.0f}M parameters, {:.1f} GFLOP forward per sample; batch {}: forward "
      "{:.5f} s/sample ({:.1f} GFLOP/s = {:.1f}% of matmul {:.1f}), forward+backward {:.5f} "
      "s/sample ({:.1f} GFLOP/s = {:.1f}%), peak memory {:.0f} / {:.0f} MiB",
      device.str(), options.amp ? " (bf16 autocast)" : "", parameters / 1e6, forward_flops / 1e9,
      batch, timings.forward_s, forward_gflops, 100 * forward_gflops / matmul, matmul,
      timings.train_s, train_gflops, 100 * train_gflops / matmul, timings.forward_peak_mib,
      timings.train_peak_mib);
  return {{"bench", "cnclip"},
          {"vision_config", options.vision_config},
          {"text_config", options.text_config},
          {"device", options.device},
          {"amp", options.amp},
          {"threads", torch::get_num_threads()},
          {"batch", batch},
          {"context_length", options.context_length},
          {"text_tokens_computed", text_tokens},
          {"parameters_m", parameters / 1e6},
          {"forward_gflop_per_sample", forward_flops / 1e9},
          {"forward_s_per_sample", timings.forward_s},
          {"forward_samples_per_s", 1 / timings.forward_s},
          {"forward_gflops", forward_gflops},
          {"forward_share_of_matmul", forward_gflops / matmul},
          {"forward_peak_rss_mib", timings.forward_peak_mib},
          {"train_s_per_sample", timings.train_s},
          {"train_samples_per_s", 1 / timings.train_s},
          {"train_gflops", train_gflops},
          {"train_share_of_matmul", train_gflops / matmul},
          {"train_peak_rss_mib", timings.train_peak_mib},
          {"peak_memory_is", device.is_cuda() ? "cuda allocator peak" : "process resident peak"},
          {"matmul_gflops", matmul},
          {"cpu_gemm", device.is_cuda() ? "" : cpu_gemm_name(cpu_gemm())}};
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
  const auto start = MeasureClock::now();
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
  run.wall_s = seconds_since(start);
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
  const double raw_rate = best_rate(decode_round, fields.size(), std::min(options.seconds, 10.0));

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
      options.split, prep_rate, raw_rate, 100 * prep_rate / raw_rate, peak_mib);
  return {{"bench", "prep"},
          {"data", config.data.root},
          {"split", options.split},
          {"images", manifest.num_images},
          {"threads", threads},
          {"resolution", resolution},
          {"prep_wall_s", wall},
          {"prep_images_per_s", prep_rate},
          {"raw_decode_resize_images_per_s", raw_rate},
          {"share_of_raw", prep_rate / raw_rate},
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
  const double raw_rate = best_rate(decode_round, fields.size(), std::min(options.seconds, 10.0));

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
  const auto start = MeasureClock::now();
  do {
    const auto t0 = MeasureClock::now();
    EmbeddingIndex index("Flat", options.dim);
    index.add(pool.data_ptr<float>(), options.pool);
    build = seconds_since(t0);
    index.search(queries.data_ptr<float>(), options.queries, 10, rows, scores);
    best = std::min(best, seconds_since(t0));
  } while (seconds_since(start) < std::min(options.seconds, 10.0));
  log.info("search: {} queries over {} images (dim {}) in {:.3f} s (index build {:.3f} s)",
           options.queries, options.pool, options.dim, best, build);
  return {{"bench", "search"},    {"index", "Flat"},
          {"pool", options.pool}, {"queries", options.queries},
          {"dim", options.dim},   {"threads", torch::get_num_threads()},
          {"seconds", best}};
}

using BenchFunction = std::function<ordered_json(const BenchOptions&, CommandContext&)>;

// A `bench NAME` command with --threads (and --seconds unless timed_seconds is false); returns
// it and its options for the benchmark's own options.
std::pair<CLI::App*, std::shared_ptr<BenchOptions>> add_bench(
    CommandRegistry& commands, const std::string& name, const std::string& description,
    Processes processes, BenchFunction measure, bool timed_seconds = true) {
  CLI::App* bench = commands.group("bench", "measure speed figures (JSON on stdout)");
  auto options = std::make_shared<BenchOptions>();
  options->what = name;
  CLI::App* command = commands.add(
      name, description, processes,
      [options, measure](CommandContext& context) {
        torch::set_num_threads(
            dist::threads_for_this_rank(options->threads, context.comm.local_world_size()));
        const ordered_json result = measure(*options, context);
        if (context.comm.is_main()) std::cout << result.dump() << std::endl;
        return 0;
      },
      bench);
  command->add_option("--threads", options->threads, "LibTorch threads; 0 = all cores");
  if (timed_seconds) command->add_option("--seconds", options->seconds, "minimum timed duration");
  return {command, options};
}

void add_config_options(CLI::App* command, BenchOptions& options) {
  command->add_option("--config,-c", options.config_path, "YAML config file");
  command->add_option("--set", options.overrides, "override a config field: key.path=value")
      ->allow_extra_args(false);
}

// The random queries' length; the text towers compute only up to the longest query of a batch,
// so it sets the text work (and the FLOPs counted) where the context length does not.
void add_query_tokens_option(CLI::App* command, BenchOptions& options) {
  command
      ->add_option("--query-tokens", options.query_tokens,
                   "tokens of each random query, [CLS] and [SEP] included (at most the context "
                   "length); the rest is padding, which the text tower does not compute")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

}  // namespace

void register_bench_commands(CommandRegistry& commands) {
  add_bench(commands, "matmul",
            "2048 x 2048 fp32 matrix-product rate (GFLOP/s), OpenBLAS and oneDNN", Processes::kOne,
            [](const BenchOptions& o, CommandContext&) { return bench_matmul(o); });

  auto [train, train_options] = add_bench(
      commands, "train",
      "training steps of a config's model on random inputs: samples/s and share of matmul",
      Processes::kMany,
      [](const BenchOptions& o, CommandContext& c) { return bench_train(o, c.comm, c.log); });
  add_config_options(train, *train_options);
  add_query_tokens_option(train, *train_options);
  train->add_option("--warmup-steps", train_options->warmup_steps, "untimed steps first (>= 1)");
  train->add_option("--steps", train_options->steps,
                    "timed steps; 0 = enough for --seconds (at least 5)");
  train
      ->add_flag("--profile{10}", train_options->profile_steps,
                 "after the timed steps, profile 10 more (--profile=N: N) per operator "
                 "(LibTorch's autograd profiler): a table in the log, the operators in the JSON")
      ->check(CLI::NonNegativeNumber);

  auto [encode, encode_options] = add_bench(
      commands, "encode",
      "a trained run's encoding speed per tower: parameters, FLOPs, images/s, queries/s, "
      "one-query latency",
      Processes::kOne,
      [](const BenchOptions& o, CommandContext& c) { return bench_encode(o, c.comm, c.log); });
  encode->add_option("--run", encode_options->run, "the trained run's folder")->required();
  encode->add_option("--checkpoint", encode_options->checkpoint,
                     "checkpoint to load (default RUN/checkpoints/best.pt)");
  encode->add_option("--batch", encode_options->encode_batch, "images or queries per forward");
  add_query_tokens_option(encode, *encode_options);

  auto [loss, loss_options] = add_bench(
      commands, "loss", "the contrastive loss alone across ranks: step time and peak memory",
      Processes::kMany,
      [](const BenchOptions& o, CommandContext& c) { return bench_loss(o, c.comm, c.log); },
      /*timed_seconds=*/false);
  loss->add_option("--global-batch", loss_options->global_batch, "rows of the global batch");
  loss->add_option("--dim", loss_options->dim, "embedding dimension");
  loss->add_option("--mode", loss_options->mode, "local or full")
      ->check(CLI::IsMember({"local", "full"}));

  auto [prep, prep_options] =
      add_bench(commands, "prep", "prep of a split end to end against the raw decode + resize rate",
                Processes::kOne,
                [](const BenchOptions& o, CommandContext& c) { return bench_prep(o, c.log); });
  add_config_options(prep, *prep_options);
  prep->add_option("--split", prep_options->split, "split to prepare");
  prep->add_option("--decode-images", prep_options->decode_images, "images for the raw rate");

  auto [search, search_options] =
      add_bench(commands, "search",
                "exact inner-product search (FAISS Flat) of random unit vectors", Processes::kOne,
                [](const BenchOptions& o, CommandContext& c) { return bench_search(o, c.log); });
  search->add_option("--pool", search_options->pool, "pool size");
  search->add_option("--queries", search_options->queries, "queries");
  search->add_option("--dim", search_options->dim, "embedding dimension");

  auto [cnclip, cnclip_options] = add_bench(
      commands, "cnclip", "forward and forward+backward of a Chinese-CLIP model (random weights)",
      Processes::kOne,
      [](const BenchOptions& o, CommandContext& c) { return bench_cnclip(o, c.log); });
  cnclip->add_option("--vision-config", cnclip_options->vision_config, "Chinese-CLIP vision JSON")
      ->required();
  cnclip->add_option("--text-config", cnclip_options->text_config, "Chinese-CLIP text JSON")
      ->required();
  cnclip->add_option("--batch", cnclip_options->batch, "samples per pass");
  cnclip->add_option("--context-length", cnclip_options->context_length, "tokens per query");
  cnclip_options->query_tokens = 20;
  add_query_tokens_option(cnclip, *cnclip_options);
  cnclip->add_option("--device", cnclip_options->device, "cpu or cuda (GPU 0)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cnclip->add_flag("--amp", cnclip_options->amp, "bfloat16 autocast around the towers (cuda)");

  for (const std::string what : {"stats", "check"}) {
    auto [command, options] = add_bench(
        commands, what, "`data " + what + "` of a whole dataset against the raw decode rate",
        Processes::kOne,
        [](const BenchOptions& o, CommandContext& c) { return bench_inspect(o, c.log); });
    command->add_option("--data", options->data, "dataset folder")->required();
    command->add_option("--decode-images", options->decode_images, "images for the raw rate");
  }
}

}  // namespace shopclip
