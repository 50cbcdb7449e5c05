#include "data/check.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/image.h"
#include "data/muge.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::random_image;
using shopclip::test_support::read_file;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

using ImageRows = std::vector<std::pair<std::int64_t, std::string>>;  // id, base64

std::string jpeg_bytes(int width, int height, unsigned seed) {
  return encode_jpeg(random_image(width, height, seed), 90);
}

std::string jpeg_base64(int width, int height, unsigned seed) {
  return encode_base64(jpeg_bytes(width, height, seed));
}

Query query(std::int64_t id, std::string text, std::vector<std::int64_t> image_ids) {
  Query q;
  q.id = id;
  q.text = std::move(text);
  q.image_ids = std::move(image_ids);
  return q;
}

// A small clean MUGE dataset: train and valid in the Chinese-CLIP schema, test in the Tianchi
// schema (so both readers' layouts are covered), 48x48 JPEGs.
struct CleanDataset {
  ImageRows train_images, valid_images, test_images;
  std::vector<Query> train_queries, valid_queries, test_queries;

  CleanDataset() {
    for (int i = 0; i < 4; ++i)
      train_images.emplace_back(101 + i, jpeg_base64(48, 48, 1 + i));
    for (int i = 0; i < 3; ++i)
      valid_images.emplace_back(201 + i, jpeg_base64(48, 40, 11 + i));
    for (int i = 0; i < 2; ++i)
      test_images.emplace_back(301 + i, jpeg_base64(40, 48, 21 + i));
    train_queries = {query(1, "红色连衣裙", {101}), query(2, "高级感托特包斜挎", {102, 103}),
                     query(3, "男士运动鞋", {104})};
    valid_queries = {query(11, "蓝色牛仔裤", {201}), query(12, "儿童保温杯", {202, 203})};
    test_queries = {query(21, "无线蓝牙耳机", {}), query(22, "复古手表", {})};
  }

  void write(const TempDir& dir) const {
    write_images_tsv(dir.file("train_imgs.tsv"), train_images);
    write_images_tsv(dir.file("valid_imgs.tsv"), valid_images);
    write_images_tsv(dir.file("test_imgs.tsv"), test_images);
    write_queries(dir.file("train_texts.jsonl"), QuerySchema::kChineseClip, train_queries);
    write_queries(dir.file("valid_texts.jsonl"), QuerySchema::kChineseClip, valid_queries);
    write_queries(dir.file("test_queries.jsonl"), QuerySchema::kTianchi, test_queries);
  }
};

std::string dump_findings(const CheckReport& report) {
  return report.to_text(0);
}

// Rewrites a JPEG's frame header (SOF0) to claim width x height; JPEG headers carry no checksum.
std::string with_jpeg_size(std::string jpeg, int width, int height) {
  for (std::size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (static_cast<unsigned char>(jpeg[i]) == 0xFF &&
        static_cast<unsigned char>(jpeg[i + 1]) == 0xC0) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 0xFF);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 0xFF);
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF0 marker";
  return jpeg;
}

// Appends raw lines (which the writers could not produce) to a file.
void append_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string text = read_file(path);
  for (const auto& line : lines)
    text += line + "\n";
  write_file(path, text);
}

struct Expected {
  std::string file;
  std::int64_t line;
  Severity severity;
};

// ---- content hash ----------------------------------------------------------------------------

// libxxhash's XXH64 (seed 0) replaced a hand-written copy of XXH64. The expected values are what
// that copy returned (computed with it before it was deleted), across every branch of the
// algorithm: empty, under 4, under 8, under 32 bytes (no stripes), exactly 32, and several
// stripes with 8-, 4- and 1-byte tails. Equal values mean equal duplicate and leak findings.
TEST(ContentHashTest, EqualsTheHandWrittenXxh64ItReplaced) {
  EXPECT_EQ(content_hash(""), 0xef46db3751d8e999ULL);  // XXH64's published empty-input value
  EXPECT_EQ(content_hash("a"), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(content_hash("abc"), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(content_hash("shopclip"), 0x71b51337bdceb145ULL);
  EXPECT_EQ(content_hash("红色 连衣裙"), 0x5d664df82d53a2d2ULL);
  EXPECT_EQ(content_hash("The quick brown fox jumps over the lazy dog"), 0x0b242d361fda71bcULL);
  std::string bytes;
  for (int i = 0; i < 1000; ++i)
    bytes += static_cast<char>((i * 131 + 7) & 0xFF);
  const std::vector<std::pair<std::size_t, std::uint64_t>> prefixes = {
      {1, 0xa96c7f0ce858bbb7ULL},   {3, 0xbed43740ee6332bbULL},  {4, 0xfa212ae44b3bb23dULL},
      {7, 0x2744460dd675d2c0ULL},   {8, 0x994b676b71ce94ddULL},  {12, 0xb92f588ce720786eULL},
      {31, 0x6711d55e306b5d8fULL},  {32, 0x07f7b8e3bc5d6e25ULL}, {33, 0x09f85eeb4e1cbe9fULL},
      {63, 0xb7c9968c066cb6a5ULL},  {64, 0x50d4159a0411632eULL}, {100, 0x9ddada11d3dc2d8fULL},
      {1000, 0x0bf0bdbcc82eb373ULL}};
  for (const auto& [size, expected] : prefixes) {
    EXPECT_EQ(content_hash(std::string_view(bytes).substr(0, size)), expected) << size << " bytes";
  }
}

// ---- clean data ------------------------------------------------------------------------------

TEST(CheckDatasetTest, CleanDatasetHasNoFindings) {
  TempDir dir;
  CleanDataset().write(dir);
  const CheckReport report = check_dataset(dir.path(), CheckOptions{});
  EXPECT_TRUE(report.findings.empty()) << dump_findings(report);
  EXPECT_EQ(report.errors(), 0);
  EXPECT_EQ(report.warnings(), 0);
  EXPECT_EQ(report.exit_status(), 0);
  ASSERT_EQ(report.splits.size(), 3u);
  EXPECT_EQ(report.splits[0].split, "train");
  EXPECT_EQ(report.splits[0].images, 4);
  EXPECT_EQ(report.splits[0].queries, 3);
  EXPECT_EQ(report.splits[1].split, "valid");
  EXPECT_EQ(report.splits[1].images, 3);
  EXPECT_EQ(report.splits[2].split, "test");
  EXPECT_EQ(report.splits[2].queries, 2);
  EXPECT_TRUE(Contains(report.to_text(), "0 errors, 0 warnings"));
}

TEST(CheckDatasetTest, ChecksOnlyTheSplitsPresent) {
  TempDir dir;
  const CleanDataset data;
  write_images_tsv(dir.file("valid_imgs.tsv"), data.valid_images);
  write_queries(dir.file("valid_queries.jsonl"), QuerySchema::kTianchi, data.valid_queries);
  const CheckReport report = check_dataset(dir.path(), CheckOptions{});
  EXPECT_TRUE(report.findings.empty()) << dump_findings(report);
  ASSERT_EQ(report.splits.size(), 1u);
  EXPECT_EQ(report.splits[0].split, "valid");
}

TEST(CheckDatasetTest, FolderWithoutSplitFilesThrowsNamingIt) {
  TempDir dir;
  write_file(dir.file("notes.txt"), "nothing here\n");
  try {
    check_dataset(dir.path(), CheckOptions{});
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), dir.path()));
  }
  EXPECT_THROW(check_dataset(dir.file("no-such-folder"), CheckOptions{}), DataError);
}

TEST(CheckDatasetTest, RejectsNonsensicalOptions) {
  TempDir dir;
  CleanDataset().write(dir);
  CheckOptions options;
  options.max_aspect = 0.5;
  EXPECT_THROW(check_dataset(dir.path(), options), std::invalid_argument);
  options = CheckOptions{};
  options.min_side = 100;
  options.max_side = 50;
  EXPECT_THROW(check_dataset(dir.path(), options), std::invalid_argument);
}

// ---- one planted problem of every kind --------------------------------------------------------

// The clean dataset plus one instance of each problem, with where it must be reported.
struct CorruptedDataset {
  std::map<std::string, Expected> expected;  // code -> where
  CheckOptions options;

  explicit CorruptedDataset(const TempDir& dir) {
    options.max_side = 256;  // so that "too large" needs no big (slow) image
    CleanDataset data;
    const std::string train_tsv = dir.file("train_imgs.tsv");
    const std::string valid_tsv = dir.file("valid_imgs.tsv");
    const std::string train_texts = dir.file("train_texts.jsonl");
    const std::string valid_texts = dir.file("valid_texts.jsonl");
    auto error = [&](const std::string& code, const std::string& file, std::int64_t line) {
      expected[code] = Expected{file, line, Severity::kError};
    };
    auto warning = [&](const std::string& code, const std::string& file, std::int64_t line) {
      expected[code] = Expected{file, line, Severity::kWarning};
    };

    // train images: lines 1-4 are the clean ones (101..104).
    const std::string jpeg = jpeg_bytes(48, 48, 60);
    std::string warned = jpeg;  // junk before EOI: libjpeg decodes it only with a warning
    warned.insert(warned.size() - 2, std::string(16, '\x01'));
    auto& images = data.train_images;
    images.emplace_back(101, jpeg_base64(48, 48, 50));  // line 5
    error("image-duplicate-id", train_tsv, 5);
    images.emplace_back(105, "@@not base64@@");  // line 6
    error("image-bad-base64", train_tsv, 6);
    images.emplace_back(106, encode_base64("GIF89a, not a product photo"));  // line 7
    error("image-not-image", train_tsv, 7);
    images.emplace_back(107, encode_base64(jpeg.substr(0, jpeg.size() / 2)));  // line 8
    error("image-truncated", train_tsv, 8);
    images.emplace_back(108, encode_base64(warned));  // line 9
    error("image-corrupt", train_tsv, 9);
    images.emplace_back(109, encode_base64(with_jpeg_size(jpeg, 20000, 20000)));  // line 10
    error("image-bad-dimensions", train_tsv, 10);
    images.emplace_back(110, jpeg_base64(16, 40, 61));  // line 11
    warning("image-too-small", train_tsv, 11);
    images.emplace_back(111, jpeg_base64(300, 100, 62));  // line 12
    warning("image-too-large", train_tsv, 12);
    images.emplace_back(112, jpeg_base64(200, 32, 63));  // line 13: 6.25 : 1
    warning("image-extreme-aspect", train_tsv, 13);
    images.emplace_back(113, data.train_images[1].second);  // line 14: the bytes of 102
    warning("image-duplicate-content", train_tsv, 14);
    images.emplace_back(114, "");  // line 15
    error("tsv-empty-field", train_tsv, 15);
    write_images_tsv(train_tsv, images);
    append_lines(train_tsv, {"115 " + jpeg_base64(48, 48, 64),        // line 16
                             "", "x7\t" + jpeg_base64(48, 48, 65)});  // 17 blank, 18
    error("tsv-no-tab", train_tsv, 16);
    error("tsv-bad-id", train_tsv, 18);

    // valid images: 201..203, then the bytes of train image 101 under a new id (line 4).
    data.valid_images.emplace_back(204, data.train_images[0].second);
    warning("leak-image", valid_tsv, 4);

    // train queries: lines 1-3 clean.
    auto& queries = data.train_queries;
    queries.push_back(query(1, "重复编号", {101}));  // line 4
    error("query-duplicate-id", train_texts, 4);
    queries.push_back(query(4, " \u3000 ", {101}));  // line 5
    error("query-empty-text", train_texts, 5);
    std::string long_text;
    for (int i = 0; i < 65; ++i)
      long_text += "长";
    queries.push_back(query(5, long_text, {102}));  // line 6
    warning("query-too-long", train_texts, 6);
    queries.push_back(query(6, "没有图片的查询", {}));  // line 7
    error("query-no-images", train_texts, 7);
    queries.push_back(query(7, "找不到的图片", {102, 999}));  // line 8
    error("query-unknown-image", train_texts, 8);
    queries.push_back(query(8, "重复图片", {103, 103}));  // line 9
    error("query-repeated-image", train_texts, 9);
    // Pointing at bad images is not reported again: the images are (lines 10).
    queries.push_back(query(9, "坏图片", {105, 106, 114}));
    write_queries(train_texts, QuerySchema::kChineseClip, queries);
    append_lines(train_texts,
                 {"{\"text_id\": 10, \"text\": \"\xff\xfe\", \"image_ids\": [101]}",        // 11
                  "this is not JSON",                                                       // 12
                  "{\"text_id\": 11, \"image_ids\": [101]}",                                // 13
                  "{\"text_id\": \"12\", \"text\": \"字符串编号\", \"image_ids\": [101]}",  // 14
                  "{\"text_id\": 13, \"text\": 42, \"image_ids\": [101]}"});                // 15
    error("query-invalid-utf8", train_texts, 11);
    error("query-not-json", train_texts, 12);
    error("query-missing-field", train_texts, 13);
    error("query-bad-id", train_texts, 14);
    error("query-bad-field", train_texts, 15);

    // valid queries: a train query's text again, with spaces around it (line 3).
    data.valid_queries.push_back(query(13, "  红色连衣裙 ", {203}));
    warning("leak-query", valid_texts, 3);

    write_images_tsv(valid_tsv, data.valid_images);
    write_queries(valid_texts, QuerySchema::kChineseClip, data.valid_queries);
    write_images_tsv(dir.file("test_imgs.tsv"), data.test_images);
    write_queries(dir.file("test_queries.jsonl"), QuerySchema::kTianchi, data.test_queries);
  }
};

TEST(CheckDatasetTest, FindsEveryPlantedProblemExactlyOnce) {
  TempDir dir;
  const CorruptedDataset data(dir);
  const CheckReport report = check_dataset(dir.path(), data.options);
  const std::string all = dump_findings(report);

  std::map<std::string, int> seen;
  for (const auto& finding : report.findings) {
    ++seen[finding.code];
    const auto it = data.expected.find(finding.code);
    if (it == data.expected.end()) {
      ADD_FAILURE() << "unexpected finding: " << finding.file << ":" << finding.line << " ["
                    << finding.code << "] " << finding.message;
      continue;
    }
    EXPECT_EQ(finding.file, it->second.file) << finding.code;
    EXPECT_EQ(finding.line, it->second.line) << finding.code << ": " << finding.message;
    EXPECT_EQ(finding.severity, it->second.severity) << finding.code;
    EXPECT_FALSE(finding.message.empty()) << finding.code;
  }
  for (const auto& [code, where] : data.expected)
    EXPECT_EQ(seen[code], 1) << code << "\n" << all;
  EXPECT_EQ(report.findings.size(), data.expected.size()) << all;
  EXPECT_EQ(report.exit_status(), 2);

  // Messages name what a user needs to find the other half of a pair.
  const std::map<std::string, std::vector<std::string>> mentions = {
      {"image-duplicate-id", {"image id 101", "line 1"}},
      {"query-duplicate-id", {"text_id 1", "line 1"}},
      {"image-duplicate-content", {"image 102", dir.file("train_imgs.tsv") + ":2"}},
      {"leak-image", {"train image 101", dir.file("train_imgs.tsv") + ":1"}},
      {"leak-query", {"train query 1", dir.file("train_texts.jsonl") + ":1"}},
      {"query-unknown-image", {"999", dir.file("train_imgs.tsv")}},
      {"query-invalid-utf8", {"byte 26"}},
      {"image-extreme-aspect", {"200x32", "6.25"}},
      {"image-bad-dimensions", {"20000x20000"}},
  };
  for (const auto& finding : report.findings) {
    const auto it = mentions.find(finding.code);
    if (it == mentions.end()) continue;
    for (const auto& part : it->second)
      EXPECT_TRUE(Contains(finding.message, part)) << finding.code;
  }

  // Sorted by file, then line.
  for (std::size_t i = 1; i < report.findings.size(); ++i) {
    const auto& a = report.findings[i - 1];
    const auto& b = report.findings[i];
    EXPECT_TRUE(a.file < b.file || (a.file == b.file && a.line <= b.line)) << all;
  }
}

TEST(CheckDatasetTest, ThreadCountAndBatchSizeDoNotChangeTheReport) {
  TempDir dir;
  const CorruptedDataset data(dir);
  CheckOptions one = data.options;
  one.threads = 1;
  CheckOptions many = data.options;
  many.threads = 4;
  many.batch_bytes = 100;  // a batch per line or two: exercises the batch boundaries
  const CheckReport a = check_dataset(dir.path(), one);
  const CheckReport b = check_dataset(dir.path(), many);
  EXPECT_EQ(a.to_json(), b.to_json());
  EXPECT_EQ(a.to_text(0), b.to_text(0));
}

TEST(CheckDatasetTest, ReportsProgressUpToTheTotal) {
  TempDir dir;
  const CorruptedDataset data(dir);
  std::int64_t calls = 0, last_done = -1, last_total = -1;
  bool monotonic = true;
  check_dataset(dir.path(), data.options, [&](std::int64_t done, std::int64_t total) {
    ++calls;
    if (done < last_done) monotonic = false;
    last_done = done;
    last_total = total;
  });
  EXPECT_GT(calls, 1);
  EXPECT_TRUE(monotonic);
  EXPECT_GT(last_total, 0);
  EXPECT_EQ(last_done, last_total);
}

// ---- reports ---------------------------------------------------------------------------------

TEST(CheckReportTest, JsonRoundTripsCountsAndFindings) {
  TempDir dir;
  const CorruptedDataset data(dir);
  const CheckReport report = check_dataset(dir.path(), data.options);
  const nlohmann::json json = nlohmann::json::parse(report.to_json().dump());
  EXPECT_EQ(json.at("errors").get<std::int64_t>(), report.errors());
  EXPECT_EQ(json.at("warnings").get<std::int64_t>(), report.warnings());
  EXPECT_EQ(json.at("exit_status").get<int>(), 2);
  EXPECT_EQ(json.at("findings").size(), report.findings.size());
  EXPECT_EQ(json.at("counts").at("leak-image").get<int>(), 1);
  EXPECT_EQ(json.at("splits").size(), 3u);

  const CheckReport back = CheckReport::from_json(json);
  EXPECT_EQ(back.errors(), report.errors());
  EXPECT_EQ(back.warnings(), report.warnings());
  ASSERT_EQ(back.splits.size(), report.splits.size());
  for (std::size_t i = 0; i < back.splits.size(); ++i) {
    EXPECT_EQ(back.splits[i].split, report.splits[i].split);
    EXPECT_EQ(back.splits[i].images, report.splits[i].images);
    EXPECT_EQ(back.splits[i].queries, report.splits[i].queries);
  }
  EXPECT_EQ(back.to_json(), report.to_json());
  EXPECT_THROW(CheckReport::from_json(nlohmann::json{{"findings", 3}}), DataError);
}

TEST(CheckReportTest, TextLimitsFindingsPerCode) {
  CheckReport report;
  report.splits.push_back(SplitCounts{"train", 10, 5});
  for (int line = 1; line <= 5; ++line) {
    report.findings.push_back(
        CheckFinding{Severity::kWarning, "image-too-small", "t.tsv", line, "small"});
  }
  report.findings.push_back(
      CheckFinding{Severity::kError, "tsv-no-tab", "t.tsv", 9, "no tab between ..."});
  EXPECT_EQ(report.exit_status(), 2);
  const std::string text = report.to_text(2);
  EXPECT_TRUE(Contains(text, "1 errors, 5 warnings"));
  EXPECT_TRUE(Contains(text, "t.tsv:1: warning [image-too-small] small"));
  EXPECT_TRUE(Contains(text, "t.tsv:2: warning [image-too-small] small"));
  EXPECT_FALSE(Contains(text, "t.tsv:3: warning"));
  EXPECT_TRUE(Contains(text, "3 more [image-too-small] not shown"));
  EXPECT_TRUE(Contains(text, "t.tsv:9: error [tsv-no-tab] no tab between ..."));
  EXPECT_TRUE(Contains(report.to_text(0), "t.tsv:5: warning"));
  report.findings.push_back(CheckFinding{Severity::kError, "file-missing", "v.jsonl", 0, "gone"});
  EXPECT_TRUE(Contains(report.to_text(), "\nv.jsonl: error [file-missing] gone\n"));
}

// ---- warnings only ---------------------------------------------------------------------------

TEST(CheckDatasetTest, WarningsOnlyDatasetExitsWithOne) {
  TempDir dir;
  CleanDataset data;
  // The same bytes in valid and test (no train copy): a duplicate, not a leak.
  data.test_images.emplace_back(303, data.valid_images[0].second);
  data.train_images.emplace_back(105, jpeg_base64(20, 20, 70));
  data.write(dir);
  const CheckReport report = check_dataset(dir.path(), CheckOptions{});
  ASSERT_EQ(report.findings.size(), 2u) << dump_findings(report);
  EXPECT_EQ(report.findings[0].code, "image-duplicate-content");
  EXPECT_EQ(report.findings[0].file, dir.file("test_imgs.tsv"));
  EXPECT_EQ(report.findings[0].line, 3);
  EXPECT_TRUE(Contains(report.findings[0].message, dir.file("valid_imgs.tsv") + ":1"));
  EXPECT_EQ(report.findings[1].code, "image-too-small");
  EXPECT_EQ(report.errors(), 0);
  EXPECT_EQ(report.warnings(), 2);
  EXPECT_EQ(report.exit_status(), 1);
}

TEST(CheckDatasetTest, OptionsMoveTheThresholds) {
  TempDir dir;
  CleanDataset data;
  data.write(dir);
  CheckOptions options;
  options.min_side = 45;        // valid (48x40) and test (40x48) images are now too small
  options.max_query_chars = 6;  // "高级感托特包斜挎" (8) is now too long
  const CheckReport report = check_dataset(dir.path(), options);
  std::map<std::string, int> counts;
  for (const auto& finding : report.findings)
    ++counts[finding.code];
  EXPECT_EQ(counts["image-too-small"], 5) << dump_findings(report);
  EXPECT_EQ(counts["query-too-long"], 1) << dump_findings(report);
  EXPECT_EQ(report.findings.size(), 6u) << dump_findings(report);
}

// ---- broken files ----------------------------------------------------------------------------

TEST(CheckDatasetTest, MissingAndUnreadableFilesAreFindings) {
  TempDir dir;
  CleanDataset data;
  data.write(dir);
  // valid: its query file is gone; test: its image "file" is a folder (unreadable even as root).
  std::filesystem::remove(dir.file("valid_texts.jsonl"));
  std::filesystem::remove(dir.file("test_imgs.tsv"));
  std::filesystem::create_directory(dir.file("test_imgs.tsv"));
  // train: both schemas at once.
  write_queries(dir.file("train_queries.jsonl"), QuerySchema::kTianchi, data.train_queries);

  CheckReport report;
  ASSERT_NO_THROW(report = check_dataset(dir.path(), CheckOptions{}));
  std::map<std::string, std::vector<const CheckFinding*>> by_code;
  for (const auto& finding : report.findings)
    by_code[finding.code].push_back(&finding);
  ASSERT_EQ(by_code["file-missing"].size(), 1u) << dump_findings(report);
  EXPECT_EQ(by_code["file-missing"][0]->file, dir.file("valid_texts.jsonl"));
  EXPECT_EQ(by_code["file-missing"][0]->line, 0);
  ASSERT_EQ(by_code["file-unreadable"].size(), 1u) << dump_findings(report);
  EXPECT_EQ(by_code["file-unreadable"][0]->file, dir.file("test_imgs.tsv"));
  ASSERT_EQ(by_code["file-two-schemas"].size(), 1u) << dump_findings(report);
  EXPECT_EQ(by_code["file-two-schemas"][0]->file, dir.file("train_queries.jsonl"));
  // Nothing else: the test queries' references are not checked against an unread pool.
  EXPECT_EQ(report.findings.size(), 3u) << dump_findings(report);
  EXPECT_EQ(report.exit_status(), 2);
  ASSERT_EQ(report.splits.size(), 3u);
  EXPECT_EQ(report.splits[1].images, 3);  // valid's images were still checked
  EXPECT_EQ(report.splits[1].queries, 0);
}

TEST(CheckDatasetTest, QueriesWithoutImageFileAreCheckedButNotTheirReferences) {
  TempDir dir;
  CleanDataset data;
  data.train_queries.push_back(query(9, "", {101}));  // line 4
  write_queries(dir.file("train_texts.jsonl"), QuerySchema::kChineseClip, data.train_queries);
  const CheckReport report = check_dataset(dir.path(), CheckOptions{});
  ASSERT_EQ(report.findings.size(), 2u) << dump_findings(report);
  EXPECT_EQ(report.findings[0].code, "file-missing");
  EXPECT_EQ(report.findings[0].file, dir.file("train_imgs.tsv"));
  EXPECT_EQ(report.findings[1].code, "query-empty-text");
  EXPECT_EQ(report.findings[1].line, 4);
}

TEST(CheckDatasetTest, EmptyFilesAndCrlfLines) {
  TempDir dir;
  const CleanDataset data;
  std::string tsv;
  for (const auto& [id, base64] : data.train_images)
    tsv += std::to_string(id) + "\t" + base64 + "\r\n";  // Windows line ends are fine
  write_file(dir.file("train_imgs.tsv"), tsv);
  write_queries(dir.file("train_texts.jsonl"), QuerySchema::kChineseClip, data.train_queries);
  write_file(dir.file("valid_imgs.tsv"), "");
  write_file(dir.file("valid_texts.jsonl"), "\n");
  const CheckReport report = check_dataset(dir.path(), CheckOptions{});
  ASSERT_EQ(report.findings.size(), 2u) << dump_findings(report);
  EXPECT_EQ(report.findings[0].code, "file-empty");
  EXPECT_EQ(report.findings[0].file, dir.file("valid_imgs.tsv"));
  EXPECT_EQ(report.findings[1].code, "file-empty");
  EXPECT_EQ(report.findings[1].file, dir.file("valid_texts.jsonl"));
  EXPECT_EQ(report.exit_status(), 1);
}

}  // namespace
}  // namespace shopclip::data
