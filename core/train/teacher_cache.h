#pragma once
// The teacher's embeddings of every training image and query, computed once by
// `shopclip distill cache` and read by a student's training (distill.*), as MobileCLIP stores its
// teachers' outputs instead of running the teacher in every step.
//
// Layout of a cache folder (distill.teacher_cache):
//   manifest.json      {"format": "shopclip-teacher-cache", "format_version": 1,
//                        "teacher": {checkpoint, xxh64, kind, dim, logit_scale, image_resolution,
//                                    context_length},
//                        "images": {prep_dir, source_file, source_bytes, resolution, resize,
//                                   color, count},
//                        "queries": {file, xxh64, count}, "views": 1, "chunk_rows": C,
//                        "parts": [{"file", "kind", "first", "rows"}, ...]}
//   images-00000.h5    data/embedding_file.h: the prepared training images' rows [first,
//                      first + rows) in store order (ids = image ids), unit norm, float16
//   queries-00000.h5   the training queries' rows [first, first + rows) in file order
//                      (ids = query ids)
//   index/             the teacher's image embeddings in an exact FAISS index (one shard per rank
//                      of the caching job, rows in the cache's image order) with its manifest
//                      (core/eval/index_store.h): the teacher-index negatives search it
// Each part file carries the teacher's hash and its rows as attributes. Parts are independent:
// ranks write them in any order, and a part file that exists for the same teacher and rows is
// kept, so an interrupted run resumes where it stopped, with any number of ranks. The manifest is
// written last (rank 0), so a folder with a manifest is complete.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/eval/index_store.h"
#include "core/log.h"
#include "core/model/encoder.h"
#include "core/train/distill_loss.h"
#include "data/loader.h"
#include "data/muge.h"
#include "data/shards.h"
#include "dist/communicator.h"

namespace shopclip {

inline constexpr int kTeacherCacheFormatVersion = 1;

// Which model made the embeddings.
struct TeacherIdentity {
  std::string checkpoint;  // path of the teacher's weights, as given
  std::string xxh64;       // XXH64 of that file, 16 hex digits: what identifies the teacher
  std::string kind;        // "shopclip" (a shopclip checkpoint)
  std::int64_t dim = 0;    // Dt
  double logit_scale = 0;  // the teacher's learned logit scale
  int image_resolution = 0;
  int context_length = 0;
};

struct TeacherCachePart {
  std::string file;  // relative to the cache folder
  std::string kind;  // "images" or "queries"
  std::int64_t first = 0, rows = 0;
};

struct TeacherCacheManifest {
  int format_version = kTeacherCacheFormatVersion;
  TeacherIdentity teacher;
  // The prepared training images the cache covers (the prep manifest's source and parameters).
  std::string images_prep_dir, images_source_file;
  std::int64_t images_source_bytes = 0, num_images = 0;
  data::PrepParams images_params;
  // The training queries file and its hash (a changed text means stale embeddings).
  std::string queries_file, queries_xxh64;
  std::int64_t num_queries = 0;
  int views = 1;  // embeddings per image (1: the stored image itself, unaugmented)
  std::int64_t chunk_rows = 0;
  std::vector<TeacherCachePart> parts;
};

// What a cache is made from. Everything referenced must outlive the call.
struct TeacherCacheInputs {
  Encoder* teacher = nullptr;  // encodes; its image_resolution() must equal the store's
  TeacherIdentity identity;
  const data::ImageStore* images = nullptr;  // the training split, prepared at the teacher's side
  std::string images_prep_dir;               // that store's folder (its manifest.json)
  const data::QuerySet* queries = nullptr;   // the training queries (ids and texts)
  int batch_size = 256;                      // rows per encoding call
  std::int64_t chunk_rows = 4096;            // rows per part file
};

// Writes the cache into `dir` (created if missing): the parts this rank owns (part i belongs to
// rank i mod world size), skipping parts already complete for the same teacher, then, after a
// barrier, rank 0 writes manifest.json. Collective: every rank of comm calls it. Returns the
// manifest (on every rank). Throws std::invalid_argument when the teacher's resolution differs
// from the store's; DataError for file errors.
TeacherCacheManifest write_teacher_cache(const TeacherCacheInputs& inputs, const std::string& dir,
                                         dist::Communicator& comm, Logger& log);

// The cache's saved index (<dir>/index) when the cache's teacher built it over exactly the run's
// training images in the run's store order (store_ids), else nothing (then the caller builds an
// index from the embeddings). DataError for a malformed index folder.
std::optional<SavedIndex> read_teacher_index(const std::string& dir,
                                             const TeacherCacheManifest& manifest,
                                             const std::vector<std::int64_t>& store_ids);

// The teacher's weights that distill.teacher names: <dir>/checkpoints/best.pt for a run
// directory, else the file itself. Throws DataError when neither exists.
std::string teacher_checkpoint_path(const std::string& teacher);

// Reads <dir>/manifest.json; throws DataError naming the file when it is missing, malformed, of
// another format or version.
TeacherCacheManifest read_teacher_cache_manifest(const std::string& dir);

// The cache in memory, in the order of a training run's own rows.
class TeacherEmbeddings {
 public:
  // Reads every part of the cache in `dir`. Every image of `images` (the run's training store,
  // at any resolution) and every query of `queries` must be in it: a DataError names the first
  // missing id. The store must come from the same source file as the cache's (DataError naming
  // the manifest field otherwise).
  TeacherEmbeddings(const std::string& dir, const data::ImageStore& images,
                    const std::string& images_prep_dir, const data::QuerySet& queries);

  const TeacherCacheManifest& manifest() const { return manifest_; }
  std::int64_t dim() const { return manifest_.teacher.dim; }

  // float32 [rows.size(), Dt] for rows of the run's image store / query set.
  torch::Tensor images(const std::vector<std::int64_t>& store_rows) const;
  torch::Tensor queries(const std::vector<std::int64_t>& query_rows) const;
  // Every row: float32 [store size, Dt] and [queries, Dt], unit norm.
  torch::Tensor all_images() const;
  torch::Tensor all_queries() const;

 private:
  TeacherCacheManifest manifest_;
  torch::Tensor image_rows_;  // float16 [store size, Dt], row r = store row r
  torch::Tensor query_rows_;  // float16 [queries, Dt], row q = query q
};

// Adds the teacher's embeddings of each row of a batch (its source pair: the image row and the
// query) as kTeacherImagesExtra and kTeacherTextsExtra, float32 [b, Dt]. Thread-safe (read-only).
class TeacherRows : public data::BatchExtension {
 public:
  explicit TeacherRows(std::shared_ptr<const TeacherEmbeddings> teacher)
      : teacher_(std::move(teacher)) {}
  void extend(data::Batch& batch) const override;

 private:
  std::shared_ptr<const TeacherEmbeddings> teacher_;
};

}  // namespace shopclip
