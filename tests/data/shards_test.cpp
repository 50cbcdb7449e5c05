#include "data/shards.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::read_file;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

namespace fs = std::filesystem;

constexpr int kRes = 8;
constexpr std::int64_t kImageBytes = kRes * kRes * 3;

PrepParams test_params(int resolution = kRes) {
  return prep_params(resolution);
}

// Pixel values derived from the image id, so any mix-up of rows, shards or ids shows up.
std::vector<std::uint8_t> image_for(std::int64_t id, int resolution = kRes) {
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(resolution) * resolution * 3);
  std::uint64_t state = static_cast<std::uint64_t>(id) * 0x9E3779B97F4A7C15ull + 1;
  for (auto& p : pixels) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    p = static_cast<std::uint8_t>(state >> 56);
  }
  return pixels;
}

// Writes one shard holding `ids`, appended in batches of `batch` to cross chunk boundaries.
void write_shard(const std::string& path, const std::vector<std::int64_t>& ids,
                 const PrepParams& params = test_params(), int chunk_images = 4,
                 std::size_t batch = 3) {
  ShardWriter writer(path, params, chunk_images);
  for (std::size_t i = 0; i < ids.size(); i += batch) {
    std::vector<std::int64_t> part(ids.begin() + i, ids.begin() + std::min(ids.size(), i + batch));
    std::vector<std::uint8_t> pixels;
    for (std::int64_t id : part) {
      auto image = image_for(id, params.resolution);
      pixels.insert(pixels.end(), image.begin(), image.end());
    }
    writer.append(part, pixels.data());
  }
  EXPECT_EQ(writer.finish(), static_cast<std::int64_t>(ids.size()));
}

Manifest make_manifest(const std::vector<ShardInfo>& shards, const PrepParams& params) {
  Manifest manifest;
  manifest.split = "valid";
  manifest.params = params;
  manifest.shards = shards;
  for (const auto& shard : shards)
    manifest.num_images += shard.num_images;
  manifest.num_bad_rows = 2;
  manifest.source_file = "valid_imgs.tsv";
  manifest.source_bytes = 12345;
  return manifest;
}

std::vector<std::int64_t> range_ids(std::int64_t first, std::int64_t count) {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(count));
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

// Two shards: ids 1000..1010 (11 images) and 2000..2006 (7 images).
struct TwoShardSplit {
  TempDir dir;
  std::vector<std::int64_t> ids;

  TwoShardSplit() {
    auto a = range_ids(1000, 11);
    auto b = range_ids(2000, 7);
    write_shard(dir.file("shard-00000.h5"), a);
    write_shard(dir.file("shard-00001.h5"), b);
    write_manifest(dir.path(),
                   make_manifest({{"shard-00000.h5", 11}, {"shard-00001.h5", 7}}, test_params()));
    ids = a;
    ids.insert(ids.end(), b.begin(), b.end());
  }
};

void expect_images(const torch::Tensor& images, const std::vector<std::int64_t>& expected_ids) {
  ASSERT_EQ(images.scalar_type(), torch::kUInt8);
  ASSERT_EQ(images.dim(), 4);
  ASSERT_EQ(images.size(0), static_cast<std::int64_t>(expected_ids.size()));
  ASSERT_EQ(images.size(1), kRes);
  ASSERT_EQ(images.size(2), kRes);
  ASSERT_EQ(images.size(3), 3);
  ASSERT_TRUE(images.is_contiguous());
  const std::uint8_t* data = images.data_ptr<std::uint8_t>();
  for (std::size_t i = 0; i < expected_ids.size(); ++i) {
    auto expected = image_for(expected_ids[i]);
    ASSERT_TRUE(std::equal(expected.begin(), expected.end(), data + i * kImageBytes))
        << "image " << i << " should be id " << expected_ids[i];
  }
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

// Overwrites an integer root attribute of a finished shard, as a future format would.
void set_int_attr(const std::string& path, const char* name, int value) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  EXPECT_GE(H5Awrite(attr, H5T_NATIVE_INT, &value), 0);
  H5Aclose(attr);
  H5Fclose(file);
}

// ---- check_compatible ------------------------------------------------------------------

TEST(PrepParamsTest, WhatPrepWritesAndRunsExpect) {
  const PrepParams params = prep_params(224);
  EXPECT_EQ(params.resolution, 224);
  EXPECT_EQ(params.resize, "bicubic");  // Pillow-compatible, as Chinese-CLIP's preprocessing
  EXPECT_EQ(params.color, "RGB");
}

TEST(CheckCompatibleTest, EqualParamsPass) {
  EXPECT_NO_THROW(check_compatible(test_params(), test_params(), "x"));
}

TEST(CheckCompatibleTest, ListsEveryDifferingField) {
  PrepParams found = test_params(64);
  found.color = "BGR";
  std::string message = error_of([&] { check_compatible(found, test_params(224), "valid/"); });
  EXPECT_NE(message.find("valid/: prepared with resolution=64, color=BGR but this run expects "
                         "resolution=224, color=RGB"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("re-run `shopclip prep`"), std::string::npos) << message;
  EXPECT_EQ(message.find("resize"), std::string::npos) << message;
}

// ---- ShardWriter / read_shard_header ---------------------------------------------------

TEST(ShardWriterTest, FinishRenamesAndHeaderReadsBack) {
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  write_shard(path, range_ids(5, 10));
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  ShardHeader header = read_shard_header(path);
  EXPECT_EQ(header.format_version, kShardFormatVersion);
  EXPECT_EQ(header.params, test_params());
  EXPECT_EQ(header.num_images, 10);
}

TEST(ShardWriterTest, EmptyShardIsValid) {
  TempDir dir;
  const std::string path = dir.file("empty.h5");
  write_shard(path, {});
  EXPECT_EQ(read_shard_header(path).num_images, 0);
}

TEST(ShardWriterTest, UnfinishedWriterLeavesNoFiles) {
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  {
    ShardWriter writer(path, test_params(), 4);
    auto image = image_for(1);
    writer.append({1}, image.data());
    EXPECT_TRUE(fs::exists(path + ".tmp"));
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(ShardWriterTest, TruncatesStaleTmp) {
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  write_file(path + ".tmp", "left over from a crashed run");
  write_shard(path, range_ids(0, 3));
  EXPECT_EQ(read_shard_header(path).num_images, 3);
}

TEST(ShardWriterTest, UnwritableFolderThrowsNamingFile) {
  TempDir dir;
  const std::string path = dir.file("missing/shard-00000.h5");
  try {
    ShardWriter writer(path, test_params(), 4);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(path + ".tmp"), std::string::npos) << message;
    EXPECT_NE(message.find("H5Fcreate"), std::string::npos) << message;
  }
}

TEST(ShardHeaderTest, GarbageFileIsRefused) {
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  write_file(path, "this is not an HDF5 file at all");
  std::string message = error_of([&] { read_shard_header(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("not an HDF5 file"), std::string::npos) << message;
}

TEST(ShardHeaderTest, MissingFileIsRefused) {
  TempDir dir;
  std::string message = error_of([&] { read_shard_header(dir.file("nope.h5")); });
  EXPECT_NE(message.find("nope.h5"), std::string::npos) << message;
}

TEST(ShardHeaderTest, HdfFileWithoutFormatIsRefused) {
  TempDir dir;
  const std::string path = dir.file("other.h5");
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  H5Fclose(file);
  std::string message = error_of([&] { read_shard_header(path); });
  EXPECT_NE(message.find("'format'"), std::string::npos) << message;
}

TEST(ShardHeaderTest, OtherFormatVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  write_shard(path, range_ids(0, 2));
  set_int_attr(path, "format_version", 2);
  std::string message = error_of([&] { read_shard_header(path); });
  EXPECT_NE(
      message.find(path + " was written by shard format version 2; this build reads version 1"),
      std::string::npos)
      << message;
}

// ---- manifest --------------------------------------------------------------------------

TEST(ManifestTest, RoundTrip) {
  TempDir dir;
  Manifest written = make_manifest({{"a.h5", 3}, {"b.h5", 4}}, test_params(224));
  write_manifest(dir.path(), written);
  EXPECT_FALSE(fs::exists(dir.file("manifest.json.tmp")));
  Manifest read = read_manifest(dir.path());
  EXPECT_EQ(read.format_version, kManifestFormatVersion);
  EXPECT_EQ(read.split, "valid");
  EXPECT_EQ(read.params, test_params(224));
  ASSERT_EQ(read.shards.size(), 2u);
  EXPECT_EQ(read.shards[1].file, "b.h5");
  EXPECT_EQ(read.shards[1].num_images, 4);
  EXPECT_EQ(read.num_images, 7);
  EXPECT_EQ(read.num_bad_rows, 2);
  EXPECT_EQ(read.source_file, "valid_imgs.tsv");
  EXPECT_EQ(read.source_bytes, 12345);
}

TEST(ManifestTest, WrongFormatVersionIsRefused) {
  TempDir dir;
  Manifest manifest = make_manifest({{"a.h5", 3}}, test_params());
  manifest.format_version = 2;
  write_manifest(dir.path(), manifest);
  std::string message = error_of([&] { read_manifest(dir.path()); });
  EXPECT_NE(message.find(dir.file("manifest.json")), std::string::npos) << message;
  EXPECT_NE(message.find("manifest format version 2; this build reads version 1"),
            std::string::npos)
      << message;
  // ImageStore goes through the same check.
  message = error_of([&] { ImageStore store(dir.path(), test_params()); });
  EXPECT_NE(message.find("format version 2"), std::string::npos) << message;
}

TEST(ManifestTest, WrongTypesNameTheKey) {
  TempDir dir;
  write_manifest(dir.path(), make_manifest({{"a.h5", 3}}, test_params()));
  const nlohmann::json good = nlohmann::json::parse(read_file(dir.file("manifest.json")));
  auto refused_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json bad = good;
    edit(bad);
    write_file(dir.file("manifest.json"), bad.dump());
    return error_of([&] { read_manifest(dir.path()); });
  };

  std::string message = refused_with([](auto& j) { j["params"]["resolution"] = "8"; });
  EXPECT_NE(message.find("\"params.resolution\" must be an integer"), std::string::npos) << message;
  message = refused_with([](auto& j) { j["shards"][0]["num_images"] = 3.5; });
  EXPECT_NE(message.find("\"shards[0].num_images\" must be an integer"), std::string::npos)
      << message;
  message = refused_with([](auto& j) { j["shards"][0]["file"] = "../elsewhere.h5"; });
  EXPECT_NE(message.find("\"shards[0].file\""), std::string::npos) << message;
  message = refused_with([](auto& j) { j.erase("split"); });
  EXPECT_NE(message.find("\"split\" is missing"), std::string::npos) << message;
  message = refused_with([](auto& j) { j["source"]["bytes"] = -1; });
  EXPECT_NE(message.find("\"source.bytes\" is out of range"), std::string::npos) << message;
  message = refused_with([](auto& j) { j["num_images"] = 4; });
  EXPECT_NE(message.find("\"num_images\" is 4 but the shards hold 3"), std::string::npos)
      << message;
  message = refused_with([](auto& j) { j["format"] = "something"; });
  EXPECT_NE(message.find("not a shopclip prep manifest"), std::string::npos) << message;

  write_file(dir.file("manifest.json"), "{ not json");
  message = error_of([&] { read_manifest(dir.path()); });
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
}

TEST(ManifestTest, MissingManifestNamesFile) {
  TempDir dir;
  std::string message = error_of([&] { read_manifest(dir.path()); });
  EXPECT_NE(message.find(dir.file("manifest.json")), std::string::npos) << message;
}

// ---- ImageStore ------------------------------------------------------------------------

TEST(ImageStoreTest, RoundTripInRequestedOrder) {
  TwoShardSplit split;
  ImageStore store(split.dir.path(), test_params());
  EXPECT_EQ(store.size(), 18);
  EXPECT_EQ(store.resolution(), kRes);
  EXPECT_EQ(store.ids(), split.ids);
  EXPECT_FALSE(store.loaded());

  // Everything in storage order (one run per shard, read in place).
  std::vector<std::int64_t> all_rows = range_ids(0, 18);
  expect_images(store.read(all_rows), split.ids);

  // Reversed, spanning both shards.
  std::vector<std::int64_t> rows = {17, 12, 11, 10, 3, 0};
  expect_images(store.read(rows), {2006, 2001, 2000, 1010, 1003, 1000});

  // Duplicates in one request, consecutive and not.
  rows = {4, 4, 5, 11, 4, 11, 5};
  expect_images(store.read(rows), {1004, 1004, 1005, 2000, 1004, 2000, 1005});

  // Empty request.
  torch::Tensor none = store.read({});
  EXPECT_EQ(none.sizes(), (std::vector<std::int64_t>{0, kRes, kRes, 3}));
}

TEST(ImageStoreTest, RandomOrderMatchesAndLoadAllIsIdentical) {
  TwoShardSplit split;
  ImageStore store(split.dir.path(), test_params());
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::int64_t> pick(0, store.size() - 1);
  std::vector<std::vector<std::int64_t>> requests;
  for (int r = 0; r < 20; ++r) {
    std::vector<std::int64_t> rows(1 + r % 9);
    for (auto& row : rows)
      row = pick(rng);
    requests.push_back(rows);
  }
  std::vector<std::int64_t> permutation = range_ids(0, 18);
  std::shuffle(permutation.begin(), permutation.end(), rng);
  requests.push_back(permutation);

  std::vector<torch::Tensor> from_files;
  for (const auto& rows : requests) {
    torch::Tensor images = store.read(rows);
    std::vector<std::int64_t> expected;
    for (auto row : rows)
      expected.push_back(split.ids[static_cast<std::size_t>(row)]);
    expect_images(images, expected);
    from_files.push_back(images);
  }

  store.load_all();
  EXPECT_TRUE(store.loaded());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(torch::equal(store.read(requests[i]), from_files[i])) << "request " << i;
  }
  expect_images(store.read(range_ids(0, 18)), split.ids);
}

TEST(ImageStoreTest, OutOfRangeRowsThrow) {
  TwoShardSplit split;
  ImageStore store(split.dir.path(), test_params());
  EXPECT_THROW(store.read({0, 18}), std::out_of_range);
  EXPECT_THROW(store.read({-1}), std::out_of_range);
  store.load_all();
  EXPECT_THROW(store.read({18}), std::out_of_range);
}

TEST(ImageStoreTest, RowOf) {
  TwoShardSplit split;
  ImageStore store(split.dir.path(), test_params());
  EXPECT_EQ(store.row_of(1000), 0);
  EXPECT_EQ(store.row_of(1010), 10);
  EXPECT_EQ(store.row_of(2000), 11);
  EXPECT_EQ(store.row_of(2006), 17);
  EXPECT_EQ(store.row_of(999), std::nullopt);
  EXPECT_EQ(store.row_of(3000), std::nullopt);
}

TEST(ImageStoreTest, EmptyShardInTheMiddle) {
  TempDir dir;
  write_shard(dir.file("a.h5"), range_ids(1, 2));
  write_shard(dir.file("b.h5"), {});
  write_shard(dir.file("c.h5"), range_ids(10, 3));
  write_manifest(dir.path(), make_manifest({{"a.h5", 2}, {"b.h5", 0}, {"c.h5", 3}}, test_params()));
  ImageStore store(dir.path(), test_params());
  EXPECT_EQ(store.size(), 5);
  expect_images(store.read({4, 2, 1, 0}), {12, 10, 2, 1});
}

TEST(ImageStoreTest, ExpectedParamsDifferentFromManifestAreRefused) {
  TwoShardSplit split;
  std::string message = error_of([&] { ImageStore store(split.dir.path(), test_params(16)); });
  EXPECT_NE(message.find("manifest.json: prepared with resolution=8 but this run expects "
                         "resolution=16"),
            std::string::npos)
      << message;
}

TEST(ImageStoreTest, ShardWithMismatchedParamsIsRefused) {
  TempDir dir;
  PrepParams other = test_params();
  other.resize = "bilinear";
  write_shard(dir.file("a.h5"), range_ids(0, 3));
  write_shard(dir.file("b.h5"), range_ids(3, 3), other);
  write_manifest(dir.path(), make_manifest({{"a.h5", 3}, {"b.h5", 3}}, test_params()));
  std::string message = error_of([&] { ImageStore store(dir.path(), test_params()); });
  EXPECT_NE(message.find(dir.file("b.h5") +
                         ": prepared with resize=bilinear but this run expects resize=bicubic"),
            std::string::npos)
      << message;
}

TEST(ImageStoreTest, ShardCountDifferentFromManifestIsRefused) {
  TempDir dir;
  write_shard(dir.file("a.h5"), range_ids(0, 3));
  write_manifest(dir.path(), make_manifest({{"a.h5", 4}}, test_params()));
  std::string message = error_of([&] { ImageStore store(dir.path(), test_params()); });
  EXPECT_NE(message.find("holds 3 images but the manifest lists 4"), std::string::npos) << message;
}

TEST(ImageStoreTest, GarbageShardIsRefused) {
  TempDir dir;
  write_shard(dir.file("a.h5"), range_ids(0, 3));
  write_file(dir.file("b.h5"), std::string(4096, 'x'));
  write_manifest(dir.path(), make_manifest({{"a.h5", 3}, {"b.h5", 3}}, test_params()));
  std::string message = error_of([&] { ImageStore store(dir.path(), test_params()); });
  EXPECT_NE(message.find(dir.file("b.h5")), std::string::npos) << message;
}

TEST(ImageStoreTest, DuplicateIdsAcrossShardsAreRefused) {
  TempDir dir;
  write_shard(dir.file("a.h5"), {1, 2, 3});
  write_shard(dir.file("b.h5"), {4, 2, 5});
  write_manifest(dir.path(), make_manifest({{"a.h5", 3}, {"b.h5", 3}}, test_params()));
  std::string message = error_of([&] { ImageStore store(dir.path(), test_params()); });
  EXPECT_NE(message.find("image id 2 appears twice"), std::string::npos) << message;
  EXPECT_NE(message.find(dir.file("a.h5")), std::string::npos) << message;
  EXPECT_NE(message.find(dir.file("b.h5")), std::string::npos) << message;
}

}  // namespace
}  // namespace shopclip::data
