#pragma once
// Preprocessed images in chunked HDF5 shard files, plus a JSON manifest per split.
//
// Layout of one split's folder (written by `shopclip prep`):
//   manifest.json       {"format": "shopclip-prep-manifest", "format_version": 1, "split": ...,
//                         "params": {...}, "shards": [{"file": "shard-00000.h5", "num_images": n}],
//                         "num_images": N, "source": {...}}
//   shard-00000.h5      /pixels     uint8 [n, H, W, 3] RGB, chunked (chunk_images, H, W, 3)
//                       /image_ids  int64 [n]
//                       root attributes: format = "shopclip-image-shard", format_version,
//                       and every field of PrepParams
//
// A shard is written under "<name>.tmp" and committed (fsync, rename, fsync of the folder: see
// data/files.h) when complete, so a file with the final name is always whole; a re-run of prep
// skips shards whose final file exists and matches.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/types.h>

namespace shopclip::data {

inline constexpr int kShardFormatVersion = 1;
inline constexpr int kManifestFormatVersion = 1;

// The preprocessing parameters a training run depends on. Stored in every shard and in the
// manifest; a reader expecting other values refuses the files (see check_compatible).
struct PrepParams {
  int resolution = 64;             // output height = width, pixels
  std::string resize = "bicubic";  // resampling filter (Pillow-compatible bicubic)
  std::string color = "RGB";       // channel order of /pixels

  bool operator==(const PrepParams& other) const {
    return resolution == other.resolution && resize == other.resize && color == other.color;
  }
};

// The parameters shopclip prepares shards with and expects of them, for a model's image
// resolution (model.image.resolution): Pillow-compatible bicubic resize to resolution x
// resolution, RGB. The one place prep, training and evaluation get them from.
PrepParams prep_params(int resolution);

// Throws DataError("<what>: prepared with resolution 64 but the run expects 224 ...") listing
// every field that differs; `what` names the file or folder being checked.
void check_compatible(const PrepParams& found, const PrepParams& expected, const std::string& what);

// Writes one shard. Not thread-safe; one writer per file. HDF5 errors throw DataError naming the
// file and the failing call.
class ShardWriter {
 public:
  // Creates "<final_path>.tmp" (truncating a stale one). chunk_images: images per HDF5 chunk,
  // matching how training reads batches.
  ShardWriter(std::string final_path, const PrepParams& params, int chunk_images);
  ~ShardWriter();  // an unfinished shard's .tmp file is closed and removed
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends n images. pixels: n * resolution * resolution * 3 bytes, HWC RGB, image-major.
  void append(const std::vector<std::int64_t>& image_ids, const std::uint8_t* pixels);

  // Flushes, closes and renames the .tmp file to its final name. Returns the image count.
  std::int64_t finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ShardInfo {
  std::string file;  // relative to the split folder
  std::int64_t num_images = 0;
};

struct Manifest {
  int format_version = kManifestFormatVersion;
  std::string split;
  PrepParams params;
  std::vector<ShardInfo> shards;
  std::int64_t num_images = 0;
  std::int64_t num_bad_rows = 0;
  std::string source_file;        // the {split}_imgs.tsv it was made from
  std::int64_t source_bytes = 0;  // its size, to notice a changed source
};

// Atomic write (tmp + rename) of <dir>/manifest.json.
void write_manifest(const std::string& dir, const Manifest& manifest);
// Throws DataError naming the file when missing, unparsable, or of another format version.
Manifest read_manifest(const std::string& dir);

// Reads the shard header (attributes and image count) of one finished shard file; throws
// DataError when it is not a shopclip shard or has another format version.
struct ShardHeader {
  int format_version = 0;
  PrepParams params;
  std::int64_t num_images = 0;
};
ShardHeader read_shard_header(const std::string& path);

// Read access to all images of one prepared split. Opens every shard listed in the manifest,
// verifies format version and params against `expected`, and indexes image ids.
// Thread-compatible: concurrent reads need external locking (HDF5 serial build).
class ImageStore {
 public:
  ImageStore(const std::string& split_dir, const PrepParams& expected);
  ~ImageStore();
  ImageStore(const ImageStore&) = delete;
  ImageStore& operator=(const ImageStore&) = delete;

  std::int64_t size() const;
  int resolution() const;
  // Image ids in storage order (row r of the store is ids()[r]).
  const std::vector<std::int64_t>& ids() const;
  // Row of an image id, or nullopt.
  std::optional<std::int64_t> row_of(std::int64_t image_id) const;

  // Reads the given rows into a new uint8 CPU tensor [rows.size(), H, W, 3] (row order kept).
  torch::Tensor read(const std::vector<std::int64_t>& rows) const;

  // Loads every image into memory (uint8 [N, H, W, 3]) so later read() calls are memory copies.
  void load_all();
  bool loaded() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shopclip::data
