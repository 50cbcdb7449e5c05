#include "core/eval/retrieval.h"

#include <stdexcept>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexShards.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <fmt/format.h>

namespace shopclip {

namespace {

std::unique_ptr<faiss::Index> make_index(const std::string& factory, int dim) {
  if (dim <= 0) throw std::invalid_argument("EmbeddingIndex: dimension must be positive");
  try {
    return std::unique_ptr<faiss::Index>(
        faiss::index_factory(dim, factory.c_str(), faiss::METRIC_INNER_PRODUCT));
  } catch (const faiss::FaissException& e) {
    throw std::invalid_argument(fmt::format(
        "eval.index '{}' is not a valid FAISS index-factory string: {}", factory, e.msg));
  }
}

void train_and_add(faiss::Index& index, const float* vectors, std::int64_t n) {
  if (n <= 0) return;
  try {
    if (!index.is_trained) index.train(n, vectors);
    index.add(n, vectors);
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(fmt::format("FAISS could not index {} vectors: {}", n, e.msg));
  }
}

}  // namespace

EmbeddingIndex::EmbeddingIndex(const std::string& factory, int dim)
    : EmbeddingIndex(make_index(factory, dim), dim, 1) {}

EmbeddingIndex::EmbeddingIndex(std::unique_ptr<faiss::Index> index, int dim, int shards)
    : index_(std::move(index)), dim_(dim), shards_(shards) {}

EmbeddingIndex EmbeddingIndex::sharded(const std::string& factory, int dim,
                                       const std::vector<const float*>& parts,
                                       const std::vector<std::int64_t>& counts) {
  if (parts.size() != counts.size() || parts.empty()) {
    throw std::invalid_argument("EmbeddingIndex::sharded: one count per part, at least one part");
  }
  auto shards = std::make_unique<faiss::IndexShards>(dim, /*threaded=*/false,
                                                     /*successive_ids=*/true);
  shards->own_fields = true;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    auto shard = make_index(factory, dim);
    train_and_add(*shard, parts[s], counts[s]);
    shards->add_shard(shard.release());
  }
  shards->syncWithSubIndexes();  // ntotal and is_trained from the filled shards
  return EmbeddingIndex(std::move(shards), dim, static_cast<int>(parts.size()));
}

EmbeddingIndex::~EmbeddingIndex() = default;
EmbeddingIndex::EmbeddingIndex(EmbeddingIndex&&) noexcept = default;
EmbeddingIndex& EmbeddingIndex::operator=(EmbeddingIndex&&) noexcept = default;

void EmbeddingIndex::add(const float* vectors, std::int64_t n) {
  if (shards_ > 1) throw std::logic_error("EmbeddingIndex::add on a sharded index");
  train_and_add(*index_, vectors, n);
}

std::int64_t EmbeddingIndex::size() const {
  return index_->ntotal;
}

void EmbeddingIndex::set_search_params(const std::string& params) {
  if (params.empty()) return;
  try {
    // ParameterSpace walks into the shards of an IndexShards itself.
    faiss::ParameterSpace().set_index_parameters(index_.get(), params.c_str());
  } catch (const faiss::FaissException& e) {
    throw std::invalid_argument(
        fmt::format("eval.search_params '{}' does not apply to this index: {}", params, e.msg));
  }
}

void EmbeddingIndex::write(const std::vector<std::string>& files) const {
  std::vector<const faiss::Index*> parts;
  if (auto* shards = dynamic_cast<const faiss::IndexShards*>(index_.get())) {
    for (int s = 0; s < shards->count(); ++s)
      parts.push_back(shards->at(s));
  } else {
    parts.push_back(index_.get());
  }
  if (files.size() != parts.size()) {
    throw std::invalid_argument(
        fmt::format("EmbeddingIndex::write: {} files for {} shards", files.size(), parts.size()));
  }
  for (std::size_t s = 0; s < parts.size(); ++s) {
    try {
      faiss::write_index(parts[s], files[s].c_str());
    } catch (const faiss::FaissException& e) {
      throw std::runtime_error(
          fmt::format("{}: FAISS could not write the index: {}", files[s], e.msg));
    }
  }
}

EmbeddingIndex EmbeddingIndex::read(const std::vector<std::string>& files) {
  if (files.empty()) throw std::invalid_argument("EmbeddingIndex::read: no files");
  std::vector<std::unique_ptr<faiss::Index>> parts;
  for (const auto& file : files) {
    try {
      parts.emplace_back(faiss::read_index(file.c_str()));
    } catch (const faiss::FaissException& e) {
      throw std::runtime_error(fmt::format("{}: FAISS could not read an index: {}", file, e.msg));
    }
    if (parts.back()->metric_type != faiss::METRIC_INNER_PRODUCT) {
      throw std::runtime_error(fmt::format("{}: not an inner-product index", file));
    }
    if (parts.back()->d != parts.front()->d) {
      throw std::runtime_error(fmt::format("{}: dimension {} differs from {}'s {}", file,
                                           parts.back()->d, files.front(), parts.front()->d));
    }
  }
  const int dim = static_cast<int>(parts.front()->d);
  if (parts.size() == 1) return EmbeddingIndex(std::move(parts.front()), dim, 1);
  auto shards = std::make_unique<faiss::IndexShards>(dim, /*threaded=*/false,
                                                     /*successive_ids=*/true);
  shards->own_fields = true;
  for (auto& part : parts)
    shards->add_shard(part.release());
  shards->syncWithSubIndexes();
  return EmbeddingIndex(std::move(shards), dim, static_cast<int>(files.size()));
}

void EmbeddingIndex::search(const float* queries, std::int64_t n, int k,
                            std::vector<std::int64_t>& rows, std::vector<float>& scores) const {
  rows.assign(static_cast<std::size_t>(n) * k, -1);
  scores.assign(static_cast<std::size_t>(n) * k, 0.0f);
  if (n == 0) return;
  std::vector<faiss::Index::idx_t> labels(static_cast<std::size_t>(n) * k);
  try {
    index_->search(n, queries, k, scores.data(), labels.data());
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(fmt::format("FAISS search failed: {}", e.msg));
  }
  for (std::size_t i = 0; i < labels.size(); ++i)
    rows[i] = labels[i];
}

void exact_top_k(const float* queries, std::int64_t n, const float* pool, std::int64_t pool_size,
                 int dim, int k, std::vector<std::int64_t>& rows, std::vector<float>& scores) {
  if (dim <= 0 || k <= 0 || n < 0 || pool_size < 0) {
    throw std::invalid_argument(fmt::format(
        "exact_top_k: needs dim > 0, k > 0 and no negative counts (dim {}, k {}, n {}, pool {})",
        dim, k, n, pool_size));
  }
  rows.assign(static_cast<std::size_t>(n) * k, -1);
  scores.assign(static_cast<std::size_t>(n) * k, 0.0f);
  if (n == 0 || pool_size == 0) return;
  std::vector<faiss::Index::idx_t> labels(static_cast<std::size_t>(n) * k, -1);
  try {
    // FAISS's own exact search (what IndexFlatIP runs), straight on the caller's arrays.
    faiss::knn_inner_product(queries, pool, static_cast<std::size_t>(dim),
                             static_cast<std::size_t>(n), static_cast<std::size_t>(pool_size),
                             static_cast<std::size_t>(k), scores.data(), labels.data());
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(fmt::format("FAISS exact search failed: {}", e.msg));
  }
  for (std::size_t i = 0; i < labels.size(); ++i)
    rows[i] = labels[i];
}

}  // namespace shopclip
