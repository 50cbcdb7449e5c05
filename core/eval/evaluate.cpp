#include "core/eval/evaluate.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/eval/retrieval.h"
#include "data/error.h"
#include "data/loader.h"

namespace shopclip {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Restores the module's training flag on scope exit.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& module)
      : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalModeGuard() { module_.train(was_training_); }

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

// Where the model's weights live: its inputs go there, its outputs come back to the CPU.
torch::Device model_device(DualEncoder& model) {
  return model->parameters().front().device();
}

}  // namespace

SplitData open_split(const Config& config, const std::string& split, data::BadRowLog& bad_rows) {
  SplitData out;
  out.name = split;
  const data::PrepParams params{config.model.image.resolution, "bicubic", "RGB"};
  out.images = std::make_unique<data::ImageStore>(config.prep_split_dir(split), params);
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
  std::ifstream in(report);
  if (!in) {
    if (manifest.num_bad_rows > 0) {
      throw data::DataError(fmt::format("{}: missing, but the manifest counts {} bad rows", report,
                                        manifest.num_bad_rows));
    }
    return;
  }
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    try {
      const auto row = nlohmann::json::parse(line);
      bad_rows.add_bad(row.at("file").get<std::string>(), row.at("line").get<std::int64_t>(),
                       row.at("reason").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw data::DataError(fmt::format("{}: line {}: {}", report, number, e.what()));
    }
  }
}

void report_bad_rows(const data::BadRowLog& bad_rows, const Config& config,
                     const std::string& report_path, Logger& log) {
  constexpr std::size_t kShown = 20;
  const auto& rows = bad_rows.bad_rows();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string line =
        fmt::format("bad row skipped: {}:{}: {}", rows[i].file, rows[i].line, rows[i].reason);
    if (i < kShown) {
      log.warn("{}", line);
    } else {
      log.file_only(line);
    }
  }
  if (rows.size() > kShown) {
    log.warn("... and {} more bad rows (all in {})", rows.size() - kShown, report_path);
  }
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
  auto tokens =
      torch::empty({static_cast<std::int64_t>(texts.size()), context_length}, torch::kLong);
  auto* out = tokens.data_ptr<std::int64_t>();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tokenizer.encode(texts[i], context_length);
    std::copy(ids.begin(), ids.end(), out + i * context_length);
  }
  return tokens;
}

torch::Tensor encode_images(DualEncoder& model, const data::ImageStore& images, int batch_size,
                            std::int64_t begin, std::int64_t end) {
  EvalModeGuard guard(*model);
  torch::NoGradGuard no_grad;
  if (end < 0) end = images.size();
  std::vector<torch::Tensor> parts;
  for (std::int64_t first = begin; first < end; first += batch_size) {
    const std::int64_t last = std::min<std::int64_t>(end, first + batch_size);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(last - first));
    std::iota(rows.begin(), rows.end(), first);
    const auto pixels = data::normalize_pixels(images.read(rows)).to(model_device(model));
    parts.push_back(model->encode_image(pixels).cpu());
  }
  if (parts.empty()) return torch::empty({0, model->config().embed_dim});
  return torch::cat(parts).contiguous();
}

torch::Tensor encode_texts(DualEncoder& model, const data::Tokenizer& tokenizer,
                           const std::vector<std::string>& texts, int context_length,
                           int batch_size) {
  EvalModeGuard guard(*model);
  torch::NoGradGuard no_grad;
  const auto tokens = tokenize_all(tokenizer, texts, context_length);
  std::vector<torch::Tensor> parts;
  for (std::int64_t begin = 0; begin < tokens.size(0); begin += batch_size) {
    const std::int64_t end = std::min<std::int64_t>(tokens.size(0), begin + batch_size);
    parts.push_back(model->encode_text(tokens.slice(0, begin, end).to(model_device(model))).cpu());
  }
  if (parts.empty()) return torch::empty({0, model->config().embed_dim});
  return torch::cat(parts).contiguous();
}

namespace {

// Row range [begin, end) of rank r when n rows are split as evenly as possible.
std::pair<std::int64_t, std::int64_t> slice_of(std::int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

}  // namespace

EvalResult evaluate_split(DualEncoder& model, const data::Tokenizer& tokenizer,
                          const SplitData& split, const Config& config, dist::Communicator& comm) {
  EvalResult result;
  const int k = config.eval.top_k;
  if (split.images->size() < k) {
    throw data::DataError(
        fmt::format("split '{}': the pool has {} images, fewer than eval.top_k = {}", split.name,
                    split.images->size(), k));
  }
  const int rank = comm.rank(), world = comm.world_size();
  const auto start = std::chrono::steady_clock::now();
  const auto [image_begin, image_end] = slice_of(split.images->size(), rank, world);
  const auto local_images =
      encode_images(model, *split.images, config.eval.batch_size, image_begin, image_end);
  const auto& queries = split.queries.queries;
  const auto [query_begin, query_end] =
      slice_of(static_cast<std::int64_t>(queries.size()), rank, world);
  std::vector<std::string> texts;
  for (auto q = query_begin; q < query_end; ++q)
    texts.push_back(queries[q].text);
  const auto local_texts = encode_texts(model, tokenizer, texts, config.model.text.context_length,
                                        config.eval.batch_size);
  const auto image_embeddings = comm.all_gather(local_images);
  const auto text_embeddings = comm.all_gather(local_texts);
  result.encode_seconds = seconds_since(start);

  // Scores travel to every rank as [has scores, r1, r5, r10, mean recall].
  auto shared_scores = torch::zeros({5}, torch::kFloat64);
  if (rank == 0) {
    const auto search_start = std::chrono::steady_clock::now();
    const int dim = static_cast<int>(image_embeddings.size(1));
    std::vector<const float*> parts;
    std::vector<std::int64_t> counts;
    for (int r = 0; r < world; ++r) {
      const auto [begin, end] = slice_of(split.images->size(), r, world);
      parts.push_back(image_embeddings.data_ptr<float>() + begin * dim);
      counts.push_back(end - begin);
    }
    EmbeddingIndex index = world == 1
                               ? EmbeddingIndex(config.eval.index, dim)
                               : EmbeddingIndex::sharded(config.eval.index, dim, parts, counts);
    if (world == 1) index.add(image_embeddings.data_ptr<float>(), image_embeddings.size(0));
    std::vector<std::int64_t> rows;
    std::vector<float> scores;
    index.search(text_embeddings.data_ptr<float>(), text_embeddings.size(0), k, rows, scores);
    result.search_seconds = seconds_since(search_start);

    const auto& ids = split.images->ids();
    for (std::size_t q = 0; q < queries.size(); ++q) {
      data::Prediction prediction;
      prediction.query_id = queries[q].id;
      for (int r = 0; r < k; ++r) {
        const std::int64_t row = rows[q * k + r];
        // Approximate indexes may return fewer than k rows; the scorer needs k distinct ids.
        if (row >= 0) prediction.image_ids.push_back(ids[row]);
      }
      for (std::size_t fill = 0; static_cast<int>(prediction.image_ids.size()) < k; ++fill) {
        if (std::find(prediction.image_ids.begin(), prediction.image_ids.end(), ids[fill]) ==
            prediction.image_ids.end()) {
          prediction.image_ids.push_back(ids[fill]);
        }
      }
      result.predictions.push_back(std::move(prediction));
    }
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
