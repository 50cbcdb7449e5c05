#pragma once
// Inner-product search over image embeddings with FAISS, described by an index-factory string
// ("Flat" = exact; "HNSW32", "IVF256,Flat", ... approximate).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace faiss {
struct Index;
}

namespace shopclip {

class EmbeddingIndex {
 public:
  // Throws std::invalid_argument naming the string when FAISS cannot build it.
  EmbeddingIndex(const std::string& factory, int dim);

  // One shard per part (e.g. per rank's slice of the pool), each an index made from `factory`,
  // searched together with faiss::IndexShards; rows are numbered across shards in part order,
  // so results equal a single index over the concatenated vectors (up to ties).
  // parts[s] points at counts[s] * dim floats.
  static EmbeddingIndex sharded(const std::string& factory, int dim,
                                const std::vector<const float*>& parts,
                                const std::vector<std::int64_t>& counts);
  ~EmbeddingIndex();
  EmbeddingIndex(EmbeddingIndex&&) noexcept;
  EmbeddingIndex& operator=(EmbeddingIndex&&) noexcept;

  // Adds n vectors (row-major n * dim floats; row r of the index = r-th vector added overall).
  // Indexes that need training are trained on the first batch added.
  void add(const float* vectors, std::int64_t n);
  std::int64_t size() const;
  int shards() const { return shards_; }

  // FAISS search parameters in its ParameterSpace syntax, "name=value" joined by commas
  // ("nprobe=16", "efSearch=128"), applied to every shard; empty does nothing. Throws
  // std::invalid_argument naming the string when the index has no such parameter.
  void set_search_params(const std::string& params);

  // Writes the index with FAISS's own writer, one file per shard: files[s] for shard s (one file
  // for an unsharded index). Throws std::runtime_error naming the file on failure.
  void write(const std::vector<std::string>& files) const;
  // Reads files written by write(): one file is a plain index, several the shards of one index
  // (rows numbered across them in file order). Throws std::runtime_error naming the file.
  static EmbeddingIndex read(const std::vector<std::string>& files);
  int dim() const { return dim_; }

  // For each of n queries (n * dim floats), the k best rows by inner product, best first:
  // rows (n * k, -1 where fewer than k exist) and scores (n * k).
  void search(const float* queries, std::int64_t n, int k, std::vector<std::int64_t>& rows,
              std::vector<float>& scores) const;

 private:
  EmbeddingIndex(std::unique_ptr<faiss::Index> index, int dim, int shards);

  std::unique_ptr<faiss::Index> index_;
  int dim_;
  int shards_ = 1;
};

// Exact inner-product search without an index (nothing is copied): for each of n queries
// (n * dim floats) the k best of the pool's pool_size rows (pool_size * dim floats), best first,
// as an exact "Flat" index would return them: rows (n * k, -1 where the pool has fewer than k)
// and scores (n * k). Deterministic: the same inputs give the same rows.
void exact_top_k(const float* queries, std::int64_t n, const float* pool, std::int64_t pool_size,
                 int dim, int k, std::vector<std::int64_t>& rows, std::vector<float>& scores);

}  // namespace shopclip
