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
//                        "queries": {file, xxh64, count}, "views": V,
//                        "view_recipe": null | {"seed", "augmentations"}, "chunk_rows": C,
//                        "parts": [{"file", "kind", "first", "rows"[, "view"]}, ...]}
//   images-00000.h5    data/embedding_file.h: the prepared training images' rows [first,
//                      first + rows) in store order (ids = image ids), unit norm, float16
//   images-v03-00000.h5  with augmented views (distill.views = V, view_recipe set): the same rows,
//                      each image as its view 3 (data::augmented_views), one set of parts per view
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
  int view = -1;  // images: the augmented view the rows hold; -1: the stored image (and queries)
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
  // Embeddings per image: 1 with an empty view_recipe (the stored image itself, unaugmented), or
  // V augmented views (distill.views) drawn from view_seed with the augmentations view_recipe
  // names (image_view_recipe, core/train/train_data.h).
  int views = 1;
  std::string view_recipe;
  std::uint64_t view_seed = 0;
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
  // Augmented views (distill.views): 0 = the stored images. Otherwise `views` views of each image,
  // made by data::augmented_views from view_seed with view_augmentations (which view_recipe
  // describes), `threads` images at a time.
  int views = 0;
  std::uint64_t view_seed = 0;
  std::string view_recipe;
  std::vector<std::shared_ptr<const data::ImageAugmentation>> view_augmentations;
  int threads = 1;
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

  // Throws DataError naming the manifest field (views, view_recipe.seed,
  // view_recipe.augmentations) unless the cache holds what a training with these settings reads:
  // `views` (distill.views; 0 = the stored images) and, for views, the loader's seed and
  // image_view_recipe.
  void check_views(int views, std::uint64_t seed, const std::string& recipe) const;

  // float32 [rows.size(), Dt] for rows of the run's image store / query set, unit norm. An
  // image's row is the mean of its views (the stored image's row when the cache has no views).
  torch::Tensor images(const std::vector<std::int64_t>& store_rows) const;
  torch::Tensor queries(const std::vector<std::int64_t>& query_rows) const;
  // float32 [rows.size(), Dt]: view views[i] (0 .. views - 1) of store row rows[i], unit norm.
  torch::Tensor image_views(const std::vector<std::int64_t>& store_rows,
                            const std::vector<int>& views) const;
  // Every row: float32 [store size, Dt] (as images()) and [queries, Dt], unit norm.
  torch::Tensor all_images() const;
  torch::Tensor all_queries() const;

 private:
  std::string dir_;
  TeacherCacheManifest manifest_;
  torch::Tensor image_rows_;  // float16 [views, store size, Dt], [v][r] = view v of store row r
  torch::Tensor query_rows_;  // float16 [queries, Dt], row q = query q
};

// Adds the teacher's embeddings of each row of a batch (its source pair: the image row and the
// query) as kTeacherImagesExtra and kTeacherTextsExtra, float32 [b, Dt]: of the row's view
// (Batch::views) when the loader draws stored views, else of the image (its mean over views).
// Thread-safe (read-only).
class TeacherRows : public data::BatchExtension {
 public:
  explicit TeacherRows(std::shared_ptr<const TeacherEmbeddings> teacher)
      : teacher_(std::move(teacher)) {}
  void extend(data::Batch& batch) const override;

 private:
  std::shared_ptr<const TeacherEmbeddings> teacher_;
};

}  // namespace shopclip
