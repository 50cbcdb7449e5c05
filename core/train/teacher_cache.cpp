#include "core/train/teacher_cache.h"

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/eval/embeddings.h"
#include "data/embedding_file.h"
#include "data/error.h"
#include "data/files.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "shopclip-teacher-cache";
constexpr const char* kManifestName = "manifest.json";

// Adds one view's float32 teacher rows to `sum`, whose unit_rows() after every view is added is
// the image rows handed to training and indexed: a single view's rows themselves, or with
// several views the direction of their mean (each view's rows unit first, so that float16
// rounding weighs no view more than another).
void add_view_rows(torch::Tensor sum, const torch::Tensor& view_rows, int views) {
  sum.add_(views > 1 ? unit_rows(view_rows) : view_rows);
}

// Every part of a cache of n_images and n_queries rows, images first (view by view when there
// are augmented views), in the order of the manifest (which is also the order ranks take them in).
std::vector<TeacherCachePart> plan_parts(std::int64_t images, std::int64_t queries,
                                         std::int64_t chunk_rows, int views) {
  std::vector<TeacherCachePart> parts;
  auto add = [&](const char* kind, std::int64_t total, int view) {
    const std::string prefix = view < 0 ? kind : fmt::format("{}-v{:02d}", kind, view);
    for (std::int64_t first = 0, index = 0; first < total; first += chunk_rows, ++index) {
      parts.push_back({fmt::format("{}-{:05d}.h5", prefix, index), kind, first,
                       std::min(chunk_rows, total - first), view});
    }
  };
  if (views == 0) add("images", images, -1);
  for (int v = 0; v < views; ++v)
    add("images", images, v);
  add("queries", queries, -1);
  return parts;
}

std::map<std::string, std::string> part_attributes(const TeacherIdentity& teacher,
                                                   const TeacherCachePart& part) {
  std::map<std::string, std::string> attributes = {{"teacher_xxh64", teacher.xxh64},
                                                   {"kind", part.kind},
                                                   {"first", std::to_string(part.first)},
                                                   {"rows", std::to_string(part.rows)}};
  if (part.view >= 0) attributes["view"] = std::to_string(part.view);
  return attributes;
}

// Whether `path` is a finished part for this teacher and rows (then it is kept on a re-run).
bool part_is_complete(const std::string& path, const TeacherIdentity& teacher,
                      const TeacherCachePart& part) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    return data::read_embedding_attributes(path) == part_attributes(teacher, part);
  } catch (const data::DataError&) {
    return false;  // unreadable: written again
  }
}

json manifest_json(const TeacherCacheManifest& m) {
  json parts = json::array();
  for (const auto& part : m.parts) {
    json entry = {
        {"file", part.file}, {"kind", part.kind}, {"first", part.first}, {"rows", part.rows}};
    if (part.view >= 0) entry["view"] = part.view;
    parts.push_back(std::move(entry));
  }
  const json view_recipe = m.view_recipe.empty()
                               ? json(nullptr)
                               : json{{"seed", m.view_seed}, {"augmentations", m.view_recipe}};
  const auto& t = m.teacher;
  return {
      {"format", kFormat},
      {"format_version", m.format_version},
      {"teacher",
       {{"checkpoint", t.checkpoint},
        {"xxh64", t.xxh64},
        {"kind", t.kind},
        {"dim", t.dim},
        {"logit_scale", t.logit_scale},
        {"image_resolution", t.image_resolution},
        {"context_length", t.context_length}}},
      {"images",
       {{"prep_dir", m.images_prep_dir},
        {"source_file", m.images_source_file},
        {"source_bytes", m.images_source_bytes},
        {"resolution", m.images_params.resolution},
        {"resize", m.images_params.resize},
        {"color", m.images_params.color},
        {"count", m.num_images}}},
      {"queries", {{"file", m.queries_file}, {"xxh64", m.queries_xxh64}, {"count", m.num_queries}}},
      {"views", m.views},
      {"view_recipe", view_recipe},
      {"chunk_rows", m.chunk_rows},
      {"parts", std::move(parts)}};
}

// The teacher's embeddings of view `view` of store rows [first, last), batch_size at a time.
torch::Tensor encode_views(const TeacherCacheInputs& in, std::int64_t first, std::int64_t last,
                           int view) {
  std::vector<torch::Tensor> out;
  for (std::int64_t begin = first; begin < last; begin += in.batch_size) {
    const std::int64_t end = std::min<std::int64_t>(begin + in.batch_size, last);
    std::vector<std::int64_t> rows;
    for (std::int64_t r = begin; r < end; ++r)
      rows.push_back(r);
    const std::vector<int> views(rows.size(), view);
    const auto pixels = data::augmented_views(*in.images, rows, views, in.view_seed,
                                              in.view_augmentations, in.threads);
    out.push_back(in.teacher->encode_images(data::normalize_pixels(pixels)));
  }
  return torch::cat(out);
}

// Unit-norm float32 rows [n, Dt] of one part, encoded by the teacher.
torch::Tensor encode_part(const TeacherCacheInputs& in, const TeacherCachePart& part) {
  if (part.kind == "images" && part.view >= 0) {
    return unit_rows(encode_views(in, part.first, part.first + part.rows, part.view));
  }
  if (part.kind == "images") {
    return unit_rows(
        encode_images(*in.teacher, *in.images, in.batch_size, part.first, part.first + part.rows));
  }
  std::vector<std::string> texts;
  texts.reserve(static_cast<std::size_t>(part.rows));
  for (std::int64_t q = part.first; q < part.first + part.rows; ++q)
    texts.push_back(in.queries->queries[static_cast<std::size_t>(q)].text);
  return unit_rows(encode_texts(*in.teacher, texts, in.batch_size));
}

torch::Tensor part_ids(const TeacherCacheInputs& in, const TeacherCachePart& part) {
  std::vector<std::int64_t> ids;
  ids.reserve(static_cast<std::size_t>(part.rows));
  for (std::int64_t r = part.first; r < part.first + part.rows; ++r) {
    ids.push_back(part.kind == "images" ? in.images->ids()[static_cast<std::size_t>(r)]
                                        : in.queries->queries[static_cast<std::size_t>(r)].id);
  }
  return torch::tensor(ids, torch::kLong);
}

[[noreturn]] void refuse(const std::string& dir, const std::string& field,
                         const std::string& what) {
  throw data::DataError(
      fmt::format("{}/{}: {} {}; make the cache again with `shopclip distill "
                  "cache`",
                  dir, kManifestName, field, what));
}

}  // namespace

namespace {

constexpr const char* kIndexFolder = "index";

// Rank 0, after every part is complete: the cached image rows in store order (the mean of an
// image's views when there are several; unit norm, as TeacherEmbeddings::all_images returns
// them), indexed exactly
// (one shard per rank of the caching job) and saved in <dir>/index.
void write_teacher_index(const std::string& dir, const TeacherCacheManifest& manifest,
                         const std::vector<std::int64_t>& ids, int shards, Logger& log) {
  const auto start = std::chrono::steady_clock::now();
  auto rows = torch::zeros({manifest.num_images, manifest.teacher.dim}, torch::kFloat32);
  for (const auto& part : manifest.parts) {
    if (part.kind != "images") continue;
    const data::EmbeddingTable table = data::read_embedding_file(dir + "/" + part.file);
    add_view_rows(rows.narrow(0, part.first, part.rows), table.embeddings.to(torch::kFloat32),
                  manifest.views);
  }
  // Unit norm again after float16 rounding, as TeacherEmbeddings hands the rows to training.
  rows = unit_rows(rows);
  const int dim = static_cast<int>(manifest.teacher.dim);
  std::vector<const float*> parts;
  std::vector<std::int64_t> counts;
  for (int s = 0; s < shards; ++s) {
    const auto [begin, end] = rank_slice(manifest.num_images, s, shards);
    parts.push_back(rows.data_ptr<float>() + begin * dim);
    counts.push_back(end - begin);
  }
  const EmbeddingIndex index = EmbeddingIndex::sharded("Flat", dim, parts, counts);
  IndexManifest saved;
  saved.checkpoint = manifest.teacher.checkpoint;
  saved.xxh64 = manifest.teacher.xxh64;
  saved.embed_dim = manifest.teacher.dim;
  saved.factory = "Flat";
  saved.split = fs::path(manifest.images_prep_dir).filename().string();
  write_saved_index(dir + "/" + kIndexFolder, index, saved, ids, rows);
  log.info("distill cache: the teacher's image index ({} rows, {} shard(s)) in {}/{} ({:.1f} s)",
           index.size(), shards, dir, kIndexFolder,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace

TeacherCacheManifest write_teacher_cache(const TeacherCacheInputs& in, const std::string& dir,
                                         dist::Communicator& comm, Logger& log) {
  if (in.teacher == nullptr || in.images == nullptr || in.queries == nullptr) {
    throw std::invalid_argument("write_teacher_cache: teacher, images and queries are required");
  }
  if (in.chunk_rows < 1 || in.batch_size < 1) {
    throw std::invalid_argument("write_teacher_cache: chunk_rows and batch_size must be positive");
  }
  if (in.teacher->image_resolution() != in.images->resolution()) {
    throw std::invalid_argument(fmt::format(
        "the teacher encodes {}px images but {} holds {}px ones: prepare the training split at the "
        "teacher's side (shopclip prep --set model.image.resolution={})",
        in.teacher->image_resolution(), in.images_prep_dir, in.images->resolution(),
        in.teacher->image_resolution()));
  }
  const data::Manifest prep = data::read_manifest(in.images_prep_dir);
  TeacherCacheManifest manifest;
  manifest.teacher = in.identity;
  manifest.teacher.dim = in.teacher->dim();
  manifest.images_prep_dir = in.images_prep_dir;
  manifest.images_source_file = prep.source_file;
  manifest.images_source_bytes = prep.source_bytes;
  manifest.images_params = prep.params;
  manifest.num_images = in.images->size();
  manifest.queries_file = in.queries->file;
  manifest.queries_xxh64 = fmt::format("{:016x}", data::xxh64_file(in.queries->file));
  manifest.num_queries = static_cast<std::int64_t>(in.queries->queries.size());
  manifest.chunk_rows = in.chunk_rows;
  if (in.views < 0) throw std::invalid_argument("write_teacher_cache: views must be >= 0");
  if (in.views > 0) {
    manifest.views = in.views;
    manifest.view_recipe = in.view_recipe;
    manifest.view_seed = in.view_seed;
  }
  manifest.parts = plan_parts(manifest.num_images, manifest.num_queries, in.chunk_rows, in.views);

  if (comm.rank() == 0) fs::create_directories(dir);
  comm.barrier();
  std::int64_t written = 0, kept = 0;
  for (std::size_t i = 0; i < manifest.parts.size(); ++i) {
    if (static_cast<int>(i % static_cast<std::size_t>(comm.world_size())) != comm.rank()) continue;
    const auto& part = manifest.parts[i];
    const std::string path = dir + "/" + part.file;
    if (part_is_complete(path, manifest.teacher, part)) {
      ++kept;
      continue;
    }
    const auto embeddings = encode_part(in, part);
    data::write_embedding_file(path, part_ids(in, part), embeddings,
                               part_attributes(manifest.teacher, part));
    ++written;
    log.info("distill cache: {} rows {}..{} -> {}", part.kind, part.first,
             part.first + part.rows - 1, path);
  }
  log.info("distill cache: this rank wrote {} part(s), kept {} already complete", written, kept);
  comm.barrier();
  if (comm.rank() == 0) {
    for (const auto& part : manifest.parts) {
      if (!part_is_complete(dir + "/" + part.file, manifest.teacher, part)) {
        throw data::DataError(dir + "/" + part.file + ": missing or incomplete after caching");
      }
    }
    write_teacher_index(dir, manifest, in.images->ids(), comm.world_size(), log);
    data::write_file_atomic(dir + "/" + kManifestName, manifest_json(manifest).dump(2) + "\n");
    log.info("distill cache: {} images and {} queries, {} dims -> {}", manifest.num_images,
             manifest.num_queries, manifest.teacher.dim, dir);
  }
  comm.barrier();
  return manifest;
}

std::optional<SavedIndex> read_teacher_index(const std::string& dir,
                                             const TeacherCacheManifest& manifest,
                                             const std::vector<std::int64_t>& store_ids) {
  const std::string index_dir = dir + "/" + kIndexFolder;
  std::error_code ec;
  if (!fs::exists(index_dir + "/manifest.json", ec)) return std::nullopt;
  SavedIndex saved = read_saved_index(index_dir);
  if (saved.manifest.xxh64 != manifest.teacher.xxh64 || saved.ids != store_ids) {
    return std::nullopt;
  }
  return saved;
}

std::string teacher_checkpoint_path(const std::string& teacher) {
  std::error_code ec;
  if (fs::is_directory(teacher, ec)) {
    const std::string best = teacher + "/checkpoints/best.pt";
    if (!fs::is_regular_file(best, ec)) {
      throw data::DataError(teacher +
                            ": a folder without checkpoints/best.pt (distill.teacher "
                            "names a run directory or a checkpoint file)");
    }
    return best;
  }
  if (!fs::is_regular_file(teacher, ec)) {
    throw data::DataError(teacher + ": no such run directory or checkpoint (distill.teacher)");
  }
  return teacher;
}

TeacherCacheManifest read_teacher_cache_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw data::DataError(path + ": no teacher cache here (make it with `shopclip distill cache`)");
  }
  json root;
  try {
    root = json::parse(data::read_whole_file(path));
  } catch (const json::exception& e) {
    throw data::DataError(path + ": not valid JSON: " + e.what());
  }
  const data::JsonFields fields(path);
  if (!root.is_object() || !root.contains("format") || root["format"] != kFormat) {
    throw data::DataError(path + ": not a shopclip teacher cache (\"format\" is not \"" +
                          std::string(kFormat) + "\")");
  }
  TeacherCacheManifest m;
  m.format_version = static_cast<int>(fields.integer(root, "format_version", "format_version"));
  if (m.format_version != kTeacherCacheFormatVersion) {
    throw data::DataError(fmt::format(
        "{}: teacher cache format version {}, this build reads version {}; make the cache again",
        path, m.format_version, kTeacherCacheFormatVersion));
  }
  const json& t = fields.object(root, "teacher", "teacher");
  m.teacher.checkpoint = fields.string(t, "checkpoint", "teacher.checkpoint");
  m.teacher.xxh64 = fields.string(t, "xxh64", "teacher.xxh64");
  m.teacher.kind = fields.string(t, "kind", "teacher.kind");
  m.teacher.dim = fields.integer(t, "dim", "teacher.dim", 1);
  m.teacher.logit_scale = fields.number(t, "logit_scale", "teacher.logit_scale");
  m.teacher.image_resolution =
      static_cast<int>(fields.integer(t, "image_resolution", "teacher.image_resolution", 1));
  m.teacher.context_length =
      static_cast<int>(fields.integer(t, "context_length", "teacher.context_length", 1));
  const json& images = fields.object(root, "images", "images");
  m.images_prep_dir = fields.string(images, "prep_dir", "images.prep_dir");
  m.images_source_file = fields.string(images, "source_file", "images.source_file");
  m.images_source_bytes = fields.integer(images, "source_bytes", "images.source_bytes", 0);
  m.images_params.resolution =
      static_cast<int>(fields.integer(images, "resolution", "images.resolution", 1));
  m.images_params.resize = fields.string(images, "resize", "images.resize");
  m.images_params.color = fields.string(images, "color", "images.color");
  m.num_images = fields.integer(images, "count", "images.count", 0);
  const json& queries = fields.object(root, "queries", "queries");
  m.queries_file = fields.string(queries, "file", "queries.file");
  m.queries_xxh64 = fields.string(queries, "xxh64", "queries.xxh64");
  m.num_queries = fields.integer(queries, "count", "queries.count", 0);
  m.views = static_cast<int>(fields.integer(root, "views", "views", 1, 64));
  if (root.contains("view_recipe") && !root["view_recipe"].is_null()) {
    const json& recipe = fields.object(root, "view_recipe", "view_recipe");
    m.view_seed = static_cast<std::uint64_t>(fields.integer(recipe, "seed", "view_recipe.seed", 0));
    m.view_recipe = fields.string(recipe, "augmentations", "view_recipe.augmentations");
  } else if (m.views != 1) {
    throw fields.error("views", "must be 1 without a view_recipe (the stored images)");
  }
  m.chunk_rows = fields.integer(root, "chunk_rows", "chunk_rows", 1);
  const json& parts = fields.array(root, "parts", "parts");
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string key = fmt::format("parts[{}]", i);
    TeacherCachePart part;
    part.file = fields.string(parts[i], "file", key + ".file");
    if (part.file.find('/') != std::string::npos || part.file == "..") {
      throw fields.error(key + ".file", "must be a file name inside the cache folder");
    }
    part.kind = fields.string(parts[i], "kind", key + ".kind");
    if (part.kind != "images" && part.kind != "queries") {
      throw fields.error(key + ".kind", "must be \"images\" or \"queries\"");
    }
    part.first = fields.integer(parts[i], "first", key + ".first", 0);
    part.rows = fields.integer(parts[i], "rows", key + ".rows", 0);
    if (parts[i].contains("view")) {
      part.view = static_cast<int>(fields.integer(parts[i], "view", key + ".view", 0));
      if (part.kind != "images" || m.view_recipe.empty() || part.view >= m.views) {
        throw fields.error(key + ".view", "names a view the cache does not hold");
      }
    }
    m.parts.push_back(std::move(part));
  }
  return m;
}

TeacherEmbeddings::TeacherEmbeddings(const std::string& dir, const data::ImageStore& images,
                                     const std::string& images_prep_dir,
                                     const data::QuerySet& queries)
    : dir_(dir), manifest_(read_teacher_cache_manifest(dir)) {
  const auto& m = manifest_;
  const data::Manifest prep = data::read_manifest(images_prep_dir);
  if (prep.source_file != m.images_source_file) {
    refuse(dir, "images.source_file",
           fmt::format("is {} but the run's training images ({}) come from {}",
                       m.images_source_file, images_prep_dir, prep.source_file));
  }
  if (prep.source_bytes != m.images_source_bytes) {
    refuse(dir, "images.source_bytes",
           fmt::format("is {} but {} now has {} bytes", m.images_source_bytes, prep.source_file,
                       prep.source_bytes));
  }
  const std::string queries_hash = fmt::format("{:016x}", data::xxh64_file(queries.file));
  if (queries_hash != m.queries_xxh64) {
    refuse(
        dir, "queries.xxh64",
        fmt::format("is {} but {} now hashes to {}", m.queries_xxh64, queries.file, queries_hash));
  }
  // Each part's rows, placed by id.
  std::unordered_map<std::int64_t, std::int64_t> image_slot, query_slot;
  for (std::int64_t r = 0; r < images.size(); ++r)
    image_slot[images.ids()[static_cast<std::size_t>(r)]] = r;
  for (std::size_t q = 0; q < queries.queries.size(); ++q)
    query_slot[queries.queries[q].id] = static_cast<std::int64_t>(q);
  image_rows_ = torch::zeros({m.views, images.size(), m.teacher.dim}, torch::kHalf);
  query_rows_ = torch::zeros({static_cast<std::int64_t>(queries.queries.size()), m.teacher.dim},
                             torch::kHalf);
  auto image_found = torch::zeros({m.views, images.size()}, torch::kBool);
  auto query_found = torch::zeros({query_rows_.size(0)}, torch::kBool);
  for (const auto& part : m.parts) {
    const std::string path = dir + "/" + part.file;
    const data::EmbeddingTable table = data::read_embedding_file(path);
    if (table.attributes != part_attributes(m.teacher, part)) {
      throw data::DataError(path + ": made by another teacher or for other rows than " + dir +
                            "/manifest.json says (teacher_xxh64, kind, first, rows)");
    }
    if (table.embeddings.size(1) != m.teacher.dim || table.ids.size(0) != part.rows) {
      throw data::DataError(fmt::format("{}: holds [{}, {}] embeddings, the manifest says [{}, {}]",
                                        path, table.ids.size(0), table.embeddings.size(1),
                                        part.rows, m.teacher.dim));
    }
    const bool is_images = part.kind == "images";
    auto& slots = is_images ? image_slot : query_slot;
    std::vector<std::int64_t> from, to;
    const auto* ids = table.ids.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < table.ids.size(0); ++i) {
      auto it = slots.find(ids[i]);
      if (it == slots.end()) continue;  // not in this run's training data (a bad row, say)
      from.push_back(i);
      to.push_back(it->second);
    }
    if (from.empty()) continue;
    const auto source = torch::tensor(from, torch::kLong), target = torch::tensor(to, torch::kLong);
    const int view = std::max(part.view, 0);
    (is_images ? image_rows_[view] : query_rows_)
        .index_copy_(0, target, table.embeddings.index_select(0, source));
    (is_images ? image_found[view] : query_found).index_fill_(0, target, true);
  }
  auto first_missing = [](const torch::Tensor& found) -> std::int64_t {
    const auto missing = found.logical_not().nonzero();
    return missing.size(0) == 0 ? -1 : missing[0][0].item<std::int64_t>();
  };
  for (int v = 0; v < m.views; ++v) {
    if (const auto row = first_missing(image_found[v]); row >= 0) {
      throw data::DataError(fmt::format(
          "{}: image id {} of the run's training images ({}) is not in the teacher cache{}", dir,
          images.ids()[static_cast<std::size_t>(row)], images_prep_dir,
          m.view_recipe.empty() ? std::string() : fmt::format(" (view {})", v)));
    }
  }
  if (const auto row = first_missing(query_found); row >= 0) {
    throw data::DataError(fmt::format("{}: query id {} of {} is not in the teacher cache", dir,
                                      queries.queries[static_cast<std::size_t>(row)].id,
                                      queries.file));
  }
}

void TeacherEmbeddings::check_views(int views, std::uint64_t seed,
                                    const std::string& recipe) const {
  const auto& m = manifest_;
  const int held = m.view_recipe.empty() ? 0 : m.views;
  if (views != held) {
    refuse(dir_, "views",
           held == 0 ? fmt::format("holds the stored images, not distill.views = {} augmented "
                                   "views",
                                   views)
                     : fmt::format("is {} augmented views, but distill.views is {}", held, views));
  }
  if (views == 0) return;
  if (m.view_seed != seed) {
    refuse(dir_, "view_recipe.seed",
           fmt::format("is {}, but this run draws its views from run.seed {}", m.view_seed, seed));
  }
  if (m.view_recipe != recipe) {
    refuse(dir_, "view_recipe.augmentations",
           fmt::format("is \"{}\", but this run augments with \"{}\"", m.view_recipe, recipe));
  }
}

torch::Tensor TeacherEmbeddings::images(const std::vector<std::int64_t>& store_rows) const {
  // Unit norm again after float16 rounding; with views, their mean's direction.
  const auto rows = torch::tensor(store_rows, torch::kLong);
  auto sum = torch::zeros({rows.size(0), dim()});
  const auto views = static_cast<int>(image_rows_.size(0));
  for (int v = 0; v < views; ++v)
    add_view_rows(sum, image_rows_[v].index_select(0, rows).to(torch::kFloat32), views);
  return unit_rows(sum);
}

torch::Tensor TeacherEmbeddings::image_views(const std::vector<std::int64_t>& store_rows,
                                             const std::vector<int>& views) const {
  if (views.size() != store_rows.size()) {
    throw std::invalid_argument("TeacherEmbeddings::image_views: one view per row");
  }
  std::vector<std::int64_t> flat;  // row of image_rows_ viewed as [views * store size, Dt]
  const std::int64_t store_size = image_rows_.size(1);
  for (std::size_t i = 0; i < views.size(); ++i) {
    if (views[i] < 0 || views[i] >= image_rows_.size(0)) {
      throw std::out_of_range(
          fmt::format("view {} of a cache with {} views", views[i], image_rows_.size(0)));
    }
    flat.push_back(views[i] * store_size + store_rows[i]);
  }
  return unit_rows(image_rows_.view({-1, dim()})
                       .index_select(0, torch::tensor(flat, torch::kLong))
                       .to(torch::kFloat32));
}

torch::Tensor TeacherEmbeddings::queries(const std::vector<std::int64_t>& query_rows) const {
  return unit_rows(
      query_rows_.index_select(0, torch::tensor(query_rows, torch::kLong)).to(torch::kFloat32));
}

torch::Tensor TeacherEmbeddings::all_images() const {
  auto sum = torch::zeros({image_rows_.size(1), dim()});
  const auto views = static_cast<int>(image_rows_.size(0));
  for (int v = 0; v < views; ++v)
    add_view_rows(sum, image_rows_[v].to(torch::kFloat32), views);
  return unit_rows(sum);
}

torch::Tensor TeacherEmbeddings::all_queries() const {
  return unit_rows(query_rows_.to(torch::kFloat32));
}

void TeacherRows::extend(data::Batch& batch) const {
  std::vector<std::int64_t> image_rows, query_rows;
  image_rows.reserve(batch.pairs.size());
  query_rows.reserve(batch.pairs.size());
  for (const auto& pair : batch.pairs) {
    image_rows.push_back(pair.image_row);
    query_rows.push_back(pair.query);
  }
  batch.extras[kTeacherImagesExtra] = batch.views.empty()
                                          ? teacher_->images(image_rows)
                                          : teacher_->image_views(image_rows, batch.views);
  batch.extras[kTeacherTextsExtra] = teacher_->queries(query_rows);
}

}  // namespace shopclip
