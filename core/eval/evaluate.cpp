#include "core/eval/evaluate.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/eval/predictions.h"
#include "core/eval/retrieval.h"
#include "core/model/encoders.h"
#include "data/error.h"
#include "data/loader.h"

namespace shopclip {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

SplitData open_split(const Config& config, const std::string& split, data::BadRowLog& bad_rows) {
  SplitData out;
  out.name = split;
  out.images = std::make_unique<data::ImageStore>(config.prep_split_dir(split),
                                                  data::prep_params(config.model.image.resolution));
  data::QuerySchema schema;
  const std::string path = data::find_queries_file(config.data.root, split, &schema);
  data::QueryReadOptions options;
  options.require_image_ids = split != config.data.test_split;
  const data::ImageStore* images = out.images.get();
  options.image_exists = [images](std::int64_t id) { return images->row_of(id).has_value(); };
  out.queries = data::read_queries(path, schema, bad_rows, options);
  out.has_ground_truth = !out.queries.queries.empty() &&
                         std::all_of(out.queries.queries.begin(), out.queries.queries.end(),
                                     [](const data::Query& q) { return !q.image_ids.empty(); });
  return out;
}

void add_prep_bad_rows(const Config& config, const std::string& split, data::BadRowLog& bad_rows) {
  const std::string dir = config.prep_split_dir(split);
  const data::Manifest manifest = data::read_manifest(dir);
  bad_rows.add_rows(manifest.source_file, manifest.num_images + manifest.num_bad_rows);
  const std::string report = dir + "/bad_rows.jsonl";
  if (!std::filesystem::exists(report)) {
    if (manifest.num_bad_rows > 0) {
      throw data::DataError(fmt::format("{}: missing, but the manifest counts {} bad rows", report,
                                        manifest.num_bad_rows));
    }
    return;
  }
  bad_rows.read_report(report);
}

void report_bad_rows(const data::BadRowLog& bad_rows, const Config& config,
                     const std::string& report_path, Logger& log) {
  data::list_bad_rows(
      bad_rows, report_path, [&](const std::string& line) { log.warn("{}", line); },
      [&](const std::string& line) { log.file_only(line); });
  std::istringstream summary(bad_rows.summary());
  for (std::string line; std::getline(summary, line);)
    log.info("input {}", line);
  const auto parent = std::filesystem::path(report_path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  bad_rows.write_report(report_path);
  bad_rows.check_share(config.data.max_bad_share);
}

torch::Tensor tokenize_all(const data::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                           int context_length) {
  return tokenizer.encode_batch(texts, context_length);
}

EmbeddingIndex build_pool_index(const Config& config, const torch::Tensor& pool, int shards) {
  const int dim = static_cast<int>(pool.size(1));
  std::vector<const float*> parts;
  std::vector<std::int64_t> counts;
  for (int r = 0; r < shards; ++r) {
    const auto [begin, end] = rank_slice(pool.size(0), r, shards);
    parts.push_back(pool.data_ptr<float>() + begin * dim);
    counts.push_back(end - begin);
  }
  EmbeddingIndex index = shards == 1
                             ? EmbeddingIndex(config.eval.index, dim)
                             : EmbeddingIndex::sharded(config.eval.index, dim, parts, counts);
  if (shards == 1) index.add(pool.data_ptr<float>(), pool.size(0));
  index.set_search_params(config.eval.search_params);
  return index;
}

EvalResult evaluate_split(Encoder& encoder, const SplitData& split, const Config& config,
                          dist::Communicator& comm, const SavedIndex* saved) {
  EvalResult result;
  const int k = config.eval.top_k;
  if (split.images->size() < k) {
    throw data::DataError(
        fmt::format("split '{}': the pool has {} images, fewer than eval.top_k = {}", split.name,
                    split.images->size(), k));
  }
  const int rank = comm.rank(), world = comm.world_size();
  const auto start = std::chrono::steady_clock::now();
  const auto& queries = split.queries.queries;
  std::vector<std::string> texts;
  texts.reserve(queries.size());
  for (const auto& query : queries)
    texts.push_back(query.text);
  if (saved != nullptr && saved->ids != split.images->ids()) {
    throw data::DataError(fmt::format(
        "the saved index holds {} images of split '{}', not the {} images of split '{}' in their "
        "order; build an index of this split",
        saved->ids.size(), saved->manifest.split, split.images->size(), split.name));
  }
  // Every rank encodes its slice; all ranks end up with every row (rank 0 searches them).
  torch::Tensor image_embeddings;
  if (saved == nullptr) {
    image_embeddings =
        encode_images_across_ranks(encoder, *split.images, config.eval.batch_size, comm);
    if (!encoder.normalized()) image_embeddings = unit_rows(image_embeddings);
  }
  auto text_embeddings = encode_texts_across_ranks(encoder, texts, config.eval.batch_size, comm);
  if (!encoder.normalized()) text_embeddings = unit_rows(text_embeddings);
  result.encode_seconds = seconds_since(start);

  // Scores travel to every rank as [has scores, r1, r5, r10, mean recall].
  auto shared_scores = torch::zeros({5}, torch::kFloat64);
  if (rank == 0) {
    const auto search_start = std::chrono::steady_clock::now();
    std::vector<std::int64_t> query_ids;
    query_ids.reserve(queries.size());
    for (const auto& query : queries)
      query_ids.push_back(query.id);
    if (saved != nullptr) {
      result.predictions = search_predictions(saved->index, k, text_embeddings, saved->pool,
                                              query_ids, saved->ids, &result.completed_queries);
    } else {
      const EmbeddingIndex index = build_pool_index(config, image_embeddings, world);
      result.predictions =
          search_predictions(index, k, text_embeddings, image_embeddings, query_ids,
                             split.images->ids(), &result.completed_queries);
    }
    result.search_seconds = seconds_since(search_start);
    if (split.has_ground_truth) {
      const RecallScores s = muge_recall(queries, result.predictions);
      shared_scores = torch::tensor({1.0, s.r1, s.r5, s.r10, s.mean_recall}, torch::kFloat64);
    }
  }
  comm.broadcast(shared_scores, 0);
  if (shared_scores[0].item<double>() > 0) {
    RecallScores s;
    s.r1 = shared_scores[1].item<double>();
    s.r5 = shared_scores[2].item<double>();
    s.r10 = shared_scores[3].item<double>();
    s.mean_recall = shared_scores[4].item<double>();
    s.queries = static_cast<std::int64_t>(queries.size());
    result.scores = s;
  }
  return result;
}

EvalResult evaluate_split(DualEncoder& model, const data::Tokenizer& tokenizer,
                          const SplitData& split, const Config& config, dist::Communicator& comm) {
  DualEncoderAdapter encoder(model, tokenizer, config.model.text.context_length);
  return evaluate_split(encoder, split, config, comm);
}

void write_eval_outputs(const std::string& run_dir, const SplitData& split,
                        const EvalResult& result) {
  std::filesystem::create_directories(run_dir + "/predictions");
  data::write_predictions(fmt::format("{}/predictions/{}.jsonl", run_dir, split.name),
                          split.queries.schema, result.predictions);
  if (result.scores) {
    std::filesystem::create_directories(run_dir + "/eval");
    data::write_file_atomic(fmt::format("{}/eval/{}.json", run_dir, split.name),
                            official_result_json(*result.scores) + "\n");
  }
}

}  // namespace shopclip
