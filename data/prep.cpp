#include "data/prep.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/image.h"
#include "data/parallel.h"
#include "data/resize.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Rows decoded per block: bounds memory (block x (base64 + pixels)) and amortises thread start.
constexpr std::size_t kBlockRows = 1024;

std::string shard_name(std::int64_t shard) {
  return fmt::format("shard-{:05d}.h5", shard);
}

// What a finished shard covers, stored beside it so a re-run can tell a finished shard of the
// same source from a stale one, and can report the shard's bad rows without decoding again.
struct ShardSidecar {
  std::int64_t first_row = 0, end_row = 0;  // index rows [first_row, end_row)
  std::int64_t first_id = 0, last_id = 0;
  std::vector<BadRow> bad;

  json to_json() const {
    json rows = json::array();
    for (const auto& b : bad)
      rows.push_back({{"line", b.line}, {"reason", b.reason}});
    return {{"first_row", first_row},
            {"end_row", end_row},
            {"first_id", first_id},
            {"last_id", last_id},
            {"bad", rows}};
  }
};

std::string sidecar_path(const std::string& shard_path) {
  return shard_path.substr(0, shard_path.size() - 3) + ".bad.json";
}

bool read_sidecar(const std::string& path, const std::string& source, ShardSidecar* out) {
  std::ifstream in(path);
  if (!in) return false;
  try {
    json j = json::parse(in);
    out->first_row = j.at("first_row").get<std::int64_t>();
    out->end_row = j.at("end_row").get<std::int64_t>();
    out->first_id = j.at("first_id").get<std::int64_t>();
    out->last_id = j.at("last_id").get<std::int64_t>();
    out->bad.clear();
    for (const auto& row : j.at("bad")) {
      out->bad.push_back(
          {source, row.at("line").get<std::int64_t>(), row.at("reason").get<std::string>()});
    }
    return true;
  } catch (const json::exception&) {
    return false;  // an unreadable sidecar means the shard is redone
  }
}

std::int64_t shard_count(std::size_t rows, int images_per_shard) {
  return static_cast<std::int64_t>((rows + images_per_shard - 1) / images_per_shard);
}

void check_options(const PrepOptions& options) {
  if (options.images_per_shard <= 0 || options.chunk_images <= 0) {
    throw std::invalid_argument("prep: images_per_shard and chunk_images must be positive");
  }
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    throw std::invalid_argument(
        fmt::format("prep: rank {} of world size {}", options.rank, options.world_size));
  }
  if (options.params.resolution < 1) throw std::invalid_argument("prep: resolution must be >= 1");
}

const char* kIndexSidecar = "index.bad.json";

// Decodes index rows [first, first + count) into the writer and returns the rows that failed.
// Three stages overlap: a reader thread fetches the next block's base64 text, the workers decode
// the current block, and a writer thread appends the previous block to the shard (HDF5 is used by
// that one thread only). done(n) is called on the calling thread after each block.
std::vector<BadRow> write_shard_rows(const PrepOptions& options, const std::vector<ImageRow>& rows,
                                     std::size_t first, std::size_t count, ShardWriter& writer,
                                     const std::function<void(std::size_t)>& done) {
  const int threads = resolve_threads(options.threads);
  const int resolution = options.params.resolution;
  const std::size_t image_bytes = static_cast<std::size_t>(resolution) * resolution * 3;
  const std::size_t end = first + count;

  auto read_block = [&](std::size_t block) {
    std::vector<std::string> texts;
    texts.reserve(kBlockRows);
    read_image_fields(options.images_tsv, rows, block, std::min(kBlockRows, end - block),
                      [&](const ImageRow&, std::string_view field) { texts.emplace_back(field); });
    return texts;
  };
  struct Decoded {
    std::vector<std::uint8_t> pixels;
    std::vector<std::int64_t> ids;
  };
  // Two buffers: one being decoded into while the other is being written.
  Decoded buffers[2];
  for (auto& buffer : buffers)
    buffer.pixels.resize(kBlockRows * image_bytes);
  std::vector<std::string> errors(kBlockRows);
  std::vector<BadRow> bad;

  std::future<std::vector<std::string>> next_fields =
      std::async(std::launch::async, read_block, first);
  std::future<void> pending_write;
  int current = 0;
  for (std::size_t block = first; block < end; block += kBlockRows) {
    const std::size_t n = std::min(kBlockRows, end - block);
    const std::vector<std::string> fields = next_fields.get();
    if (block + kBlockRows < end) {
      next_fields = std::async(std::launch::async, read_block, block + kBlockRows);
    }
    Decoded& decoded = buffers[current];
    parallel_for(0, n, threads, [&](std::size_t i) {
      errors[i].clear();
      try {
        decode_and_resize(fields[i], resolution, decoded.pixels.data() + i * image_bytes);
      } catch (const DataError& e) {
        errors[i] = e.what();
      }
    });
    // Keep the good images in file order, compacting over the bad ones.
    decoded.ids.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const ImageRow& row = rows[block + i];
      if (!errors[i].empty()) {
        bad.push_back(
            {options.images_tsv, row.line, fmt::format("image {}: {}", row.id, errors[i])});
        continue;
      }
      const std::size_t kept = decoded.ids.size();
      if (kept != i) {
        std::copy_n(decoded.pixels.data() + i * image_bytes, image_bytes,
                    decoded.pixels.data() + kept * image_bytes);
      }
      decoded.ids.push_back(row.id);
    }
    if (pending_write.valid()) pending_write.get();  // the writer is used by one thread at a time
    if (!decoded.ids.empty()) {
      pending_write = std::async(std::launch::async, [&writer, &decoded] {
        writer.append(decoded.ids, decoded.pixels.data());
      });
    }
    current ^= 1;
    done(n);
  }
  if (pending_write.valid()) pending_write.get();
  return bad;
}

}  // namespace

void decode_and_resize(std::string_view base64_field, int resolution, std::uint8_t* out) {
  std::string bytes;
  try {
    bytes = decode_base64(base64_field);
  } catch (const DataError& e) {
    throw DataError(fmt::format("corrupt base64: {}", e.what()));
  }
  const Image image = decode_image(bytes);
  if (image.width == resolution && image.height == resolution) {
    std::copy(image.rgb.begin(), image.rgb.end(), out);
    return;
  }
  const Image resized = resize_bicubic(image, resolution, resolution);
  std::copy(resized.rgb.begin(), resized.rgb.end(), out);
}

PrepResult prepare_shards(const PrepOptions& options,
                          const std::function<void(std::int64_t, std::int64_t)>& progress) {
  check_options(options);
  const auto start = std::chrono::steady_clock::now();
  PrepResult result;
  fs::create_directories(options.out_dir);

  BadRowLog index_log;
  const std::vector<ImageRow> rows = index_images_tsv(options.images_tsv, index_log);
  if (options.rank == 0) {
    // The index pass is the same on every process; one of them records its bad rows.
    ShardSidecar index_sidecar;
    index_sidecar.end_row = index_log.rows(options.images_tsv);
    index_sidecar.bad = index_log.bad_rows();
    write_file_atomic(options.out_dir + "/" + kIndexSidecar, index_sidecar.to_json().dump() + "\n");
    result.log.merge(index_log);
  }

  const std::int64_t shards = shard_count(rows.size(), options.images_per_shard);

  std::int64_t my_rows = 0, done_rows = 0;
  for (std::int64_t s = options.rank; s < shards; s += options.world_size) {
    my_rows +=
        std::min<std::int64_t>(options.images_per_shard, static_cast<std::int64_t>(rows.size()) -
                                                             s * options.images_per_shard);
  }

  for (std::int64_t s = options.rank; s < shards; s += options.world_size) {
    const std::size_t first = static_cast<std::size_t>(s) * options.images_per_shard;
    const std::size_t count = std::min<std::size_t>(options.images_per_shard, rows.size() - first);
    const std::string path = options.out_dir + "/" + shard_name(s);

    ShardSidecar sidecar;
    sidecar.first_row = static_cast<std::int64_t>(first);
    sidecar.end_row = static_cast<std::int64_t>(first + count);
    sidecar.first_id = rows[first].id;
    sidecar.last_id = rows[first + count - 1].id;

    // Skip a finished shard of the same source rows and parameters.
    ShardSidecar existing;
    if (fs::exists(path) && read_sidecar(sidecar_path(path), options.images_tsv, &existing) &&
        existing.first_row == sidecar.first_row && existing.end_row == sidecar.end_row &&
        existing.first_id == sidecar.first_id && existing.last_id == sidecar.last_id) {
      try {
        const ShardHeader header = read_shard_header(path);
        if (header.params == options.params) {
          result.images += header.num_images;
          result.shards_skipped += 1;
          for (auto& bad : existing.bad)
            result.log.add_bad(bad.file, bad.line, bad.reason);
          done_rows += static_cast<std::int64_t>(count);
          if (progress) progress(done_rows, my_rows);
          continue;
        }
      } catch (const DataError&) {
        // unreadable or other version: rewrite it below
      }
    }

    ShardWriter writer(path, options.params, options.chunk_images);
    sidecar.bad = write_shard_rows(options, rows, first, count, writer, [&](std::size_t n) {
      done_rows += static_cast<std::int64_t>(n);
      if (progress) progress(done_rows, my_rows);
    });
    // The sidecar goes first: a shard with its final name always has one.
    write_file_atomic(sidecar_path(path), sidecar.to_json().dump() + "\n");
    result.images += writer.finish();
    result.shards_written += 1;
    for (auto& bad : sidecar.bad)
      result.log.add_bad(bad.file, bad.line, bad.reason);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

Manifest finalize_prep(const PrepOptions& options, BadRowLog& log) {
  check_options(options);
  ShardSidecar index_sidecar;
  const std::string index_path = options.out_dir + "/" + kIndexSidecar;
  if (!read_sidecar(index_path, options.images_tsv, &index_sidecar)) {
    throw DataError(fmt::format("{}: missing or unreadable; run prepare_shards first", index_path));
  }
  const std::int64_t total_rows = index_sidecar.end_row;
  log.add_rows(options.images_tsv, total_rows);
  for (auto& bad : index_sidecar.bad)
    log.add_bad(bad.file, bad.line, bad.reason);
  const std::int64_t good_rows = total_rows - static_cast<std::int64_t>(index_sidecar.bad.size());

  Manifest manifest;
  manifest.split = options.split;
  manifest.params = options.params;
  manifest.source_file = options.images_tsv;
  manifest.source_bytes = static_cast<std::int64_t>(fs::file_size(options.images_tsv));
  const std::int64_t shards =
      shard_count(static_cast<std::size_t>(good_rows), options.images_per_shard);
  for (std::int64_t s = 0; s < shards; ++s) {
    const std::string name = shard_name(s);
    const std::string path = options.out_dir + "/" + name;
    if (!fs::exists(path)) {
      throw DataError(
          fmt::format("{}: shard {} is missing; did every process finish?", options.out_dir, name));
    }
    const ShardHeader header = read_shard_header(path);
    check_compatible(header.params, options.params, path);
    ShardSidecar sidecar;
    if (!read_sidecar(sidecar_path(path), options.images_tsv, &sidecar)) {
      throw DataError(fmt::format("{}: its bad-row sidecar is missing", path));
    }
    for (auto& bad : sidecar.bad)
      log.add_bad(bad.file, bad.line, bad.reason);
    manifest.shards.push_back({name, header.num_images});
    manifest.num_images += header.num_images;
  }
  manifest.num_bad_rows = log.bad_count(options.images_tsv);
  log.write_report(options.out_dir + "/bad_rows.jsonl");
  write_manifest(options.out_dir, manifest);
  return manifest;
}

}  // namespace shopclip::data
