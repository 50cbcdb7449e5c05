#include "data/shards.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <hdf5.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_util.h"

namespace shopclip::data {
namespace {

constexpr const char* kShardFormat = "shopclip-image-shard";
constexpr const char* kManifestFormat = "shopclip-prep-manifest";
constexpr const char* kManifestName = "manifest.json";
constexpr const char* kRerunHint = "re-run `shopclip prep` for these settings";

// Reads of non-consecutive requested rows go through a scratch buffer; capping a run keeps that
// buffer bounded when a caller asks for a whole shard in shuffled order.
constexpr std::size_t kMaxRunBytes = std::size_t{64} << 20;

// Chunk cache of a reader's /pixels dataset: deliberately smaller than any chunk. For unfiltered
// data HDF5 then reads exactly the selected images straight from the file (one pread per run).
// With a cache that holds a chunk, each access pulls the whole chunk (chunk_images images) into
// memory to copy out one image, and HDF5 1.10 was measured to keep every chunk it had read
// (RSS grew by the size of the dataset, a 1 MiB cache notwithstanding): unbounded memory for a
// mode whose point is not holding the split in memory (that is what load_all() is for).
// Sequential reads lose nothing: a whole-chunk selection is one contiguous read either way.
constexpr std::size_t kReaderChunkCacheBytes = 0;

using namespace hdf5;

// ---- shard files --------------------------------------------------------------------------

std::int64_t image_bytes_of(int resolution) {
  return static_cast<std::int64_t>(resolution) * resolution * 3;
}

// A validated, open shard. Member order matters: datasets close before their file.
struct OpenShard {
  std::string path;
  Handle file;
  Handle pixels;
  Handle ids;
  ShardHeader header;
};

Handle open_dataset(hid_t file_id, const char* name, hid_t dapl, const std::string& file) {
  htri_t exists = H5Lexists(file_id, name, H5P_DEFAULT);
  if (exists < 0) throw_hdf5(file, std::string("H5Lexists(") + name + ")");
  if (exists == 0) throw DataError(file + ": not a shopclip image shard (no " + name + " dataset)");
  return checked(H5Dopen2(file_id, name, dapl), H5Dclose, file,
                 std::string("H5Dopen2(") + name + ")");
}

// Opens a finished shard and checks everything a reader relies on: HDF5 signature, format
// attributes and version, and that /pixels and /image_ids have matching, expected shapes.
OpenShard open_shard(const std::string& path, std::size_t pixel_cache_bytes) {
  silence_hdf5();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": no such shard file");
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) throw_hdf5(path, "H5Fis_hdf5");
  if (is_hdf5 == 0) throw DataError(path + ": not an HDF5 file (is it a shopclip image shard?)");

  OpenShard shard;
  shard.path = path;
  shard.file = checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path,
                       "H5Fopen (read-only)");
  hid_t root = shard.file.get();
  std::string format = read_string_attr(root, "format", path);
  if (format != kShardFormat) {
    throw DataError(path + ": not a shopclip image shard (format is \"" + format + "\")");
  }
  ShardHeader& header = shard.header;
  header.format_version = read_int_attr(root, "format_version", path);
  if (header.format_version != kShardFormatVersion) {
    throw DataError(path + " was written by shard format version " +
                    std::to_string(header.format_version) + "; this build reads version " +
                    std::to_string(kShardFormatVersion) + "; re-run `shopclip prep`");
  }
  header.params.resolution = read_int_attr(root, "resolution", path);
  header.params.resize = read_string_attr(root, "resize", path);
  header.params.color = read_string_attr(root, "color", path);
  if (header.params.resolution <= 0) {
    throw DataError(path + ": invalid resolution attribute " +
                    std::to_string(header.params.resolution));
  }

  Handle dapl = checked(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose, path, "H5Pcreate(dataset access)");
  // nslots is irrelevant when nothing fits; 521 (prime) is HDF5's usual default.
  check(H5Pset_chunk_cache(dapl.get(), 521, pixel_cache_bytes, 1.0), path, "H5Pset_chunk_cache");
  shard.pixels = open_dataset(root, "/pixels", dapl.get(), path);
  shard.ids = open_dataset(root, "/image_ids", H5P_DEFAULT, path);
  check_integer_type(shard.pixels.get(), 1, H5T_SGN_NONE, path, "/pixels", "uint8");
  check_integer_type(shard.ids.get(), 8, H5T_SGN_2, path, "/image_ids", "int64");

  const auto res = static_cast<hsize_t>(header.params.resolution);
  std::vector<hsize_t> pixel_dims = dataset_dims(shard.pixels.get(), path, "/pixels");
  if (pixel_dims.size() != 4 || pixel_dims[1] != res || pixel_dims[2] != res ||
      pixel_dims[3] != 3) {
    throw DataError(path + ": /pixels is not [n, " + std::to_string(res) + ", " +
                    std::to_string(res) + ", 3] as its resolution attribute says");
  }
  std::vector<hsize_t> id_dims = dataset_dims(shard.ids.get(), path, "/image_ids");
  if (id_dims.size() != 1 || id_dims[0] != pixel_dims[0]) {
    throw DataError(path + ": /image_ids does not have one entry per image of /pixels");
  }
  header.num_images = static_cast<std::int64_t>(pixel_dims[0]);
  return shard;
}

// ---- manifest JSON ------------------------------------------------------------------------

using nlohmann::json;

std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace

// ---- check_compatible ---------------------------------------------------------------------

PrepParams prep_params(int resolution) {
  PrepParams params;
  params.resolution = resolution;
  params.resize = "bicubic";
  params.color = "RGB";
  return params;
}

void check_compatible(const PrepParams& found, const PrepParams& expected,
                      const std::string& what) {
  std::vector<std::string> was;
  std::vector<std::string> wanted;
  if (found.resolution != expected.resolution) {
    was.push_back("resolution=" + std::to_string(found.resolution));
    wanted.push_back("resolution=" + std::to_string(expected.resolution));
  }
  if (found.resize != expected.resize) {
    was.push_back("resize=" + found.resize);
    wanted.push_back("resize=" + expected.resize);
  }
  if (found.color != expected.color) {
    was.push_back("color=" + found.color);
    wanted.push_back("color=" + expected.color);
  }
  if (was.empty()) return;
  auto join = [](const std::vector<std::string>& parts) {
    std::string text;
    for (const std::string& part : parts)
      text += (text.empty() ? "" : ", ") + part;
    return text;
  };
  throw DataError(what + ": prepared with " + join(was) + " but this run expects " + join(wanted) +
                  "; " + kRerunHint);
}

// ---- ShardWriter --------------------------------------------------------------------------

struct ShardWriter::Impl {
  std::string final_path;
  std::string tmp_path;
  PrepParams params;
  hsize_t res = 0;
  std::int64_t image_bytes = 0;
  std::int64_t count = 0;
  bool created = false;  // the .tmp file is ours to remove
  bool finished = false;
  // Declared before the datasets so they are destroyed (closed) after them.
  Handle file;
  Handle pixels;
  Handle ids;

  ~Impl() {
    if (finished) return;
    pixels.reset();
    ids.reset();
    file.reset();
    if (created) {
      std::error_code ignored;
      std::filesystem::remove(tmp_path, ignored);
    }
  }

  void create(int chunk_images) {
    silence_hdf5();
    const std::string& f = tmp_path;
    file = checked(H5Fcreate(f.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, f,
                   "H5Fcreate");
    created = true;
    hid_t root = file.get();
    write_string_attr(root, "format", kShardFormat, f);
    write_int_attr(root, "format_version", kShardFormatVersion, f);
    write_int_attr(root, "resolution", params.resolution, f);
    write_string_attr(root, "resize", params.resize, f);
    write_string_attr(root, "color", params.color, f);

    const auto chunk = static_cast<hsize_t>(chunk_images);
    pixels = create_dataset("/pixels", H5T_STD_U8LE, {0, res, res, 3}, {chunk, res, res, 3},
                            static_cast<std::size_t>(chunk) * image_bytes);
    // Ids are tiny next to pixels; bigger chunks keep the chunk index small.
    const hsize_t id_chunk = chunk * 16;
    ids = create_dataset("/image_ids", H5T_STD_I64LE, {0}, {id_chunk}, id_chunk * 8);
  }

  Handle create_dataset(const char* name, hid_t type, std::vector<hsize_t> dims,
                        const std::vector<hsize_t>& chunk, std::size_t chunk_bytes) {
    const std::string& f = tmp_path;
    const std::string op = std::string(" (") + name + ")";
    std::vector<hsize_t> max_dims = dims;
    max_dims[0] = H5S_UNLIMITED;
    Handle space = simple_space(dims, &max_dims, f);
    Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, f, "H5Pcreate" + op);
    check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), f,
          "H5Pset_chunk" + op);
    // Every element is written before it is read, so pre-filling chunks is wasted I/O.
    check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), f, "H5Pset_fill_time" + op);
    Handle dapl = checked(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose, f, "H5Pcreate" + op);
    // Room for two chunks so appends that do not align with chunk boundaries are assembled in
    // memory and each chunk reaches the file in one write.
    check(H5Pset_chunk_cache(dapl.get(), 521, 2 * chunk_bytes, 1.0), f, "H5Pset_chunk_cache" + op);
    return checked(
        H5Dcreate2(file.get(), name, type, space.get(), H5P_DEFAULT, dcpl.get(), dapl.get()),
        H5Dclose, f, "H5Dcreate2" + op);
  }

  // Grows `dataset` by dims[0] rows and writes `data` into the new rows.
  void append_rows(hid_t dataset, const char* name, hid_t mem_type, std::vector<hsize_t> dims,
                   const void* data) {
    const std::string& f = tmp_path;
    const std::string op = std::string(" (") + name + ")";
    std::vector<hsize_t> total = dims;
    total[0] = static_cast<hsize_t>(count) + dims[0];
    check(H5Dset_extent(dataset, total.data()), f, "H5Dset_extent" + op);
    Handle file_space = checked(H5Dget_space(dataset), H5Sclose, f, "H5Dget_space" + op);
    std::vector<hsize_t> start(dims.size(), 0);
    start[0] = static_cast<hsize_t>(count);
    check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, dims.data(),
                              nullptr),
          f, "H5Sselect_hyperslab" + op);
    Handle mem_space = simple_space(dims, nullptr, f);
    check(H5Dwrite(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data), f,
          "H5Dwrite" + op);
  }
};

ShardWriter::ShardWriter(std::string final_path, const PrepParams& params, int chunk_images)
    : impl_(std::make_unique<Impl>()) {
  if (params.resolution <= 0) {
    throw std::invalid_argument("ShardWriter: resolution must be positive, got " +
                                std::to_string(params.resolution));
  }
  if (chunk_images <= 0) {
    throw std::invalid_argument("ShardWriter: chunk_images must be positive, got " +
                                std::to_string(chunk_images));
  }
  impl_->final_path = std::move(final_path);
  impl_->tmp_path = temporary_path(impl_->final_path);
  impl_->params = params;
  impl_->res = static_cast<hsize_t>(params.resolution);
  impl_->image_bytes = image_bytes_of(params.resolution);
  // If this throws, impl_ is destroyed with the half-built writer and removes the .tmp file.
  impl_->create(chunk_images);
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::append(const std::vector<std::int64_t>& image_ids, const std::uint8_t* pixels) {
  Impl& d = *impl_;
  if (d.finished) throw std::logic_error("ShardWriter::append after finish: " + d.final_path);
  if (image_ids.empty()) return;
  if (pixels == nullptr) throw std::invalid_argument("ShardWriter::append: null pixels");
  silence_hdf5();
  const auto n = static_cast<hsize_t>(image_ids.size());
  // Pixels first: if that fails, /image_ids still matches the old extent of /pixels.
  d.append_rows(d.pixels.get(), "/pixels", H5T_NATIVE_UINT8, {n, d.res, d.res, 3}, pixels);
  d.append_rows(d.ids.get(), "/image_ids", H5T_NATIVE_INT64, {n}, image_ids.data());
  d.count += static_cast<std::int64_t>(n);
}

std::int64_t ShardWriter::finish() {
  Impl& d = *impl_;
  if (d.finished) throw std::logic_error("ShardWriter::finish called twice: " + d.final_path);
  silence_hdf5();
  check(d.pixels.close(), d.tmp_path, "H5Dclose(/pixels)");
  check(d.ids.close(), d.tmp_path, "H5Dclose(/image_ids)");
  // Closing the file is what flushes the chunk cache and metadata; a failure here means the
  // file is incomplete, so it must not be renamed.
  check(d.file.close(), d.tmp_path, "H5Fclose");
  // commit_file removes the temporary itself when it fails; then there is nothing left for ~Impl.
  d.finished = true;
  commit_file(d.tmp_path, d.final_path);
  return d.count;
}

// ---- manifest -----------------------------------------------------------------------------

void write_manifest(const std::string& dir, const Manifest& manifest) {
  json shards = json::array();
  for (const ShardInfo& shard : manifest.shards) {
    shards.push_back({{"file", shard.file}, {"num_images", shard.num_images}});
  }
  json root = {
      {"format", kManifestFormat},
      {"format_version", manifest.format_version},
      {"split", manifest.split},
      {"params",
       {{"resolution", manifest.params.resolution},
        {"resize", manifest.params.resize},
        {"color", manifest.params.color}}},
      {"shards", std::move(shards)},
      {"num_images", manifest.num_images},
      {"num_bad_rows", manifest.num_bad_rows},
      {"source", {{"file", manifest.source_file}, {"bytes", manifest.source_bytes}}},
  };
  write_file_atomic(join_path(dir, kManifestName), root.dump(2) + "\n");
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = join_path(dir, kManifestName);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw DataError(path + ": cannot read the prep manifest (run `shopclip prep` first?)");
  }
  std::ostringstream text;
  text << in.rdbuf();
  json root;
  try {
    root = json::parse(text.str());
  } catch (const json::exception& e) {
    throw DataError(path + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw DataError(path + ": not a JSON object");

  const JsonFields fields(path);
  // Format and version first: a manifest of another version may legitimately lack fields.
  auto format = root.find("format");
  if (format == root.end() || !format->is_string() || *format != kManifestFormat) {
    throw DataError(path + ": not a shopclip prep manifest (\"format\" is not \"" +
                    kManifestFormat + "\")");
  }
  Manifest manifest;
  manifest.format_version = static_cast<int>(
      fields.integer(root, "format_version", "format_version", 0, std::numeric_limits<int>::max()));
  if (manifest.format_version != kManifestFormatVersion) {
    throw DataError(path + " was written by manifest format version " +
                    std::to_string(manifest.format_version) + "; this build reads version " +
                    std::to_string(kManifestFormatVersion) + "; re-run `shopclip prep`");
  }
  manifest.split = fields.string(root, "split", "split");
  const json& params = fields.object(root, "params", "params");
  manifest.params.resolution = static_cast<int>(fields.integer(
      params, "resolution", "params.resolution", 1, std::numeric_limits<int>::max()));
  manifest.params.resize = fields.string(params, "resize", "params.resize");
  manifest.params.color = fields.string(params, "color", "params.color");

  const json& shards = fields.array(root, "shards", "shards");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const std::string key = "shards[" + std::to_string(i) + "]";
    if (!shards[i].is_object()) throw fields.error(key, "must be an object");
    ShardInfo shard;
    shard.file = fields.string(shards[i], "file", key + ".file");
    // Shards live inside the split folder; anything else is a corrupt or hostile manifest.
    const std::filesystem::path file(shard.file);
    if (shard.file.empty() || file.is_absolute() ||
        std::any_of(file.begin(), file.end(), [](const auto& part) { return part == ".."; })) {
      throw fields.error(key + ".file", "must be a path inside the split folder");
    }
    shard.num_images = fields.integer(shards[i], "num_images", key + ".num_images", 0);
    total += shard.num_images;
    manifest.shards.push_back(std::move(shard));
  }
  manifest.num_images = fields.integer(root, "num_images", "num_images", 0);
  if (manifest.num_images != total) {
    throw fields.error("num_images", "is " + std::to_string(manifest.num_images) +
                                         " but the shards hold " + std::to_string(total));
  }
  manifest.num_bad_rows = fields.integer(root, "num_bad_rows", "num_bad_rows", 0);
  const json& source = fields.object(root, "source", "source");
  manifest.source_file = fields.string(source, "file", "source.file");
  manifest.source_bytes = fields.integer(source, "bytes", "source.bytes", 0);
  return manifest;
}

ShardHeader read_shard_header(const std::string& path) {
  return open_shard(path, kReaderChunkCacheBytes).header;
}

// ---- ImageStore ---------------------------------------------------------------------------

struct ImageStore::Impl {
  std::string dir;
  PrepParams params;
  std::int64_t image_bytes = 0;
  std::vector<OpenShard> shards;
  std::vector<std::int64_t> starts;  // first store row of each shard, ascending
  std::vector<std::int64_t> ids;
  std::unordered_map<std::int64_t, std::int64_t> row_of_id;
  torch::Tensor all;  // defined after load_all()

  std::size_t shard_of(std::int64_t row) const {
    auto it = std::upper_bound(starts.begin(), starts.end(), row);
    return static_cast<std::size_t>(it - starts.begin()) - 1;
  }

  std::int64_t shard_end(std::size_t s) const { return starts[s] + shards[s].header.num_images; }

  // Reads `count` consecutive images starting at shard-local row `first` with one hyperslab.
  void read_run(std::size_t s, std::int64_t first, std::int64_t count, std::uint8_t* out) const {
    const OpenShard& shard = shards[s];
    const auto res = static_cast<hsize_t>(params.resolution);
    Handle file_space =
        checked(H5Dget_space(shard.pixels.get()), H5Sclose, shard.path, "H5Dget_space(/pixels)");
    const hsize_t start[4] = {static_cast<hsize_t>(first), 0, 0, 0};
    const hsize_t dims[4] = {static_cast<hsize_t>(count), res, res, 3};
    check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, dims, nullptr),
          shard.path, "H5Sselect_hyperslab(/pixels)");
    Handle mem_space =
        checked(H5Screate_simple(4, dims, nullptr), H5Sclose, shard.path, "H5Screate_simple");
    check(H5Dread(shard.pixels.get(), H5T_NATIVE_UINT8, mem_space.get(), file_space.get(),
                  H5P_DEFAULT, out),
          shard.path, "H5Dread(/pixels)");
  }
};

ImageStore::ImageStore(const std::string& split_dir, const PrepParams& expected)
    : impl_(std::make_unique<Impl>()) {
  silence_hdf5();
  Impl& d = *impl_;
  d.dir = split_dir;
  const Manifest manifest = read_manifest(split_dir);
  check_compatible(manifest.params, expected, join_path(split_dir, kManifestName));
  d.params = expected;
  d.image_bytes = image_bytes_of(expected.resolution);
  d.ids.reserve(static_cast<std::size_t>(manifest.num_images));
  d.row_of_id.reserve(static_cast<std::size_t>(manifest.num_images));

  std::int64_t row = 0;
  for (const ShardInfo& info : manifest.shards) {
    const std::string path = join_path(split_dir, info.file);
    OpenShard shard = open_shard(path, kReaderChunkCacheBytes);
    check_compatible(shard.header.params, expected, path);
    if (shard.header.num_images != info.num_images) {
      throw DataError(path + ": holds " + std::to_string(shard.header.num_images) +
                      " images but the manifest lists " + std::to_string(info.num_images) +
                      "; re-run `shopclip prep`");
    }
    const std::size_t first = d.ids.size();
    d.ids.resize(first + static_cast<std::size_t>(info.num_images));
    if (info.num_images > 0) {
      check(H5Dread(shard.ids.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    d.ids.data() + first),
            path, "H5Dread(/image_ids)");
    }
    d.starts.push_back(row);
    d.shards.push_back(std::move(shard));
    for (std::size_t i = first; i < d.ids.size(); ++i) {
      auto [it, inserted] = d.row_of_id.emplace(d.ids[i], static_cast<std::int64_t>(i));
      if (!inserted) {
        const std::string& other = d.shards[d.shard_of(it->second)].path;
        throw DataError("image id " + std::to_string(d.ids[i]) + " appears twice: in " + other +
                        " and in " + path + "; re-run `shopclip prep`");
      }
    }
    row += info.num_images;
  }
}

ImageStore::~ImageStore() = default;

std::int64_t ImageStore::size() const {
  return static_cast<std::int64_t>(impl_->ids.size());
}

int ImageStore::resolution() const {
  return impl_->params.resolution;
}

const std::vector<std::int64_t>& ImageStore::ids() const {
  return impl_->ids;
}

std::optional<std::int64_t> ImageStore::row_of(std::int64_t image_id) const {
  auto it = impl_->row_of_id.find(image_id);
  if (it == impl_->row_of_id.end()) return std::nullopt;
  return it->second;
}

torch::Tensor ImageStore::read(const std::vector<std::int64_t>& rows) const {
  const Impl& d = *impl_;
  const std::int64_t total = size();
  for (std::int64_t row : rows) {
    if (row < 0 || row >= total) {
      throw std::out_of_range("ImageStore(" + d.dir + ")::read: row " + std::to_string(row) +
                              " out of range [0, " + std::to_string(total) + ")");
    }
  }
  const auto n = static_cast<std::int64_t>(rows.size());
  const std::int64_t res = d.params.resolution;
  if (d.all.defined()) {
    // from_blob does not copy, index_select does: the result owns its memory.
    torch::Tensor index =
        torch::from_blob(const_cast<std::int64_t*>(rows.data()), {n}, torch::kInt64);
    return d.all.index_select(0, index);
  }
  torch::Tensor out = torch::empty({n, res, res, 3}, torch::kUInt8);
  if (n == 0) return out;
  silence_hdf5();
  std::uint8_t* dst = out.data_ptr<std::uint8_t>();
  const auto image_bytes = static_cast<std::size_t>(d.image_bytes);

  // Visit requests in file order so consecutive rows become one hyperslab read and each shard's
  // chunk index is walked forwards; stable so duplicates keep their request order.
  std::vector<std::int64_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&rows](std::int64_t a, std::int64_t b) { return rows[a] < rows[b]; });

  const auto max_run =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(kMaxRunBytes / image_bytes));
  std::vector<std::uint8_t> scratch;
  std::size_t i = 0;
  while (i < order.size()) {
    const std::int64_t first_row = rows[order[i]];
    const std::size_t s = d.shard_of(first_row);
    const std::int64_t end = d.shard_end(s);
    std::int64_t last_row = first_row;
    // When the run's requests are also consecutive in the output (no duplicates), HDF5 can read
    // straight into the result; otherwise read into scratch and scatter.
    bool direct = true;
    std::size_t j = i + 1;
    for (; j < order.size(); ++j) {
      const std::int64_t row = rows[order[j]];
      if (row == last_row) {
        direct = false;
      } else if (row == last_row + 1 && row < end && row - first_row < max_run) {
        last_row = row;
        if (order[j] != order[j - 1] + 1) direct = false;
      } else {
        break;
      }
    }
    const std::int64_t count = last_row - first_row + 1;
    const std::int64_t local = first_row - d.starts[s];
    if (direct) {
      d.read_run(s, local, count, dst + static_cast<std::size_t>(order[i]) * image_bytes);
    } else {
      scratch.resize(static_cast<std::size_t>(count) * image_bytes);
      d.read_run(s, local, count, scratch.data());
      for (std::size_t k = i; k < j; ++k) {
        std::memcpy(
            dst + static_cast<std::size_t>(order[k]) * image_bytes,
            scratch.data() + static_cast<std::size_t>(rows[order[k]] - first_row) * image_bytes,
            image_bytes);
      }
    }
    i = j;
  }
  return out;
}

void ImageStore::load_all() {
  Impl& d = *impl_;
  if (d.all.defined()) return;
  silence_hdf5();
  const std::int64_t res = d.params.resolution;
  torch::Tensor all = torch::empty({size(), res, res, 3}, torch::kUInt8);
  std::uint8_t* dst = all.data_ptr<std::uint8_t>();
  for (std::size_t s = 0; s < d.shards.size(); ++s) {
    const OpenShard& shard = d.shards[s];
    if (shard.header.num_images == 0) continue;
    check(H5Dread(shard.pixels.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                  dst + static_cast<std::size_t>(d.starts[s] * d.image_bytes)),
          shard.path, "H5Dread(/pixels, whole shard)");
  }
  // Only publish once complete, so a failed load leaves the store reading from files.
  d.all = std::move(all);
}

bool ImageStore::loaded() const {
  return impl_->all.defined();
}

}  // namespace shopclip::data
