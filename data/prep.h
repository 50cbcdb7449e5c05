#pragma once
// `shopclip prep`: decode every image of a split once, convert to RGB, resize (Pillow-compatible
// bicubic, straight to resolution x resolution, as Chinese-CLIP) and store uint8 pixels in
// chunked HDF5 shards (data/shards.h).
//
// Streaming: the images file is indexed once (ids and byte offsets, no pixels), then each shard's
// rows are read, decoded in blocks by worker threads and appended to the shard; peak memory is
// one block, whatever the dataset size. Shard s holds index rows [s * images_per_shard, ...);
// with several processes, process r writes the shards s with s % world_size == r.
// A shard is written under a temporary name and renamed when complete; a finished shard (its
// final file exists with matching parameters) is skipped on a re-run. Rows that fail to decode
// are listed in a sidecar "<shard>.bad.json" (the index pass in "index.bad.json"), so a skipped
// shard still reports its bad rows.

#include <cstdint>
#include <functional>
#include <string>

#include "data/muge.h"
#include "data/shards.h"

namespace shopclip::data {

struct PrepOptions {
  std::string images_tsv;  // {split}_imgs.tsv
  std::string out_dir;     // the split's folder of shards and manifest
  std::string split;
  PrepParams params;
  int images_per_shard = 8192;
  int chunk_images = 32;
  int threads = 0;  // decode workers; 0 = all cores
  int rank = 0;     // this process among world_size preparing the same split
  int world_size = 1;
};

struct PrepResult {
  std::int64_t images = 0;  // images in this process's shards (written or skipped)
  std::int64_t shards_written = 0;
  std::int64_t shards_skipped = 0;
  double seconds = 0;
  BadRowLog log;  // bad rows of the index pass and of this process's shards
};

// Prepares this process's shards. progress(done_rows, total_rows) is called after each block.
PrepResult prepare_shards(const PrepOptions& options,
                          const std::function<void(std::int64_t, std::int64_t)>& progress = {});

// After every process finished prepare_shards: reads the shard headers and bad-row sidecars of
// the split and writes manifest.json and bad_rows.jsonl (one process does this). Returns the
// manifest; `log` receives the bad rows of all shards plus the index pass.
Manifest finalize_prep(const PrepOptions& options, BadRowLog& log);

// Decodes one base64 image field and resizes it; throws DataError with the reason.
// out: resolution * resolution * 3 bytes.
void decode_and_resize(std::string_view base64_field, int resolution, std::uint8_t* out);

}  // namespace shopclip::data
