#pragma once
// A table of embeddings keyed by id in one HDF5 file, for caches of model outputs (a teacher's
// embeddings for distillation, later a saved pool).
//
//   /ids          int64   [n]      the row's id (an image id or a query id)
//   /embeddings   float16 [n, D]   IEEE half precision, what h5py reads as numpy.float16
//   root attributes: format = "shopclip-embeddings", format_version, and the caller's string
//                    attributes (e.g. which model made them)
//
// Written under "<path>.tmp" and committed (fsync, rename) when complete, as prep's shards are, so
// a file with the final name is always whole.

#include <cstdint>
#include <map>
#include <string>

#include <torch/types.h>

namespace shopclip::data {

inline constexpr int kEmbeddingFileFormatVersion = 1;

struct EmbeddingTable {
  torch::Tensor ids;         // int64 [n], CPU
  torch::Tensor embeddings;  // float16 [n, D], CPU, contiguous
  std::map<std::string, std::string> attributes;
};

// Writes ids int64 [n] and embeddings (any float dtype, [n, D]; stored as float16) with the given
// string attributes (names other than "format" and "format_version"). HDF5 or file-system errors
// throw DataError naming the file; an unfinished .tmp file is removed.
void write_embedding_file(const std::string& path, const torch::Tensor& ids,
                          const torch::Tensor& embeddings,
                          const std::map<std::string, std::string>& attributes);

// Reads a file written by write_embedding_file. Throws DataError naming the file when it is
// missing, not HDF5, not this format, of another format version, or malformed (shapes, types).
EmbeddingTable read_embedding_file(const std::string& path);

// Only the string attributes (cheap: no dataset is read); the same errors as above.
std::map<std::string, std::string> read_embedding_attributes(const std::string& path);

}  // namespace shopclip::data
