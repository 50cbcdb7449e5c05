// `shopclip index build`: a run's image pool encoded once and its FAISS index saved
// (core/eval/index_store.h), so that `eval --index-dir` (and later a query service) searches it
// without encoding the pool again. Encoding runs on every rank (each its slice of the pool, as
// `eval`); rank 0 builds the index (in --shards shards of contiguous rows) and writes the folder.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/device.h"
#include "core/eval/embeddings.h"
#include "core/eval/evaluate.h"
#include "core/eval/index_store.h"
#include "core/eval/metrics.h"
#include "core/eval/predictions.h"
#include "core/eval/retrieval.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "data/error.h"
#include "data/files.h"
#include "dist/launch.h"
#include "launch/commands.h"
#include "launch/measure.h"
#include "launch/open_run.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

struct IndexBuildOptions {
  std::string run, checkpoint, split, out;
  int shards = 1;
  std::vector<std::string> overrides;
};

int run_index_build(const IndexBuildOptions& options, CommandContext& context) {
  Logger& log = context.log;
  dist::Communicator& comm = context.comm;
  if (options.out.empty()) throw std::invalid_argument("index build: name the folder (--out)");
  if (options.shards < 1) throw std::invalid_argument("index build: --shards must be >= 1");
  OpenedRun run = open_run(options.run, options.checkpoint, options.overrides, comm);
  const Config& config = run.config;
  const std::string& checkpoint = run.checkpoint;
  torch::set_num_threads(dist::threads_for_this_rank(config.run.threads, comm.local_world_size()));
  DualEncoderAdapter encoder(run.loaded.model, data::Tokenizer(run.loaded.vocab),
                             config.model.text.context_length);
  const std::string split = options.split.empty() ? config.data.valid_split : options.split;
  data::BadRowLog bad_rows;
  const SplitData data_split = open_split(config, split, bad_rows);

  auto start = MeasureClock::now();
  const auto pool =
      encode_images_across_ranks(encoder, *data_split.images, config.eval.batch_size, comm);
  const double encode_seconds = seconds_since(start);
  if (!comm.is_main()) return 0;
  start = MeasureClock::now();
  const EmbeddingIndex index = build_pool_index(config, pool, options.shards);
  const double build_seconds = seconds_since(start);
  IndexManifest manifest;
  manifest.checkpoint = checkpoint;
  manifest.xxh64 = fmt::format("{:016x}", data::xxh64_file(checkpoint));
  manifest.embed_dim = pool.size(1);
  manifest.normalized = encoder.normalized();
  manifest.factory = config.eval.index;
  manifest.search_params = config.eval.search_params;
  manifest.split = split;
  write_saved_index(options.out, index, manifest, data_split.images->ids(), pool);
  log.info(
      "index build: {} images of {} encoded in {:.1f} s, index {} ({} shard(s){}) built in "
      "{:.2f} s; wrote {}",
      pool.size(0), split, encode_seconds, config.eval.index, options.shards,
      config.eval.search_params.empty() ? std::string() : ", search " + config.eval.search_params,
      build_seconds, options.out);
  return 0;
}

// ---- bench index ----------------------------------------------------------------------------

struct IndexBenchOptions {
  std::string run, checkpoint, split;
  // "FACTORY" or "FACTORY|SETTINGS;SETTINGS;...": each factory string with the search settings
  // to measure it at (eval.search_params syntax; none = the index's defaults).
  std::vector<std::string> indexes = {"Flat", "HNSW32|efSearch=16;efSearch=64;efSearch=256",
                                      "IVF256,Flat|nprobe=1;nprobe=8;nprobe=32",
                                      "IVF256,PQ32|nprobe=8;nprobe=32"};
  std::vector<std::int64_t> extra = {0};  // random unit vectors added to the real pool
  int single_queries = 200;               // queries timed one at a time (latency percentiles)
  int threads = 0;
};

// The factory string and its settings of one --index entry.
std::pair<std::string, std::vector<std::string>> parse_index_entry(const std::string& entry) {
  const auto bar = entry.find('|');
  if (bar == std::string::npos) return {entry, {""}};
  std::vector<std::string> settings;
  std::string rest = entry.substr(bar + 1);
  for (std::size_t start = 0; start <= rest.size();) {
    const auto end = std::min(rest.find(';', start), rest.size());
    settings.push_back(rest.substr(start, end - start));
    start = end + 1;
  }
  return {entry.substr(0, bar), settings};
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const auto at = static_cast<std::size_t>(std::ceil(q * double(values.size()))) - 1;
  return values[std::min(at, values.size() - 1)];
}

// Recall of the approximate top k against the exact top k: the mean share of the exact list found.
double recall_at_k(const std::vector<std::int64_t>& approximate,
                   const std::vector<std::int64_t>& exact, std::int64_t queries, int k) {
  double found = 0;
  for (std::int64_t q = 0; q < queries; ++q) {
    const auto* a = approximate.data() + q * k;
    const auto* e = exact.data() + q * k;
    for (int i = 0; i < k; ++i)
      found += std::count(a, a + k, e[i]) > 0 ? 1 : 0;
  }
  return found / double(queries * k);
}

// One pool of the benchmark: the real rows, then random unit vectors (never relevant: ids below
// 0), and the exact top k of every query with its MeanRecall, which every index is held to.
struct BenchPool {
  torch::Tensor vectors;  // float32 [N, D]
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> exact;  // [Q, k] rows
  double exact_mean_recall = 0;
};

// The real rows, then `extra` random unit vectors (torch::manual_seed(1)), written chunk by chunk
// into one tensor: at 10M rows of 256 floats (10 GB) whole-size temporaries would triple the
// memory. Chunks of 2^18 rows draw the same numbers as one draw of the whole (LibTorch's CPU
// normal sampler fills consecutive blocks of 16), so pools up to 262,144 extra rows are the
// earlier records' pools exactly.
torch::Tensor bench_pool_vectors(const torch::Tensor& real, std::int64_t extra) {
  const std::int64_t dim = real.size(1), chunk = std::int64_t{1} << 18;
  torch::Tensor pool = torch::empty({real.size(0) + extra, dim});
  pool.narrow(0, 0, real.size(0)).copy_(real);
  torch::manual_seed(1);
  for (std::int64_t first = 0; first < extra; first += chunk) {
    const std::int64_t n = std::min(chunk, extra - first);
    pool.narrow(0, real.size(0) + first, n).copy_(unit_rows(torch::randn({n, dim})));
  }
  return pool;
}

// One index at one search setting over a pool: batch rate, single-query latency, recall against
// the exact top k, MeanRecall.
ordered_json measure_setting(const EmbeddingIndex& index, const torch::Tensor& queries,
                             const BenchPool& pool, const SplitData& split,
                             std::int64_t single_queries, int k) {
  const std::int64_t num_queries = queries.size(0), dim = queries.size(1);
  std::vector<std::int64_t> found, one;
  std::vector<float> scores;
  auto start = MeasureClock::now();
  index.search(queries.data_ptr<float>(), num_queries, k, found, scores);
  const double batch_seconds = seconds_since(start);
  std::vector<double> latency_ms;
  for (std::int64_t q = 0; q < std::min(single_queries, num_queries); ++q) {
    start = MeasureClock::now();
    index.search(queries.data_ptr<float>() + q * dim, 1, k, one, scores);
    latency_ms.push_back(1000 * seconds_since(start));
  }
  std::vector<std::int64_t> query_ids;
  for (const auto& query : split.queries.queries)
    query_ids.push_back(query.id);
  const auto predictions =
      predictions_from_search(found, k, queries, pool.vectors, query_ids, pool.ids);
  return {{"queries_per_second", double(num_queries) / batch_seconds},
          {"latency_ms_p50", percentile(latency_ms, 0.5)},
          {"latency_ms_p99", percentile(latency_ms, 0.99)},
          {"recall_at_10", recall_at_k(found, pool.exact, num_queries, k)},
          {"mean_recall", muge_recall(split.queries.queries, predictions).mean_recall},
          {"mean_recall_exact", pool.exact_mean_recall}};
}

int run_index_bench(const IndexBenchOptions& options, CommandContext& context) {
  Logger& log = context.log;
  torch::set_num_threads(dist::threads_for_this_rank(options.threads, 1));
  OpenedRun run = open_run(options.run, options.checkpoint, {}, context.comm);
  const Config& config = run.config;
  DualEncoderAdapter encoder(run.loaded.model, data::Tokenizer(run.loaded.vocab),
                             config.model.text.context_length);
  const std::string split = options.split.empty() ? config.data.valid_split : options.split;
  data::BadRowLog bad_rows;
  const SplitData data_split = open_split(config, split, bad_rows);
  if (!data_split.has_ground_truth) {
    throw data::DataError(fmt::format("bench index: split '{}' has no ground truth", split));
  }
  std::vector<std::string> texts;
  std::vector<std::int64_t> query_ids;
  for (const auto& query : data_split.queries.queries) {
    texts.push_back(query.text);
    query_ids.push_back(query.id);
  }
  const auto real = encode_images(encoder, *data_split.images, config.eval.batch_size);
  const auto queries = encode_texts(encoder, texts, config.eval.batch_size);
  const std::int64_t num_queries = queries.size(0), dim = queries.size(1);
  const int k = 10;
  ordered_json rows = ordered_json::array();
  for (const std::int64_t extra : options.extra) {
    BenchPool pool;
    pool.vectors = bench_pool_vectors(real, extra);
    pool.ids = data_split.images->ids();
    for (std::int64_t i = 0; i < extra; ++i)
      pool.ids.push_back(-1 - i);
    std::vector<float> exact_scores;
    exact_top_k(queries.data_ptr<float>(), num_queries, pool.vectors.data_ptr<float>(),
                pool.vectors.size(0), static_cast<int>(dim), k, pool.exact, exact_scores);
    pool.exact_mean_recall = muge_recall(data_split.queries.queries,
                                         predictions_from_rows(pool.exact, k, query_ids, pool.ids))
                                 .mean_recall;
    for (const auto& entry : options.indexes) {
      const auto [factory, settings] = parse_index_entry(entry);
      const auto start = MeasureClock::now();
      EmbeddingIndex index(factory, static_cast<int>(dim));
      index.add(pool.vectors.data_ptr<float>(), pool.vectors.size(0));
      const double build_seconds = seconds_since(start);
      // FAISS's serialised size: what the index holds in memory, give or take its headers.
      const fs::path file =
          fs::temp_directory_path() / fmt::format("shopclip-bench-{}.faiss", getpid());
      index.write({file.string()});
      const double size_mib = double(fs::file_size(file)) / (1024.0 * 1024.0);
      fs::remove(file);
      for (const auto& params : settings) {
        index.set_search_params(params);
        ordered_json row = {{"pool", pool.vectors.size(0)},
                            {"extra", extra},
                            {"index", factory},
                            {"search_params", params},
                            {"build_seconds", build_seconds},
                            {"size_mib", size_mib}};
        row.update(measure_setting(index, queries, pool, data_split, options.single_queries, k));
        log.info("bench index: {}", row.dump());
        rows.push_back(std::move(row));
      }
    }
  }
  const ordered_json result = {{"bench", "index"},
                               {"run", options.run},
                               {"checkpoint", run.checkpoint},
                               {"split", split},
                               {"queries", num_queries},
                               {"dim", dim},
                               {"threads", torch::get_num_threads()},
                               {"rows", rows}};
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

void register_index_commands(CommandRegistry& commands) {
  CLI::App* group = commands.group("index", "saved pool indexes");
  auto build = std::make_shared<IndexBuildOptions>();
  CLI::App* build_cmd = commands.add(
      "build",
      "encode a split's image pool with a run's model and save its FAISS index (eval.index, "
      "eval.search_params) for `eval --index-dir`",
      Processes::kMany,
      [build](CommandContext& context) { return run_index_build(*build, context); }, group);
  build_cmd->add_option("--run", build->run, "run folder (its config.yaml and best checkpoint)")
      ->required();
  build_cmd->add_option("--checkpoint", build->checkpoint, "checkpoint instead of the best");
  build_cmd->add_option("--split", build->split, "the pool's split (default data.valid_split)");
  build_cmd->add_option("--shards", build->shards, "index shards of contiguous rows")
      ->capture_default_str();
  build_cmd->add_option("--out", build->out, "the index folder")->required();
  build_cmd->add_option("--set", build->overrides,
                        "key=value over the run's config (e.g. eval.index=HNSW32, "
                        "eval.search_params=efSearch=64)");

  auto bench = std::make_shared<IndexBenchOptions>();
  CLI::App* bench_cmd = commands.add(
      "index",
      "FAISS indexes over a run's real pool (plus random vectors): recall@10 against exact "
      "search, MeanRecall, build time, size, queries/s, single-query latency",
      Processes::kOne,
      [bench](CommandContext& context) { return run_index_bench(*bench, context); },
      commands.group("bench", "measure speed figures (JSON on stdout)"));
  bench_cmd->add_option("--run", bench->run, "run folder (its config.yaml and best checkpoint)")
      ->required();
  bench_cmd->add_option("--checkpoint", bench->checkpoint, "checkpoint instead of the best");
  bench_cmd->add_option("--split", bench->split,
                        "split with ground truth: its pool and queries (default valid)");
  bench_cmd->add_option("--index", bench->indexes,
                        "FACTORY or FACTORY|SETTINGS;SETTINGS (repeat; e.g. "
                        "'IVF1024,Flat|nprobe=1;nprobe=16')");
  bench_cmd
      ->add_option("--extra", bench->extra,
                   "random unit vectors added to the pool, one measurement per value")
      ->delimiter(',');
  bench_cmd
      ->add_option("--single-queries", bench->single_queries,
                   "queries timed one at a time for the latency percentiles")
      ->capture_default_str();
  bench_cmd->add_option("--threads", bench->threads, "LibTorch threads; 0 = all cores");
}

}  // namespace shopclip
