#include "data/prep.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/image.h"
#include "data/resize.h"
#include "data/shards.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::read_file;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

namespace fs = std::filesystem;

constexpr int kRes = 16;
constexpr std::size_t kImageBytes = kRes * kRes * 3;

// A textured image whose content depends on `seed`, so swapped images would be noticed.
Image test_image(int width, int height, int seed) {
  Image image{width, height,
              std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      std::uint8_t* p = &image.rgb[(static_cast<std::size_t>(y) * width + x) * 3];
      p[0] = static_cast<std::uint8_t>((x * 255) / std::max(1, width - 1));
      p[1] = static_cast<std::uint8_t>((y * 255) / std::max(1, height - 1));
      p[2] = static_cast<std::uint8_t>((seed * 37 + x * y * 3) % 256);
    }
  }
  return image;
}

// A JPEG cut inside its Huffman tables, shortly before the start of scan: the kind of cut that
// used to leave TurboJPEG's decompressor mid-stream (see AFailedJpegLeavesLaterDecodesIntact).
std::string cut_inside_headers(const std::string& jpeg) {
  const std::size_t start_of_scan = jpeg.find("\xFF\xDA");
  EXPECT_NE(start_of_scan, std::string::npos);
  EXPECT_GT(start_of_scan, 200u);
  return jpeg.substr(0, start_of_scan - 50);
}

PrepParams params_at(int resolution) {
  PrepParams params;
  params.resolution = resolution;
  return params;
}

// One row of the test images file: what it holds and what prep should make of it.
struct SourceRow {
  std::int64_t id = 0;
  std::string field;  // the base64 column
  bool good = false;  // should land in a shard
  Image original;     // the encoded image (PNG sources are lossless)
  bool is_png = false;
};

// An images file of 11 lines: 7 good images (JPEG and PNG, some already 16x16) between
// 4 bad rows. Index rows (lines with a tab) are 10, so with 3 images per shard the shards
// cover rows {101,102,103} {104,106,107} {108,109,110} {111}.
struct SourceFile {
  TempDir dir;
  std::string tsv;
  std::vector<SourceRow> rows;  // in file order, the no-tab line included
  std::vector<std::int64_t> good_ids;
  // Expected bad rows: line -> parts of its reason.
  std::map<std::int64_t, std::vector<std::string>> bad;

  SourceFile() : tsv(dir.file("valid_imgs.tsv")) {
    const std::string half_jpeg = [] {
      const std::string jpeg = encode_jpeg(test_image(48, 40, 9), 90);
      return jpeg.substr(0, jpeg.size() / 2);
    }();
    auto jpeg_row = [](std::int64_t id, int w, int h) {
      SourceRow row{id, "", true, test_image(w, h, static_cast<int>(id)), false};
      row.field = encode_base64(encode_jpeg(row.original, 92));
      return row;
    };
    auto png_row = [](std::int64_t id, int w, int h) {
      SourceRow row{id, "", true, test_image(w, h, static_cast<int>(id)), true};
      row.field = encode_base64(encode_png(row.original));
      return row;
    };
    rows = {
        jpeg_row(101, 40, 30),                                                 // line 1
        {102, "abc$def=", false, {}, false},                                   // line 2
        png_row(103, 20, 24),                                                  // line 3
        {104, encode_base64("hello, not an image at all"), false, {}, false},  // line 4
        {105, "", false, {}, false},                                           // line 5: no tab
        png_row(106, kRes, kRes),                                              // line 6
        {107, encode_base64(half_jpeg), false, {}, false},                     // line 7
        jpeg_row(108, 50, 50),                                                 // line 8
        png_row(109, 33, 17),                                                  // line 9
        jpeg_row(110, kRes, kRes),                                             // line 10
        png_row(111, 8, 8),                                                    // line 11
    };
    std::string text;
    for (const auto& row : rows) {
      if (row.id == 105) {
        text += "105 QUJD\n";
      } else {
        text += std::to_string(row.id) + "\t" + row.field + "\n";
      }
      if (row.good) good_ids.push_back(row.id);
    }
    write_file(tsv, text);
    bad = {{2, {"image 102", "corrupt base64"}},
           {4, {"image 104", "not a JPEG or PNG image"}},
           {5, {"no tab"}},
           {7, {"image 107", "truncated JPEG"}}};
  }

  PrepOptions options(const std::string& out_dir, int resolution = kRes) const {
    PrepOptions o;
    o.images_tsv = tsv;
    o.out_dir = out_dir;
    o.split = "valid";
    o.params = params_at(resolution);
    o.images_per_shard = 3;
    o.chunk_images = 2;
    o.threads = 2;
    return o;
  }
};

std::vector<std::string> shard_files() {
  return {"shard-00000.h5", "shard-00001.h5", "shard-00002.h5", "shard-00003.h5"};
}

void expect_bad_rows(const std::vector<BadRow>& rows, const SourceFile& source) {
  std::vector<BadRow> sorted = rows;
  std::sort(sorted.begin(), sorted.end(),
            [](const BadRow& a, const BadRow& b) { return a.line < b.line; });
  ASSERT_EQ(sorted.size(), source.bad.size());
  auto expected = source.bad.begin();
  for (const BadRow& row : sorted) {
    EXPECT_EQ(row.file, source.tsv);
    EXPECT_EQ(row.line, expected->first);
    for (const auto& part : expected->second)
      EXPECT_TRUE(Contains(row.reason, part)) << "line " << row.line;
    ++expected;
  }
}

std::vector<std::string> tmp_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= 4 && name.substr(name.size() - 4) == ".tmp") names.push_back(name);
  }
  return names;
}

torch::Tensor read_everything(const ImageStore& store) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(store.size()));
  for (std::size_t i = 0; i < rows.size(); ++i)
    rows[i] = static_cast<std::int64_t>(i);
  return store.read(rows);
}

struct FileStamp {
  ino_t inode = 0;
  fs::file_time_type mtime;
  bool operator==(const FileStamp& o) const { return inode == o.inode && mtime == o.mtime; }
};

// Inode and mtime: a shard rewritten via .tmp + rename always gets a new inode, even if the
// clock did not move.
FileStamp stamp(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return {info.st_ino, fs::last_write_time(path)};
}

TEST(DecodeAndResizeTest, ReportsWhatIsWrong) {
  std::vector<std::uint8_t> out(kImageBytes);
  try {
    decode_and_resize("ab$d", kRes, out.data());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "corrupt base64"));
  }
  try {
    decode_and_resize(encode_base64("GIF89a not supported"), kRes, out.data());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "not a JPEG or PNG image"));
  }
}

TEST(DecodeAndResizeTest, AFailedJpegLeavesLaterDecodesIntact) {
  const std::string jpeg = encode_base64(encode_jpeg(test_image(40, 30, 2), 90));
  std::vector<std::uint8_t> before(kImageBytes), after(kImageBytes);
  decode_and_resize(jpeg, kRes, before.data());
  const std::string raw = encode_jpeg(test_image(40, 30, 3), 90);
  for (const std::string& cut : {cut_inside_headers(raw), raw.substr(0, raw.size() / 2)}) {
    EXPECT_THROW(decode_and_resize(encode_base64(cut), kRes, after.data()), DataError);
    decode_and_resize(jpeg, kRes, after.data());
    EXPECT_EQ(after, before) << "after a JPEG cut at " << cut.size();
  }
}

TEST(DecodeAndResizeTest, ResizesBicubicAndCopiesTargetSize) {
  const Image big = test_image(37, 21, 3);
  std::vector<std::uint8_t> out(kImageBytes);
  decode_and_resize(encode_base64(encode_png(big)), kRes, out.data());
  EXPECT_EQ(out, resize_bicubic(big, kRes, kRes).rgb);
  const Image exact = test_image(kRes, kRes, 4);
  decode_and_resize(encode_base64(encode_png(exact)), kRes, out.data());
  EXPECT_EQ(out, exact.rgb);
}

TEST(PrepTest, GoodImagesLandInShardsInFileOrderWithExactPixels) {
  SourceFile source;
  TempDir out;
  const PrepOptions options = source.options(out.path());
  std::int64_t last_done = -1, last_total = -1;
  const PrepResult result = prepare_shards(options, [&](std::int64_t done, std::int64_t total) {
    EXPECT_GT(done, last_done);  // progress only moves forwards
    last_done = done;
    last_total = total;
  });
  EXPECT_EQ(last_done, 10);  // every index row of this process's shards
  EXPECT_EQ(last_total, 10);
  EXPECT_EQ(result.images, 7);
  EXPECT_EQ(result.shards_written, 4);
  EXPECT_EQ(result.shards_skipped, 0);
  expect_bad_rows(result.log.bad_rows(), source);

  BadRowLog log;
  const Manifest manifest = finalize_prep(options, log);
  EXPECT_TRUE(tmp_files(out.path()).empty());

  ImageStore store(out.path(), options.params);
  ASSERT_EQ(store.ids(), source.good_ids);
  const torch::Tensor pixels = read_everything(store);
  ASSERT_EQ(pixels.sizes(), (std::vector<std::int64_t>{7, kRes, kRes, 3}));
  const std::uint8_t* data = pixels.data_ptr<std::uint8_t>();
  std::size_t r = 0;
  for (const SourceRow& row : source.rows) {
    if (!row.good) continue;
    std::vector<std::uint8_t> expected(kImageBytes);
    decode_and_resize(row.field, kRes, expected.data());
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), data + r * kImageBytes))
        << "image " << row.id;
    if (row.is_png) {
      // Lossless source: the stored pixels are exactly the bicubic resize of the original (or
      // the original itself when it already has the target size).
      const std::vector<std::uint8_t> reference =
          row.original.width == kRes && row.original.height == kRes
              ? row.original.rgb
              : resize_bicubic(row.original, kRes, kRes).rgb;
      EXPECT_TRUE(std::equal(reference.begin(), reference.end(), data + r * kImageBytes))
          << "image " << row.id;
    }
    if (row.id == 110) {
      // A JPEG already at the target size: the decoded pixels, not resampled.
      const Image decoded = decode_image(decode_base64(row.field));
      EXPECT_TRUE(std::equal(decoded.rgb.begin(), decoded.rgb.end(), data + r * kImageBytes));
    }
    ++r;
  }
}

TEST(PrepTest, ManifestShardLayoutAndBadRowReport) {
  SourceFile source;
  TempDir out;
  const PrepOptions options = source.options(out.path());
  prepare_shards(options);
  BadRowLog log;
  const Manifest manifest = finalize_prep(options, log);

  EXPECT_EQ(manifest.split, "valid");
  EXPECT_EQ(manifest.params, options.params);
  EXPECT_EQ(manifest.num_images, 7);
  EXPECT_EQ(manifest.num_bad_rows, 4);
  EXPECT_EQ(manifest.source_file, source.tsv);
  EXPECT_EQ(manifest.source_bytes, static_cast<std::int64_t>(fs::file_size(source.tsv)));
  ASSERT_EQ(manifest.shards.size(), 4u);
  const std::vector<std::int64_t> per_shard = {2, 1, 3, 1};  // 3 index rows each, minus bad ones
  for (std::size_t s = 0; s < 4; ++s) {
    EXPECT_EQ(manifest.shards[s].file, shard_files()[s]);
    EXPECT_EQ(manifest.shards[s].num_images, per_shard[s]);
    const ShardHeader header = read_shard_header(out.file(shard_files()[s]));
    EXPECT_EQ(header.num_images, per_shard[s]);
    EXPECT_EQ(header.params, options.params);
  }
  EXPECT_FALSE(fs::exists(out.file("shard-00004.h5")));

  // The manifest on disk says the same.
  const Manifest on_disk = read_manifest(out.path());
  EXPECT_EQ(on_disk.num_images, 7);
  EXPECT_EQ(on_disk.num_bad_rows, 4);
  EXPECT_EQ(on_disk.shards.size(), 4u);

  EXPECT_EQ(log.rows(source.tsv), 11);
  EXPECT_EQ(log.bad_count(source.tsv), 4);
  expect_bad_rows(log.bad_rows(), source);

  // bad_rows.jsonl lists the same rows as JSON lines.
  const std::string report = read_file(out.file("bad_rows.jsonl"));
  std::vector<BadRow> reported;
  std::size_t start = 0;
  for (std::size_t end; (end = report.find('\n', start)) != std::string::npos; start = end + 1) {
    const auto line = nlohmann::json::parse(report.substr(start, end - start));
    reported.push_back({line.at("file").get<std::string>(), line.at("line").get<std::int64_t>(),
                        line.at("reason").get<std::string>()});
  }
  EXPECT_EQ(start, report.size());
  expect_bad_rows(reported, source);
}

TEST(PrepTest, RerunSkipsFinishedShardsAndStillReportsTheirBadRows) {
  SourceFile source;
  TempDir out;
  const PrepOptions options = source.options(out.path());
  prepare_shards(options);
  std::vector<FileStamp> before;
  for (const auto& name : shard_files())
    before.push_back(stamp(out.file(name)));

  const PrepResult again = prepare_shards(options);
  EXPECT_EQ(again.shards_skipped, 4);
  EXPECT_EQ(again.shards_written, 0);
  EXPECT_EQ(again.images, 7);
  expect_bad_rows(again.log.bad_rows(), source);
  for (std::size_t s = 0; s < 4; ++s) {
    EXPECT_TRUE(stamp(out.file(shard_files()[s])) == before[s]) << shard_files()[s];
  }

  BadRowLog log;
  const Manifest manifest = finalize_prep(options, log);
  EXPECT_EQ(manifest.num_images, 7);
  expect_bad_rows(log.bad_rows(), source);
  EXPECT_TRUE(tmp_files(out.path()).empty());
}

TEST(PrepTest, RerunRewritesOnlyAMissingShard) {
  SourceFile source;
  TempDir out;
  const PrepOptions options = source.options(out.path());
  prepare_shards(options);
  const FileStamp kept = stamp(out.file("shard-00000.h5"));
  fs::remove(out.file("shard-00002.h5"));  // e.g. a process died before renaming it
  const PrepResult again = prepare_shards(options);
  EXPECT_EQ(again.shards_written, 1);
  EXPECT_EQ(again.shards_skipped, 3);
  EXPECT_EQ(again.images, 7);
  EXPECT_TRUE(stamp(out.file("shard-00000.h5")) == kept);
  BadRowLog log;
  EXPECT_EQ(finalize_prep(options, log).num_images, 7);
  ImageStore store(out.path(), options.params);
  EXPECT_EQ(store.ids(), source.good_ids);
}

TEST(PrepTest, ChangedResolutionRewritesEveryShard) {
  SourceFile source;
  TempDir out;
  prepare_shards(source.options(out.path()));
  std::vector<FileStamp> before;
  for (const auto& name : shard_files())
    before.push_back(stamp(out.file(name)));

  const PrepOptions options12 = source.options(out.path(), 12);
  const PrepResult result = prepare_shards(options12);
  EXPECT_EQ(result.shards_written, 4);
  EXPECT_EQ(result.shards_skipped, 0);
  for (std::size_t s = 0; s < 4; ++s) {
    EXPECT_FALSE(stamp(out.file(shard_files()[s])) == before[s]) << shard_files()[s];
    EXPECT_EQ(read_shard_header(out.file(shard_files()[s])).params.resolution, 12);
  }
  BadRowLog log;
  EXPECT_EQ(finalize_prep(options12, log).params.resolution, 12);
  ImageStore store(out.path(), params_at(12));
  EXPECT_EQ(store.ids(), source.good_ids);
  EXPECT_THROW(ImageStore(out.path(), params_at(kRes)), DataError);
  // Pixels follow the new resolution.
  std::vector<std::uint8_t> expected(12 * 12 * 3);
  decode_and_resize(source.rows[0].field, 12, expected.data());
  const torch::Tensor first = store.read({0});
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), first.data_ptr<std::uint8_t>()));
}

TEST(PrepTest, TwoRanksOneAfterTheOtherEqualOneProcess) {
  SourceFile source;
  TempDir single_dir, split_dir;
  const PrepOptions single = source.options(single_dir.path());
  prepare_shards(single);
  BadRowLog single_log;
  const Manifest single_manifest = finalize_prep(single, single_log);

  PrepOptions rank0 = source.options(split_dir.path());
  rank0.world_size = 2;
  PrepOptions rank1 = rank0;
  rank1.rank = 1;
  const PrepResult result0 = prepare_shards(rank0);
  EXPECT_EQ(result0.shards_written, 2);  // shards 0 and 2
  EXPECT_EQ(result0.images, 2 + 3);
  EXPECT_TRUE(fs::exists(split_dir.file("shard-00000.h5")));
  EXPECT_TRUE(fs::exists(split_dir.file("shard-00002.h5")));
  EXPECT_FALSE(fs::exists(split_dir.file("shard-00001.h5")));

  // Finalizing before every process is done names the missing shard.
  BadRowLog early_log;
  try {
    finalize_prep(rank0, early_log);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "shard-00001.h5"));
  }

  const PrepResult result1 = prepare_shards(rank1);
  EXPECT_EQ(result1.shards_written, 2);  // shards 1 and 3
  EXPECT_EQ(result1.images, 1 + 1);
  // The index pass's bad row (line 5) is recorded once, by rank 0; each rank has its shards'.
  std::vector<BadRow> both = result0.log.bad_rows();
  both.insert(both.end(), result1.log.bad_rows().begin(), result1.log.bad_rows().end());
  expect_bad_rows(both, source);

  BadRowLog split_log;
  const Manifest split_manifest = finalize_prep(rank0, split_log);
  EXPECT_EQ(split_manifest.num_images, single_manifest.num_images);
  EXPECT_EQ(split_manifest.num_bad_rows, single_manifest.num_bad_rows);
  ASSERT_EQ(split_manifest.shards.size(), single_manifest.shards.size());
  for (std::size_t s = 0; s < split_manifest.shards.size(); ++s) {
    EXPECT_EQ(split_manifest.shards[s].file, single_manifest.shards[s].file);
    EXPECT_EQ(split_manifest.shards[s].num_images, single_manifest.shards[s].num_images);
  }
  EXPECT_EQ(read_file(split_dir.file("bad_rows.jsonl")),
            read_file(single_dir.file("bad_rows.jsonl")));
  expect_bad_rows(split_log.bad_rows(), source);

  ImageStore single_store(single_dir.path(), single.params);
  ImageStore split_store(split_dir.path(), single.params);
  EXPECT_EQ(split_store.ids(), single_store.ids());
  EXPECT_TRUE(torch::equal(read_everything(split_store), read_everything(single_store)));
  EXPECT_TRUE(tmp_files(split_dir.path()).empty());
}

// A JPEG cut inside its headers once left the decoding thread's TurboJPEG handle mid-stream,
// so every later JPEG on that thread failed as "corrupt"; one bad row must stay one bad row.
TEST(PrepTest, AJpegCutInsideItsHeadersDoesNotSpoilLaterImages) {
  TempDir dir;
  const std::string tsv = dir.file("train_imgs.tsv");
  const std::string jpeg = encode_jpeg(test_image(40, 30, 1), 90);
  std::string text = "1\t" + encode_base64(cut_inside_headers(jpeg)) + "\n";
  for (int id = 2; id <= 4; ++id)
    text +=
        std::to_string(id) + "\t" + encode_base64(encode_jpeg(test_image(30, 20, id), 90)) + "\n";
  write_file(tsv, text);
  PrepOptions options;
  options.images_tsv = tsv;
  options.out_dir = dir.file("out");
  options.split = "train";
  options.params = params_at(kRes);
  options.threads = 1;  // every row decoded on the same thread
  const PrepResult result = prepare_shards(options);
  EXPECT_EQ(result.images, 3);
  ASSERT_EQ(result.log.bad_rows().size(), 1u);
  EXPECT_EQ(result.log.bad_rows()[0].line, 1);
  EXPECT_TRUE(Contains(result.log.bad_rows()[0].reason, "truncated JPEG"));
}

TEST(PrepTest, BadOptionsAreRejected) {
  SourceFile source;
  TempDir out;
  PrepOptions options = source.options(out.path());
  options.rank = 2;
  options.world_size = 2;
  EXPECT_THROW(prepare_shards(options), std::invalid_argument);
  options = source.options(out.path());
  options.images_per_shard = 0;
  EXPECT_THROW(prepare_shards(options), std::invalid_argument);
  options = source.options(out.path());
  BadRowLog log;
  EXPECT_THROW(finalize_prep(options, log), DataError);  // nothing prepared yet
}

}  // namespace
}  // namespace shopclip::data
