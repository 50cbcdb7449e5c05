#include "core/eval/index_store.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/embedding_file.h"
#include "data/error.h"
#include "data/files.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "shopclip-index";
constexpr const char* kPoolFile = "pool.h5";

std::vector<std::string> in_dir(const std::string& dir, const std::vector<std::string>& names) {
  std::vector<std::string> paths;
  for (const auto& name : names)
    paths.push_back((fs::path(dir) / name).string());
  return paths;
}

}  // namespace

void write_saved_index(const std::string& dir, const EmbeddingIndex& index, IndexManifest manifest,
                       const std::vector<std::int64_t>& ids, const torch::Tensor& pool) {
  if (static_cast<std::int64_t>(ids.size()) != index.size() || pool.size(0) != index.size()) {
    throw std::invalid_argument(
        fmt::format("write_saved_index: {} ids and {} pool rows for an index of {}", ids.size(),
                    pool.size(0), index.size()));
  }
  fs::create_directories(dir);
  manifest.shards.clear();
  for (int s = 0; s < index.shards(); ++s)
    manifest.shards.push_back(fmt::format("shard-{:05d}.faiss", s));
  try {
    index.write(in_dir(dir, manifest.shards));
  } catch (const std::runtime_error& e) {
    throw data::DataError(e.what());
  }
  data::write_embedding_file((fs::path(dir) / kPoolFile).string(), torch::tensor(ids, torch::kLong),
                             pool,
                             {{"checkpoint_xxh64", manifest.xxh64}, {"split", manifest.split}});
  manifest.count = index.size();
  const json record = {{"format", kFormat},
                       {"format_version", manifest.format_version},
                       {"model",
                        {{"checkpoint", manifest.checkpoint},
                         {"xxh64", manifest.xxh64},
                         {"embed_dim", manifest.embed_dim}}},
                       {"normalized", manifest.normalized},
                       {"factory", manifest.factory},
                       {"search_params", manifest.search_params},
                       {"shards", manifest.shards},
                       {"split", manifest.split},
                       {"count", manifest.count},
                       {"pool", kPoolFile}};
  data::write_file_atomic((fs::path(dir) / "manifest.json").string(), record.dump(2) + "\n");
}

SavedIndex read_saved_index(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(path);
  if (!in) {
    throw data::DataError(fmt::format(
        "{}: no such file (not an index folder written by `shopclip index build`)", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  IndexManifest manifest;
  try {
    const json record = json::parse(text.str());
    if (record.value("format", "") != kFormat) {
      throw data::DataError(fmt::format("{}: format is not '{}'", path, kFormat));
    }
    manifest.format_version = record.at("format_version").get<int>();
    if (manifest.format_version != kIndexFormatVersion) {
      throw data::DataError(fmt::format("{}: format_version {} (this build reads {})", path,
                                        manifest.format_version, kIndexFormatVersion));
    }
    const auto& model = record.at("model");
    manifest.checkpoint = model.at("checkpoint").get<std::string>();
    manifest.xxh64 = model.at("xxh64").get<std::string>();
    manifest.embed_dim = model.at("embed_dim").get<std::int64_t>();
    manifest.normalized = record.at("normalized").get<bool>();
    manifest.factory = record.at("factory").get<std::string>();
    manifest.search_params = record.at("search_params").get<std::string>();
    manifest.shards = record.at("shards").get<std::vector<std::string>>();
    manifest.split = record.at("split").get<std::string>();
    manifest.count = record.at("count").get<std::int64_t>();
  } catch (const json::exception& e) {
    throw data::DataError(fmt::format("{}: malformed manifest: {}", path, e.what()));
  }
  SavedIndex saved{manifest, EmbeddingIndex("Flat", 1), {}, {}};
  try {
    saved.index = EmbeddingIndex::read(in_dir(dir, manifest.shards));
    saved.index.set_search_params(manifest.search_params);
  } catch (const std::exception& e) {
    throw data::DataError(fmt::format("{}: {}", dir, e.what()));
  }
  const auto pool = data::read_embedding_file((fs::path(dir) / kPoolFile).string());
  const auto ids = pool.ids.contiguous();
  saved.ids.assign(ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + ids.numel());
  saved.pool = pool.embeddings.to(torch::kFloat32).contiguous();
  if (saved.index.size() != manifest.count ||
      static_cast<std::int64_t>(saved.ids.size()) != manifest.count ||
      saved.index.dim() != manifest.embed_dim || saved.pool.size(1) != manifest.embed_dim) {
    throw data::DataError(
        fmt::format("{}: the manifest says {} rows of {} dims; the index holds {} of {}, {} {} ids",
                    path, manifest.count, manifest.embed_dim, saved.index.size(), saved.index.dim(),
                    kPoolFile, saved.ids.size()));
  }
  return saved;
}

void check_index_model(const IndexManifest& manifest, const std::string& dir,
                       const std::string& checkpoint_xxh64, std::int64_t embed_dim) {
  if (manifest.xxh64 != checkpoint_xxh64) {
    throw data::DataError(fmt::format(
        "{}/manifest.json: model.xxh64 {} is not this checkpoint's ({}): the index holds another "
        "model's embeddings (built from {}); build one with `shopclip index build`",
        dir, manifest.xxh64, checkpoint_xxh64, manifest.checkpoint));
  }
  if (manifest.embed_dim != embed_dim) {
    throw data::DataError(fmt::format("{}/manifest.json: model.embed_dim {} is not the model's {}",
                                      dir, manifest.embed_dim, embed_dim));
  }
}

}  // namespace shopclip
