#pragma once
// A saved pool index (`shopclip index build`; `eval --index-dir` searches it instead of encoding
// the pool again). One folder:
//
//   manifest.json        {"format": "shopclip-index", "format_version": 1,
//                         "model": {"checkpoint", "xxh64", "embed_dim"}, "normalized": true,
//                         "factory", "search_params", "shards": ["shard-00000.faiss", ...],
//                         "split", "count", "pool": "pool.h5"}
//   shard-NNNNN.faiss    the index, written by FAISS's own writer (one file per shard)
//   pool.h5              the pool's image ids and embeddings (data/embedding_file.h, fp16): the
//                        ids name the index's rows; the vectors complete an approximate index's
//                        short result lists (core/eval/predictions.h)
//
// The manifest is written last, so a folder with one is complete. A saved index belongs to one
// model: whoever searches it checks the checkpoint's XXH64 (check_index_model).

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/eval/retrieval.h"

namespace shopclip {

inline constexpr int kIndexFormatVersion = 1;

struct IndexManifest {
  int format_version = kIndexFormatVersion;
  std::string checkpoint;  // the model's weights, as given
  std::string xxh64;       // XXH64 of that file, 16 hex digits: what identifies the model
  std::int64_t embed_dim = 0;
  bool normalized = true;  // the vectors have unit norm (inner product = cosine)
  std::string factory, search_params;
  std::vector<std::string> shards;  // file names in the folder, in row order
  std::string split;                // the pool's split
  std::int64_t count = 0;
};

// Writes the index (its shards), the pool (ids int64 [N], embeddings float [N, D]) and the
// manifest into `dir` (created). Throws DataError naming the file on failure.
void write_saved_index(const std::string& dir, const EmbeddingIndex& index, IndexManifest manifest,
                       const std::vector<std::int64_t>& ids, const torch::Tensor& pool);

struct SavedIndex {
  IndexManifest manifest;
  EmbeddingIndex index;           // search parameters of the manifest applied
  std::vector<std::int64_t> ids;  // row r of the index = image ids[r]
  torch::Tensor pool;             // float32 [N, D], from the stored fp16 vectors
};

// Reads a folder written by write_saved_index. Throws DataError naming the file when something
// is missing, malformed, of another format or version, or when the index, the pool and the
// manifest disagree (rows, dimension).
SavedIndex read_saved_index(const std::string& dir);

// Throws DataError naming the manifest field unless the index was built by the checkpoint with
// this XXH64 (16 hex digits) at this dimension.
void check_index_model(const IndexManifest& manifest, const std::string& dir,
                       const std::string& checkpoint_xxh64, std::int64_t embed_dim);

}  // namespace shopclip
