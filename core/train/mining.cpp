#include "core/train/mining.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include "core/eval/embeddings.h"
#include "core/eval/retrieval.h"
#include "core/model/encoders.h"
#include "data/files.h"

namespace shopclip {
namespace {

constexpr const char* kMinedFormat = "shopclip-mined-negatives";
constexpr std::int64_t kMinedFormatVersion = 1;

// Lists as two tensors: offsets [Q + 1] and the concatenated rows.
std::pair<torch::Tensor, torch::Tensor> flatten(const MinedNegatives& negatives) {
  std::vector<std::int64_t> offsets{0}, values;
  for (const auto& list : negatives) {
    values.insert(values.end(), list.begin(), list.end());
    offsets.push_back(static_cast<std::int64_t>(values.size()));
  }
  return {torch::tensor(offsets, torch::kInt64), torch::tensor(values, torch::kInt64)};
}

MinedNegatives unflatten(const torch::Tensor& offsets, const torch::Tensor& values) {
  const auto* o = offsets.data_ptr<std::int64_t>();
  const auto* v = values.data_ptr<std::int64_t>();
  MinedNegatives negatives(static_cast<std::size_t>(offsets.numel() - 1));
  for (std::size_t q = 0; q < negatives.size(); ++q)
    negatives[q].assign(v + o[q], v + o[q + 1]);
  return negatives;
}

}  // namespace

MinedNegatives select_negatives(const std::vector<std::int64_t>& rows,
                                const std::vector<float>& scores, int k,
                                const std::vector<std::vector<std::int64_t>>& positives,
                                const std::vector<float>& positive_scores,
                                const MiningRules& rules) {
  MinedNegatives negatives(positives.size());
  for (std::size_t q = 0; q < positives.size(); ++q) {
    const auto& known = positives[q];
    // Above this score a candidate is more likely an unlabelled positive than a negative.
    const double ceiling =
        known.empty() ? std::numeric_limits<double>::infinity()
                      : positive_scores[q] - (1.0 - rules.max_ratio) * std::abs(positive_scores[q]);
    for (int r = rules.skip; r < std::min(rules.depth, k); ++r) {
      const std::int64_t row = rows[q * k + r];
      if (row < 0) break;
      if (std::binary_search(known.begin(), known.end(), row)) continue;
      if (scores[q * k + r] > ceiling) continue;
      negatives[q].push_back(row);
    }
  }
  return negatives;
}

std::vector<std::vector<std::int64_t>> query_positives(
    const std::vector<std::string>& texts, const std::vector<data::TrainPair>& pairs,
    const std::unordered_set<std::int64_t>& relevant, std::int64_t num_images) {
  std::vector<std::vector<std::int64_t>> by_query(texts.size());
  for (const auto& pair : pairs)
    by_query[pair.query].push_back(pair.image_row);
  for (const auto key : relevant)
    by_query[key / num_images].push_back(key % num_images);
  // Queries with the same text share their positives.
  std::unordered_map<std::string, std::vector<std::int64_t>> by_text;
  for (std::size_t q = 0; q < texts.size(); ++q) {
    auto& shared = by_text[texts[q]];
    shared.insert(shared.end(), by_query[q].begin(), by_query[q].end());
  }
  for (std::size_t q = 0; q < texts.size(); ++q) {
    by_query[q] = by_text[texts[q]];
    std::sort(by_query[q].begin(), by_query[q].end());
    by_query[q].erase(std::unique(by_query[q].begin(), by_query[q].end()), by_query[q].end());
  }
  return by_query;
}

MiningRules mining_rules(const TrainConfig& config) {
  return {config.mine_skip, config.mine_depth, config.mine_max_ratio};
}

std::vector<float> best_positive_scores(const torch::Tensor& images, const torch::Tensor& texts,
                                        const std::vector<std::vector<std::int64_t>>& positives) {
  std::vector<std::int64_t> query_index, image_index;
  for (std::size_t q = 0; q < positives.size(); ++q) {
    for (const auto row : positives[q]) {
      query_index.push_back(static_cast<std::int64_t>(q));
      image_index.push_back(row);
    }
  }
  auto best = torch::full({static_cast<std::int64_t>(positives.size())},
                          -std::numeric_limits<float>::infinity(), torch::kFloat32);
  if (!query_index.empty()) {
    const auto queries = torch::tensor(query_index, torch::kLong);
    const auto scores = (texts.index_select(0, queries) *
                         images.index_select(0, torch::tensor(image_index, torch::kLong)))
                            .sum(1);
    best = best.scatter_reduce(0, queries, scores, "amax");
  }
  const float* values = best.contiguous().data_ptr<float>();
  return std::vector<float>(values, values + best.numel());
}

MinedNegatives select_hard_negatives(const torch::Tensor& images, const torch::Tensor& texts,
                                     const TrainData& data, const MiningRules& rules,
                                     dist::Communicator& comm, const EmbeddingIndex* index) {
  const int world = comm.world_size();
  torch::Tensor offsets =
      torch::zeros({static_cast<std::int64_t>(texts.size(0)) + 1}, torch::kInt64);
  torch::Tensor values;
  MinedNegatives negatives;
  if (comm.rank() == 0) {
    const auto image_rows = images.to(torch::kFloat32).contiguous();
    const auto text_rows = texts.to(torch::kFloat32).contiguous();
    const int dim = static_cast<int>(image_rows.size(1));
    std::vector<const float*> parts;
    std::vector<std::int64_t> counts;
    for (int r = 0; r < world; ++r) {  // one exact shard per rank's slice, as evaluation builds
      const auto [begin, end] = rank_slice(image_rows.size(0), r, world);
      parts.push_back(image_rows.data_ptr<float>() + begin * dim);
      counts.push_back(end - begin);
    }
    std::optional<EmbeddingIndex> built;
    if (index == nullptr) {
      built = EmbeddingIndex::sharded("Flat", dim, parts, counts);
      index = &*built;
    } else if (index->size() != image_rows.size(0) || index->dim() != dim) {
      throw std::invalid_argument(fmt::format(
          "select_hard_negatives: the given index holds {} rows of {} dims, the images {} of {}",
          index->size(), index->dim(), image_rows.size(0), dim));
    }
    const int k = static_cast<int>(std::min<std::int64_t>(rules.depth, image_rows.size(0)));
    std::vector<std::int64_t> rows;
    std::vector<float> scores;
    index->search(text_rows.data_ptr<float>(), text_rows.size(0), k, rows, scores);
    const auto positives =
        query_positives(data.query_texts(), data.pairs, data.relevant, data.images->size());
    negatives = select_negatives(rows, scores, k, positives,
                                 best_positive_scores(image_rows, text_rows, positives), rules);
    std::tie(offsets, values) = flatten(negatives);
  }
  // The lists travel as [Q + 1] offsets, then the rows.
  comm.broadcast(offsets, 0);
  if (comm.rank() != 0) values = torch::zeros({offsets[-1].item<std::int64_t>()}, torch::kInt64);
  if (values.numel() > 0) comm.broadcast(values, 0);
  if (comm.rank() != 0) negatives = unflatten(offsets, values);
  return negatives;
}

MiningResult mine_hard_negatives(DualEncoder& model, const data::Tokenizer& tokenizer,
                                 const TrainData& data, const Config& config,
                                 dist::Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  model->eval();
  DualEncoderAdapter encoder(model, tokenizer, config.model.text.context_length);
  const int batch = config.eval.batch_size;
  const torch::Tensor images = encode_images_across_ranks(encoder, *data.images, batch, comm);
  const torch::Tensor texts = encode_texts_across_ranks(encoder, data.query_texts(), batch, comm);
  MiningResult result;
  result.negatives = select_hard_negatives(images, texts, data, mining_rules(config.train), comm);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void save_mined_negatives(const std::string& path, int epoch, const MinedNegatives& negatives) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kMinedFormat)));
  archive.write("format_version", c10::IValue(kMinedFormatVersion));
  archive.write("epoch", c10::IValue(static_cast<std::int64_t>(epoch)));
  const auto [offsets, values] = flatten(negatives);
  archive.write("offsets", offsets);
  archive.write("rows", values);
  const std::string temporary = data::temporary_path(path);
  archive.save_to(temporary);
  data::commit_file(temporary, path);
}

std::shared_ptr<const MinedNegatives> load_mined_negatives(const std::string& path, int epoch) {
  if (!std::filesystem::exists(path)) return nullptr;
  torch::serialize::InputArchive archive;
  archive.load_from(path, torch::Device(torch::kCPU));
  c10::IValue format, version, stored_epoch;
  if (!archive.try_read("format", format) || !format.isString() ||
      format.toStringRef() != kMinedFormat || !archive.try_read("format_version", version) ||
      !version.isInt() || version.toInt() != kMinedFormatVersion) {
    throw std::runtime_error(
        fmt::format("'{}' is not a shopclip mined-negatives file of format version {}", path,
                    kMinedFormatVersion));
  }
  if (!archive.try_read("epoch", stored_epoch) || stored_epoch.toInt() != epoch) return nullptr;
  torch::Tensor offsets, values;
  archive.read("offsets", offsets);
  archive.read("rows", values);
  return std::make_shared<const MinedNegatives>(unflatten(offsets, values));
}

}  // namespace shopclip
