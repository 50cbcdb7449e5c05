#include "core/retrieval.h"

#include <stdexcept>

#include <faiss/Index.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <fmt/format.h>

namespace shopclip {

EmbeddingIndex::EmbeddingIndex(const std::string& factory, int dim) : dim_(dim) {
  if (dim <= 0) throw std::invalid_argument("EmbeddingIndex: dimension must be positive");
  try {
    index_.reset(faiss::index_factory(dim, factory.c_str(), faiss::METRIC_INNER_PRODUCT));
  } catch (const faiss::FaissException& e) {
    throw std::invalid_argument(fmt::format(
        "eval.index '{}' is not a valid FAISS index-factory string: {}", factory, e.msg));
  }
}

EmbeddingIndex::~EmbeddingIndex() = default;
EmbeddingIndex::EmbeddingIndex(EmbeddingIndex&&) noexcept = default;
EmbeddingIndex& EmbeddingIndex::operator=(EmbeddingIndex&&) noexcept = default;

void EmbeddingIndex::add(const float* vectors, std::int64_t n) {
  if (n <= 0) return;
  try {
    if (!index_->is_trained) index_->train(n, vectors);
    index_->add(n, vectors);
  } catch (const faiss::FaissException& e) {
    throw std::runtime_error(fmt::format("FAISS could not index {} vectors: {}", n, e.msg));
  }
}

std::int64_t EmbeddingIndex::size() const {
  return index_->ntotal;
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

}  // namespace shopclip
