#include "data/muge.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "data/utf8.h"
#include "test_support.h"

namespace shopclip::data {

// GoogleTest prints parameters with PrintTo found by argument-dependent lookup: in data::, the
// enum's namespace (not in the unnamed namespace below, which that lookup does not search).
void PrintTo(QuerySchema schema, std::ostream* out) {
  *out << schema_name(schema);
}

namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::read_file;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

// The JSON keys of one schema, so one table of cases can build rows for both.
struct Keys {
  std::string id, text, images;
};

Keys keys_for(QuerySchema schema) {
  return schema == QuerySchema::kChineseClip ? Keys{"text_id", "text", "image_ids"}
                                             : Keys{"query_id", "query_text", "item_ids"};
}

// One query line with raw JSON values (so a case can put a string or float where an int goes).
std::string row(const Keys& k, const std::string& id, const std::string& text,
                const std::string& images) {
  return "{\"" + k.id + "\": " + id + ", \"" + k.text + "\": " + text + ", \"" + k.images +
         "\": " + images + "}";
}

// Substring check with both strings in the failure message (gmock is not linked).

std::vector<std::int64_t> ids_of(const QuerySet& set) {
  std::vector<std::int64_t> ids;
  for (const auto& query : set.queries)
    ids.push_back(query.id);
  return ids;
}

// ---- reading good files ---------------------------------------------------------------------

TEST(ReadQueriesTest, ReadsChineseClipSchema) {
  TempDir dir;
  const std::string path = dir.file("train_texts.jsonl");
  write_file(
      path,
      "{\"text_id\": 8428, \"text\": \"高级感托特包斜挎\", \"image_ids\": [1076345, 517602]}\n"
      "{\"text_id\": 8429, \"text\": \"红色 连衣裙\", \"image_ids\": [7]}\n");
  BadRowLog log;
  const QuerySet set = read_queries(path, QuerySchema::kChineseClip, log);
  EXPECT_EQ(set.file, path);
  EXPECT_EQ(set.schema, QuerySchema::kChineseClip);
  ASSERT_EQ(set.queries.size(), 2u);
  EXPECT_EQ(set.queries[0].id, 8428);
  EXPECT_EQ(set.queries[0].text, "高级感托特包斜挎");
  EXPECT_EQ(set.queries[0].image_ids, (std::vector<std::int64_t>{1076345, 517602}));
  EXPECT_EQ(set.queries[0].line, 1);
  EXPECT_EQ(set.queries[1].id, 8429);
  EXPECT_EQ(set.queries[1].text, "红色 连衣裙");
  EXPECT_EQ(set.queries[1].image_ids, (std::vector<std::int64_t>{7}));
  EXPECT_EQ(set.queries[1].line, 2);
  EXPECT_TRUE(log.bad_rows().empty());
  EXPECT_EQ(log.rows(path), 2);
  EXPECT_EQ(log.bad_count(path), 0);
}

TEST(ReadQueriesTest, ReadsTianchiSchema) {
  TempDir dir;
  const std::string path = dir.file("valid_queries.jsonl");
  write_file(path,
             "{\"query_id\": 153915, \"query_text\": \"纯棉T恤\", \"item_ids\": [3, 1, 2]}\n"
             "{\"item_ids\": [9], \"query_id\": 5, \"query_text\": \"包\"}\n");
  BadRowLog log;
  const QuerySet set = read_queries(path, QuerySchema::kTianchi, log);
  EXPECT_EQ(set.schema, QuerySchema::kTianchi);
  ASSERT_EQ(set.queries.size(), 2u);
  EXPECT_EQ(set.queries[0].id, 153915);
  EXPECT_EQ(set.queries[0].text, "纯棉T恤");
  // Ground-truth order is kept as written.
  EXPECT_EQ(set.queries[0].image_ids, (std::vector<std::int64_t>{3, 1, 2}));
  EXPECT_EQ(set.queries[1].id, 5);
  EXPECT_EQ(set.queries[1].image_ids, (std::vector<std::int64_t>{9}));
  EXPECT_TRUE(log.bad_rows().empty());
}

TEST(ReadQueriesTest, OtherSchemaKeysAreMissingFields) {
  // A Chinese-CLIP file read as Tianchi must not be silently accepted.
  TempDir dir;
  const std::string path = dir.file("valid_queries.jsonl");
  write_file(path, "{\"text_id\": 1, \"text\": \"包\", \"image_ids\": [2]}\n");
  BadRowLog log;
  const QuerySet set = read_queries(path, QuerySchema::kTianchi, log);
  EXPECT_TRUE(set.queries.empty());
  ASSERT_EQ(log.bad_rows().size(), 1u);
  EXPECT_TRUE(Contains(log.bad_rows()[0].reason, "missing field"));
  EXPECT_TRUE(Contains(log.bad_rows()[0].reason, "query_id"));
  EXPECT_TRUE(Contains(log.bad_rows()[0].reason, "query_text"));
  EXPECT_TRUE(Contains(log.bad_rows()[0].reason, "item_ids"));
}

TEST(ReadQueriesTest, CrlfLinesAndBlankLines) {
  TempDir dir;
  const std::string path = dir.file("train_texts.jsonl");
  write_file(path,
             "{\"text_id\": 1, \"text\": \"包\", \"image_ids\": [2]}\r\n"
             "\r\n"
             "{\"text_id\": 3, \"text\": \"鞋\", \"image_ids\": [4]}\r\n"
             "\n");
  BadRowLog log;
  const QuerySet set = read_queries(path, QuerySchema::kChineseClip, log);
  ASSERT_EQ(ids_of(set), (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(set.queries[1].text, "鞋");
  EXPECT_EQ(set.queries[1].line, 3);  // the blank line still counts as a line of the file
  EXPECT_EQ(log.rows(path), 2);       // but not as a row
  EXPECT_TRUE(log.bad_rows().empty());
}

TEST(ReadQueriesTest, TestFilesWithoutImageIdsAreAcceptedWhenNotRequired) {
  TempDir dir;
  const std::string path = dir.file("test_texts.jsonl");
  write_file(path,
             "{\"text_id\": 1, \"text\": \"包\", \"image_ids\": []}\n"
             "{\"text_id\": 2, \"text\": \"鞋\", \"image_ids\": []}\n");
  BadRowLog log;
  QueryReadOptions options;
  options.require_image_ids = false;
  const QuerySet set = read_queries(path, QuerySchema::kChineseClip, log, options);
  EXPECT_EQ(ids_of(set), (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(set.queries[0].image_ids.empty());
  EXPECT_TRUE(log.bad_rows().empty());

  // The same file read as a train/valid file: every row lacks its ground truth.
  BadRowLog strict_log;
  EXPECT_TRUE(read_queries(path, QuerySchema::kChineseClip, strict_log).queries.empty());
  ASSERT_EQ(strict_log.bad_rows().size(), 2u);
  EXPECT_EQ(strict_log.bad_rows()[1].line, 2);
  EXPECT_TRUE(Contains(strict_log.bad_rows()[1].reason, "no image ids"));
}

TEST(ReadQueriesTest, WriteQueriesRoundTripsBothSchemas) {
  const std::vector<Query> queries = {{12, "高级感托特包 斜挎", {5, 6}, 1}, {13, "鞋", {7}, 2}};
  for (QuerySchema schema : {QuerySchema::kChineseClip, QuerySchema::kTianchi}) {
    TempDir dir;
    const std::string path = dir.file("q.jsonl");
    write_queries(path, schema, queries);
    const Keys k = keys_for(schema);
    const std::string text = read_file(path);
    EXPECT_TRUE(Contains(text, "\"" + k.id + "\""));
    EXPECT_TRUE(Contains(text, "\"" + k.images + "\""));
    EXPECT_TRUE(Contains(text, "高级感托特包"));  // UTF-8 written as is, not \u-escaped
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    BadRowLog log;
    const QuerySet set = read_queries(path, schema, log);
    ASSERT_EQ(set.queries.size(), 2u) << schema_name(schema);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(set.queries[i].id, queries[i].id);
      EXPECT_EQ(set.queries[i].text, queries[i].text);
      EXPECT_EQ(set.queries[i].image_ids, queries[i].image_ids);
      EXPECT_EQ(set.queries[i].line, queries[i].line);
    }
    EXPECT_TRUE(log.bad_rows().empty());
  }
}

// ---- bad query rows -------------------------------------------------------------------------

// One kind of bad row: the line to put between two good rows, and what its reason must say.
struct BadQueryCase {
  std::string name;
  std::function<std::string(const Keys&)> line;
  std::function<std::vector<std::string>(const Keys&)> reason_parts;
  bool require_image_ids = true;
};

// Printed by name, so that test lists show the case instead of a dump of its bytes.
void PrintTo(const BadQueryCase& c, std::ostream* out) {
  *out << c.name;
}

std::vector<BadQueryCase> bad_query_cases() {
  using Parts = std::vector<std::string>;
  return {
      {"NotJson", [](const Keys& k) { return row(k, "2", "\"包\"", "[5"); },
       [](const Keys&) { return Parts{"not JSON"}; }},
      {"NotAnObject", [](const Keys&) { return std::string("[2, \"包\", [5]]"); },
       [](const Keys&) { return Parts{"not a JSON object"}; }},
      {"MissingText",
       [](const Keys& k) { return "{\"" + k.id + "\": 2, \"" + k.images + "\": [5]}"; },
       [](const Keys& k) {
         return Parts{"missing field", k.text};
       }},
      {"MissingImageIds",
       [](const Keys& k) { return "{\"" + k.id + "\": 2, \"" + k.text + "\": \"包\"}"; },
       [](const Keys& k) {
         return Parts{"missing field", k.images};
       }},
      {"StringId", [](const Keys& k) { return row(k, "\"12\"", "\"包\"", "[5]"); },
       [](const Keys& k) {
         return Parts{k.id, "string", "not an integer"};
       }},
      {"FloatId", [](const Keys& k) { return row(k, "12.0", "\"包\"", "[5]"); },
       [](const Keys& k) {
         return Parts{k.id, "float", "not an integer"};
       }},
      {"EmptyText", [](const Keys& k) { return row(k, "2", "\"\"", "[5]"); },
       [](const Keys&) {
         return Parts{"empty query text", "query 2"};
       }},
      {"BlankText", [](const Keys& k) { return row(k, "2", "\"  \"", "[5]"); },
       [](const Keys&) { return Parts{"empty query text"}; }},
      {"TextNotString", [](const Keys& k) { return row(k, "2", "17", "[5]"); },
       [](const Keys& k) {
         return Parts{k.text, "not a string"};
       }},
      // "\xE9\xAB" is 高 without its third byte; the reason gives the 1-based byte position.
      {"InvalidUtf8", [](const Keys& k) { return row(k, "2", "\"\xE9\xAB\"", "[5]"); },
       [](const Keys& k) {
         const std::string line = row(k, "2", "\"\xE9\xAB\"", "[5]");
         return Parts{"invalid UTF-8", "at byte " + std::to_string(line.find('\xE9') + 1)};
       }},
      {"DuplicateQueryId", [](const Keys& k) { return row(k, "1", "\"又一个\"", "[5]"); },
       [](const Keys& k) {
         return Parts{"duplicate", k.id, "1"};
       }},
      {"UnknownImageId", [](const Keys& k) { return row(k, "2", "\"包\"", "[5, 1234]"); },
       [](const Keys&) { return Parts{"unknown image id 1234"}; }},
      {"ListEntryString", [](const Keys& k) { return row(k, "2", "\"包\"", "[5, \"6\"]"); },
       [](const Keys& k) {
         return Parts{k.images, "string", "not an integer"};
       }},
      {"ListEntryFloat", [](const Keys& k) { return row(k, "2", "\"包\"", "[5.5]"); },
       [](const Keys& k) {
         return Parts{k.images, "float", "not an integer"};
       }},
      {"ImageIdsNotList", [](const Keys& k) { return row(k, "2", "\"包\"", "5"); },
       [](const Keys& k) {
         return Parts{k.images, "not a list"};
       }},
      {"ImageIdTwice", [](const Keys& k) { return row(k, "2", "\"包\"", "[5, 5]"); },
       [](const Keys&) { return Parts{"image id 5 listed twice"}; }},
      {"NoImageIds", [](const Keys& k) { return row(k, "2", "\"包\"", "[]"); },
       [](const Keys&) {
         return Parts{"query 2", "no image ids"};
       }},
  };
}

class BadQueryRowTest : public ::testing::TestWithParam<std::tuple<QuerySchema, BadQueryCase>> {};

TEST_P(BadQueryRowTest, RowIsSkippedAndLoggedWithLineAndReason) {
  const auto& [schema, bad_case] = GetParam();
  const Keys k = keys_for(schema);
  TempDir dir;
  const std::string path = dir.file("valid.jsonl");
  // Line 2 is blank, so the bad row's line number (3) differs from its row number (2).
  write_file(path, row(k, "1", "\"红色连衣裙\"", "[5]") + "\n\n" + bad_case.line(k) + "\n" +
                       row(k, "3", "\"黑色短靴\"", "[6, 7]") + "\n");
  BadRowLog log;
  QueryReadOptions options;
  options.require_image_ids = bad_case.require_image_ids;
  options.image_exists = [](std::int64_t id) { return id < 1000; };
  const QuerySet set = read_queries(path, schema, log, options);

  ASSERT_EQ(ids_of(set), (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(set.queries[0].text, "红色连衣裙");  // for a duplicate, the first one is kept
  EXPECT_EQ(set.queries[1].image_ids, (std::vector<std::int64_t>{6, 7}));
  EXPECT_EQ(set.queries[1].line, 4);
  ASSERT_EQ(log.bad_rows().size(), 1u);
  const BadRow& bad = log.bad_rows()[0];
  EXPECT_EQ(bad.file, path);
  EXPECT_EQ(bad.line, 3);
  for (const std::string& part : bad_case.reason_parts(k)) {
    EXPECT_TRUE(Contains(bad.reason, part));
  }
  EXPECT_EQ(log.rows(path), 3);
  EXPECT_EQ(log.bad_count(path), 1);
}

INSTANTIATE_TEST_SUITE_P(AllKinds, BadQueryRowTest,
                         ::testing::Combine(::testing::Values(QuerySchema::kChineseClip,
                                                              QuerySchema::kTianchi),
                                            ::testing::ValuesIn(bad_query_cases())),
                         [](const ::testing::TestParamInfo<BadQueryRowTest::ParamType>& info) {
                           return std::string(std::get<0>(info.param) == QuerySchema::kChineseClip
                                                  ? "Clip"
                                                  : "Tianchi") +
                                  "_" + std::get<1>(info.param).name;
                         });

TEST(ReadQueriesTest, UnknownImageIdIsOnlyCheckedWhenAsked) {
  TempDir dir;
  const std::string path = dir.file("valid_texts.jsonl");
  write_file(path, "{\"text_id\": 1, \"text\": \"包\", \"image_ids\": [5, 1234]}\n");
  BadRowLog log;
  const QuerySet set = read_queries(path, QuerySchema::kChineseClip, log);
  ASSERT_EQ(set.queries.size(), 1u);
  EXPECT_EQ(set.queries[0].image_ids, (std::vector<std::int64_t>{5, 1234}));
}

TEST(ReadQueriesTest, MissingFileThrowsNamingIt) {
  TempDir dir;
  BadRowLog log;
  try {
    read_queries(dir.file("nope.jsonl"), QuerySchema::kChineseClip, log);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), dir.file("nope.jsonl")));
  }
}

// ---- file names -----------------------------------------------------------------------------

TEST(FindQueriesFileTest, FindsEitherSchema) {
  TempDir dir;
  write_file(dir.file("train_texts.jsonl"), "");
  write_file(dir.file("valid_queries.jsonl"), "");
  QuerySchema schema = QuerySchema::kTianchi;
  EXPECT_EQ(find_queries_file(dir.path(), "train", &schema), dir.file("train_texts.jsonl"));
  EXPECT_EQ(schema, QuerySchema::kChineseClip);
  EXPECT_EQ(find_queries_file(dir.path(), "valid", &schema), dir.file("valid_queries.jsonl"));
  EXPECT_EQ(schema, QuerySchema::kTianchi);
  EXPECT_EQ(find_queries_file(dir.path(), "valid", nullptr), dir.file("valid_queries.jsonl"));
}

TEST(FindQueriesFileTest, NeitherThrowsNamingBothCandidates) {
  TempDir dir;
  try {
    find_queries_file(dir.path(), "test", nullptr);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), dir.file("test_texts.jsonl")));
    EXPECT_TRUE(Contains(e.what(), dir.file("test_queries.jsonl")));
  }
}

TEST(FindQueriesFileTest, BothThrowsNamingBoth) {
  TempDir dir;
  write_file(dir.file("valid_texts.jsonl"), "");
  write_file(dir.file("valid_queries.jsonl"), "");
  try {
    find_queries_file(dir.path(), "valid", nullptr);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), dir.file("valid_texts.jsonl")));
    EXPECT_TRUE(Contains(e.what(), dir.file("valid_queries.jsonl")));
  }
}

TEST(FindQueriesFileTest, ImagesFileName) {
  EXPECT_EQ(images_file("/data/muge", "valid"), "/data/muge/valid_imgs.tsv");
}

TEST(FindSplitFilesTest, SaysWhatExistsWithoutThrowing) {
  TempDir dir;
  write_file(dir.file("train_imgs.tsv"), "");
  write_file(dir.file("train_texts.jsonl"), "");
  write_file(dir.file("valid_queries.jsonl"), "");
  write_file(dir.file("test_texts.jsonl"), "");
  write_file(dir.file("test_queries.jsonl"), "");

  const SplitFiles train = find_split_files(dir.path(), "train");
  EXPECT_EQ(train.split, "train");
  EXPECT_EQ(train.images, dir.file("train_imgs.tsv"));
  EXPECT_EQ(train.clip_queries, dir.file("train_texts.jsonl"));
  EXPECT_EQ(train.tianchi_queries, dir.file("train_queries.jsonl"));
  EXPECT_TRUE(train.has_images && train.has_clip_queries && !train.has_tianchi_queries);
  EXPECT_EQ(train.queries(), dir.file("train_texts.jsonl"));
  EXPECT_EQ(train.schema(), QuerySchema::kChineseClip);

  const SplitFiles valid = find_split_files(dir.path(), "valid");
  EXPECT_FALSE(valid.has_images);
  EXPECT_TRUE(valid.any());
  EXPECT_EQ(valid.queries(), dir.file("valid_queries.jsonl"));
  EXPECT_EQ(valid.schema(), QuerySchema::kTianchi);

  // Both schemas: find_queries_file refuses, the Chinese-CLIP file is the one to check.
  const SplitFiles test = find_split_files(dir.path(), "test");
  EXPECT_TRUE(test.two_schemas());
  EXPECT_EQ(test.queries(), dir.file("test_texts.jsonl"));

  const SplitFiles other = find_split_files(dir.path(), "extra");
  EXPECT_FALSE(other.any());
  EXPECT_FALSE(other.has_queries());
  EXPECT_EQ(other.queries(), "");
}

TEST(FindSplitFilesTest, SchemaOfAQueryFileName) {
  EXPECT_EQ(schema_of_queries_file("/d/valid_queries.jsonl"), QuerySchema::kTianchi);
  EXPECT_EQ(schema_of_queries_file("/d/valid_texts.jsonl"), QuerySchema::kChineseClip);
  EXPECT_EQ(schema_of_queries_file("answers/test_texts.jsonl"), QuerySchema::kChineseClip);
  EXPECT_EQ(schema_of_queries_file("my_queries.jsonl.bak"), QuerySchema::kChineseClip);
}

// ---- images tsv -----------------------------------------------------------------------------

// Reads every indexed field back, checking it against the file bytes at its recorded offset.
std::vector<std::string> read_all_fields(const std::string& path,
                                         const std::vector<ImageRow>& rows) {
  const std::string bytes = read_file(path);
  std::vector<std::string> fields;
  read_image_fields(path, rows, 0, rows.size(), [&](const ImageRow& r, std::string_view field) {
    EXPECT_EQ(std::string(field), bytes.substr(r.field_offset, r.field_size)) << "line " << r.line;
    fields.emplace_back(field);
  });
  return fields;
}

TEST(ImagesTsvTest, IndexesOffsetsWithLfEnds) {
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  write_file(path, "10\tQUJD\n11\tREVGRw==\n12\tSA==\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].id, 10);
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[0].field_offset, 3);
  EXPECT_EQ(rows[0].field_size, 4);
  EXPECT_EQ(rows[1].id, 11);
  EXPECT_EQ(rows[1].field_offset, 8 + 3);
  EXPECT_EQ(rows[1].field_size, 8);
  EXPECT_EQ(rows[2].id, 12);
  EXPECT_EQ(rows[2].line, 3);
  EXPECT_EQ(rows[2].field_offset, 8 + 12 + 3);
  EXPECT_EQ(read_all_fields(path, rows), (std::vector<std::string>{"QUJD", "REVGRw==", "SA=="}));
  EXPECT_EQ(log.rows(path), 3);
  EXPECT_TRUE(log.bad_rows().empty());
}

TEST(ImagesTsvTest, CrlfEndsAreNotPartOfTheField) {
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  write_file(path, "10\tQUJD\r\n11\tREVGRw==\r\n12\tSA==\r\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].field_size, 4);
  EXPECT_EQ(rows[1].field_offset, 9 + 3);
  EXPECT_EQ(rows[1].field_size, 8);
  EXPECT_EQ(rows[2].field_offset, 9 + 13 + 3);
  EXPECT_EQ(read_all_fields(path, rows), (std::vector<std::string>{"QUJD", "REVGRw==", "SA=="}));
}

TEST(ImagesTsvTest, LastLineWithoutNewline) {
  for (const std::string end : {"\n", "\r\n"}) {
    TempDir dir;
    const std::string path = dir.file("valid_imgs.tsv");
    write_file(path, "10\tQUJD" + end + "11\tREVGRw==");
    BadRowLog log;
    const auto rows = index_images_tsv(path, log);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[1].field_offset, static_cast<std::int64_t>(7 + end.size() + 3));
    EXPECT_EQ(rows[1].field_size, 8);
    EXPECT_EQ(read_all_fields(path, rows), (std::vector<std::string>{"QUJD", "REVGRw=="}));
  }
}

// One kind of bad images line and what its reason must say.
struct BadImageCase {
  std::string name;
  std::string line;
  std::vector<std::string> reason_parts;
};

void PrintTo(const BadImageCase& c, std::ostream* out) {
  *out << c.name;
}

class BadImageRowTest : public ::testing::TestWithParam<BadImageCase> {};

TEST_P(BadImageRowTest, RowIsSkippedAndLoggedWithLineAndReason) {
  const BadImageCase& bad_case = GetParam();
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  write_file(path, "10\tQUJD\n\n" + bad_case.line + "\n12\tSA==\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, 10);
  EXPECT_EQ(rows[1].id, 12);
  EXPECT_EQ(rows[1].line, 4);
  // Reading past the bad line must seek over it, not return its bytes.
  EXPECT_EQ(read_all_fields(path, rows), (std::vector<std::string>{"QUJD", "SA=="}));
  ASSERT_EQ(log.bad_rows().size(), 1u);
  EXPECT_EQ(log.bad_rows()[0].file, path);
  EXPECT_EQ(log.bad_rows()[0].line, 3);
  for (const std::string& part : bad_case.reason_parts) {
    EXPECT_TRUE(Contains(log.bad_rows()[0].reason, part));
  }
  EXPECT_EQ(log.rows(path), 3);
  EXPECT_EQ(log.bad_count(path), 1);
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, BadImageRowTest,
    ::testing::Values(BadImageCase{"NoTab", "11 QUJD", {"no tab"}},
                      BadImageCase{"IdNotInteger", "11a\tQUJD", {"'11a'", "not an integer"}},
                      BadImageCase{"IdFloat", "11.0\tQUJD", {"'11.0'", "not an integer"}},
                      BadImageCase{"IdEmpty", "\tQUJD", {"not an integer"}},
                      BadImageCase{"IdTooLarge", "99999999999999999999\tQUJD", {"not an integer"}},
                      // Fits in 19 digits but not in int64: must not wrap around to some id.
                      BadImageCase{
                          "IdOverflowsInt64", "9223372036854775808\tQUJD", {"not an integer"}},
                      BadImageCase{"EmptyBase64", "11\t", {"image 11", "empty base64"}},
                      BadImageCase{"DuplicateId", "10\tREVGRw==", {"duplicate image id 10"}}),
    [](const ::testing::TestParamInfo<BadImageCase>& info) { return info.param.name; });

TEST(ImagesTsvTest, LargestInt64IdIsAccepted) {
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  write_file(path, "9223372036854775807\tQUJD\n-9223372036854775807\tSA==\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, INT64_MAX);
  EXPECT_EQ(rows[1].id, -INT64_MAX);
  EXPECT_TRUE(log.bad_rows().empty());
}

TEST(ImagesTsvTest, ReadsASubrangeAndRejectsRangesPastTheEnd) {
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  write_file(path, "1\tQQ==\n2\tQg==\n3\tQw==\n4\tRA==\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  ASSERT_EQ(rows.size(), 4u);
  std::vector<std::int64_t> ids;
  std::vector<std::string> fields;
  read_image_fields(path, rows, 1, 2, [&](const ImageRow& r, std::string_view field) {
    ids.push_back(r.id);
    fields.emplace_back(field);
  });
  EXPECT_EQ(ids, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(fields, (std::vector<std::string>{"Qg==", "Qw=="}));
  EXPECT_THROW(read_image_fields(path, rows, 3, 2, [](const ImageRow&, std::string_view) {}),
               std::out_of_range);
}

TEST(ImagesTsvTest, FileShrunkSinceIndexingThrowsNamingLine) {
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  write_file(path, "1\tQQ==\n2\tQkJCQg==\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  write_file(path, "1\tQQ==\n2\tQk");
  try {
    read_image_fields(path, rows, 0, 2, [](const ImageRow&, std::string_view) {});
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), path));
    EXPECT_TRUE(Contains(e.what(), "line 2"));
  }
}

TEST(ImagesTsvTest, WriteImagesTsvRoundTrips) {
  TempDir dir;
  const std::string path = dir.file("train_imgs.tsv");
  write_images_tsv(path, {{7, "QUJD"}, {3, "SA=="}});
  EXPECT_EQ(read_file(path), "7\tQUJD\n3\tSA==\n");
  BadRowLog log;
  const auto rows = index_images_tsv(path, log);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, 7);
  EXPECT_EQ(rows[1].id, 3);
}

// ---- BadRowLog ------------------------------------------------------------------------------

TEST(BadRowLogTest, CheckShareThrowsAboveTheShareAndPassesAtOrBelow) {
  BadRowLog log;
  log.add_rows("a.tsv", 10);
  log.add_bad("a.tsv", 4, "no tab between image id and base64 image");
  log.add_rows("b.jsonl", 100);
  EXPECT_NO_THROW(log.check_share(0.1));  // 1 of 10 is exactly the limit
  EXPECT_NO_THROW(log.check_share(0.5));
  try {
    log.check_share(0.05);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "a.tsv"));
    EXPECT_TRUE(Contains(e.what(), "1 of 10"));
    EXPECT_TRUE(Contains(e.what(), "10.00%"));
    EXPECT_TRUE(Contains(e.what(), "5.00%"));
    EXPECT_FALSE(Contains(e.what(), "b.jsonl"));
  }
}

TEST(BadRowLogTest, CheckShareWithZeroLimitAcceptsOnlyCleanFiles) {
  BadRowLog log;
  log.add_rows("clean.tsv", 5);
  EXPECT_NO_THROW(log.check_share(0.0));
  log.add_rows("dirty.tsv", 1000);
  log.add_bad("dirty.tsv", 17, "duplicate image id 3 (first occurrence kept)");
  EXPECT_THROW(log.check_share(0.0), DataError);
  EXPECT_NO_THROW(log.check_share(0.001));
}

TEST(BadRowLogTest, CountsSummaryAndMerge) {
  BadRowLog a, b;
  a.add_rows("x.tsv", 8);
  a.add_bad("x.tsv", 2, "first");
  b.add_rows("x.tsv", 2);
  b.add_bad("x.tsv", 9, "second");
  b.add_rows("y.jsonl", 4);
  a.merge(b);
  EXPECT_EQ(a.rows("x.tsv"), 10);
  EXPECT_EQ(a.bad_count("x.tsv"), 2);
  EXPECT_EQ(a.rows("y.jsonl"), 4);
  EXPECT_EQ(a.bad_count("y.jsonl"), 0);
  EXPECT_EQ(a.rows("unknown"), 0);
  EXPECT_EQ(a.files(), (std::vector<std::string>{"x.tsv", "y.jsonl"}));
  ASSERT_EQ(a.bad_rows().size(), 2u);
  EXPECT_EQ(a.bad_rows()[1].line, 9);
  EXPECT_EQ(a.bad_rows()[1].reason, "second");
  EXPECT_EQ(a.summary(),
            "x.tsv: 10 rows, 2 bad (20.00%)\n"
            "y.jsonl: 4 rows, 0 bad (0.00%)\n");
}

TEST(BadRowLogTest, WriteReportIsJsonLines) {
  TempDir dir;
  BadRowLog log;
  log.add_rows("/d/valid_imgs.tsv", 3);
  log.add_bad("/d/valid_imgs.tsv", 2, "no tab between image id and base64 image");
  // A reason quoting raw bytes of a broken line must not make the report unwritable.
  log.add_bad("/d/valid_texts.jsonl", 5, std::string("quoted \xFF byte"));
  const std::string path = dir.file("bad_rows.jsonl");
  log.write_report(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const std::string text = read_file(path);
  std::vector<nlohmann::json> lines;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(nlohmann::json::parse(text.substr(start, end - start)));
  }
  EXPECT_EQ(start, text.size());  // ends with a newline
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["file"], "/d/valid_imgs.tsv");
  EXPECT_EQ(lines[0]["line"], 2);
  EXPECT_EQ(lines[0]["reason"], "no tab between image id and base64 image");
  EXPECT_EQ(lines[1]["file"], "/d/valid_texts.jsonl");
  EXPECT_EQ(lines[1]["line"], 5);
  EXPECT_TRUE(Contains(lines[1]["reason"].get<std::string>(), "quoted"));

  BadRowLog empty;
  empty.write_report(path);
  EXPECT_EQ(read_file(path), "");
}

TEST(BadRowLogTest, ReadReportReadsWhatWriteReportWrote) {
  TempDir dir;
  BadRowLog log;
  log.add_bad("/d/valid_imgs.tsv", 2, "no tab between image id and base64 image");
  log.add_bad("/d/valid_texts.jsonl", 5, "not JSON: [json.exception.parse_error.101] ...");
  const std::string path = dir.file("bad_rows.jsonl");
  log.write_report(path);
  write_file(path, read_file(path) + "\n");  // a trailing blank line is not a row

  BadRowLog back;
  back.read_report(path);
  ASSERT_EQ(back.bad_rows().size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.bad_rows()[i].file, log.bad_rows()[i].file);
    EXPECT_EQ(back.bad_rows()[i].line, log.bad_rows()[i].line);
    EXPECT_EQ(back.bad_rows()[i].reason, log.bad_rows()[i].reason);
  }
  EXPECT_EQ(back.bad_count("/d/valid_imgs.tsv"), 1);

  write_file(path, read_file(path) + "{\"file\": \"x\", \"line\": \"seven\"}\n");
  try {
    BadRowLog broken;
    broken.read_report(path);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), path + ":4: "));
  }
}

TEST(BadRowLogTest, ListingShowsTheFirstRowsAndSendsTheRestToTheLogFile) {
  BadRowLog log;
  for (int i = 1; i <= 4; ++i)
    log.add_bad("/d/valid_texts.jsonl", i * 10, "reason " + std::to_string(i));
  std::vector<std::string> shown, file_only;
  list_bad_rows(
      log, "/run/bad_rows.jsonl", [&](const std::string& line) { shown.push_back(line); },
      [&](const std::string& line) { file_only.push_back(line); }, 2);
  EXPECT_EQ(shown,
            (std::vector<std::string>{"bad row skipped: /d/valid_texts.jsonl:10: reason 1",
                                      "bad row skipped: /d/valid_texts.jsonl:20: reason 2",
                                      "... and 2 more bad rows (all in /run/bad_rows.jsonl)"}));
  EXPECT_EQ(file_only,
            (std::vector<std::string>{"bad row skipped: /d/valid_texts.jsonl:30: reason 3",
                                      "bad row skipped: /d/valid_texts.jsonl:40: reason 4"}));

  shown.clear();
  file_only.clear();
  list_bad_rows(
      log, "/run/bad_rows.jsonl", [&](const std::string& line) { shown.push_back(line); },
      [&](const std::string& line) { file_only.push_back(line); });
  EXPECT_EQ(shown.size(), 4u);  // 20 by default: no "... and N more" line
  EXPECT_TRUE(file_only.empty());
}

// ---- predictions ----------------------------------------------------------------------------

std::vector<std::int64_t> ten_ids(std::int64_t first) {
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < 10; ++i)
    ids.push_back(first + i * 7);
  return ids;
}

TEST(PredictionsTest, RoundTripBothSchemas) {
  const std::vector<Prediction> predictions = {{153915, ten_ids(100)}, {8, ten_ids(5)}};
  for (QuerySchema schema : {QuerySchema::kChineseClip, QuerySchema::kTianchi}) {
    TempDir dir;
    const std::string path = dir.file("predictions.jsonl");
    write_predictions(path, schema, predictions);
    const Keys k = keys_for(schema);
    const std::string text = read_file(path);
    EXPECT_TRUE(Contains(text, "\"" + k.id + "\":153915"));
    EXPECT_TRUE(Contains(text, "\"" + k.images + "\":[100,107,"));
    const auto back = read_predictions(path, schema);
    ASSERT_EQ(back.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(back[i].query_id, predictions[i].query_id);
      EXPECT_EQ(back[i].image_ids, predictions[i].image_ids);
    }
  }
}

TEST(PredictionsTest, ExpectedIdsIsConfigurable) {
  TempDir dir;
  const std::string path = dir.file("p.jsonl");
  write_predictions(path, QuerySchema::kChineseClip, {{1, {3, 2, 1}}});
  EXPECT_EQ(read_predictions(path, QuerySchema::kChineseClip, 3)[0].image_ids,
            (std::vector<std::int64_t>{3, 2, 1}));
  EXPECT_THROW(read_predictions(path, QuerySchema::kChineseClip), DataError);
}

struct BadPredictionCase {
  std::string name;
  std::string line;  // the second line of the file, after one good line
  std::string reason_part;
};

void PrintTo(const BadPredictionCase& c, std::ostream* out) {
  *out << c.name;
}

std::string ids_json(const std::vector<std::int64_t>& ids) {
  return nlohmann::json(ids).dump();
}

class BadPredictionTest : public ::testing::TestWithParam<BadPredictionCase> {};

TEST_P(BadPredictionTest, ThrowsNamingFileAndLine) {
  const BadPredictionCase& bad_case = GetParam();
  TempDir dir;
  const std::string path = dir.file("predictions.jsonl");
  write_file(path, "{\"text_id\": 1, \"image_ids\": " + ids_json(ten_ids(1)) + "}\n" +
                       bad_case.line + "\n");
  try {
    read_predictions(path, QuerySchema::kChineseClip);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), path + ":2: "));
    EXPECT_TRUE(Contains(e.what(), bad_case.reason_part));
  }
}

std::vector<std::int64_t> nine_ids() {
  auto ids = ten_ids(1);
  ids.pop_back();
  return ids;
}

std::vector<std::int64_t> with_duplicate() {
  auto ids = ten_ids(1);
  ids[9] = ids[3];
  return ids;
}

INSTANTIATE_TEST_SUITE_P(
    OfficialScorerRules, BadPredictionTest,
    ::testing::Values(
        BadPredictionCase{"NotJson", "{\"text_id\": 2, \"image_ids\": [1, 2", "not JSON"},
        BadPredictionCase{"BlankLine", "  ", "a blank line is not JSON"},
        BadPredictionCase{"StringQueryId",
                          "{\"text_id\": \"2\", \"image_ids\": " + ids_json(ten_ids(1)) + "}",
                          "not an integer"},
        BadPredictionCase{"StringImageId",
                          "{\"text_id\": 2, \"image_ids\": [\"1\", 2, 3, 4, 5, 6, 7, 8, 9, 10]}",
                          "not an integer"},
        BadPredictionCase{"MissingImageIds", "{\"text_id\": 2}", "image_ids"},
        BadPredictionCase{"NineIds",
                          "{\"text_id\": 2, \"image_ids\": " + ids_json(nine_ids()) + "}",
                          "9 predicted ids"},
        BadPredictionCase{"ElevenIds",
                          "{\"text_id\": 2, \"image_ids\": " +
                              ids_json({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) + "}",
                          "11 predicted ids"},
        BadPredictionCase{"DuplicateId",
                          "{\"text_id\": 2, \"image_ids\": " + ids_json(with_duplicate()) + "}",
                          "twice"},
        BadPredictionCase{"SameQueryTwice",
                          "{\"text_id\": 1, \"image_ids\": " + ids_json(ten_ids(50)) + "}",
                          "query 1 appears twice"}),
    [](const ::testing::TestParamInfo<BadPredictionCase>& info) { return info.param.name; });

TEST(PredictionsTest, TianchiKeysAreRequiredInTianchiSchema) {
  TempDir dir;
  const std::string path = dir.file("p.jsonl");
  write_predictions(path, QuerySchema::kChineseClip, {{1, ten_ids(1)}});
  try {
    read_predictions(path, QuerySchema::kTianchi);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), path + ":1: "));
    EXPECT_TRUE(Contains(e.what(), "query_id"));
  }
}

// ---- UTF-8 ----------------------------------------------------------------------------------

TEST(Utf8Test, AcceptsValidMultiByteText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9"));               // U+00E9, 2 bytes
  EXPECT_TRUE(is_valid_utf8("高级感托特包斜挎"));          // 3 bytes each
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));          // U+1F600, 4 bytes
  EXPECT_TRUE(is_valid_utf8("\xC2\x80"));                  // U+0080, smallest 2-byte
  EXPECT_TRUE(is_valid_utf8("\xE0\xA0\x80"));              // U+0800, smallest 3-byte
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF\xEE\x80\x80"));  // U+D7FF, U+E000 around surrogates
  EXPECT_TRUE(is_valid_utf8("\xEF\xBF\xBF"));              // U+FFFF
  EXPECT_TRUE(is_valid_utf8("\xF0\x90\x80\x80"));          // U+10000, smallest 4-byte
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));          // U+10FFFF, the largest
  std::size_t offset = 99;
  EXPECT_TRUE(is_valid_utf8("ok", &offset));
  EXPECT_EQ(offset, 99u);  // untouched on success
}

// Each invalid input starts with "ab" so the reported offset of the bad byte is 2.
struct BadUtf8Case {
  std::string name;
  std::string tail;
};

void PrintTo(const BadUtf8Case& c, std::ostream* out) {
  *out << c.name;
}

class BadUtf8Test : public ::testing::TestWithParam<BadUtf8Case> {};

TEST_P(BadUtf8Test, RejectedAtTheFirstBadByte) {
  std::size_t offset = 0;
  EXPECT_FALSE(is_valid_utf8("ab" + GetParam().tail + "cd", &offset));
  EXPECT_EQ(offset, 2u);
  EXPECT_FALSE(is_valid_utf8(GetParam().tail));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, BadUtf8Test,
    ::testing::Values(
        BadUtf8Case{"Overlong2Nul", "\xC0\x80"}, BadUtf8Case{"Overlong2", "\xC1\xBF"},
        BadUtf8Case{"Overlong3", "\xE0\x9F\xBF"}, BadUtf8Case{"Overlong3Slash", "\xE0\x80\xAF"},
        BadUtf8Case{"Overlong4", "\xF0\x8F\xBF\xBF"}, BadUtf8Case{"SurrogateHigh", "\xED\xA0\x80"},
        BadUtf8Case{"SurrogateLow", "\xED\xBF\xBF"}, BadUtf8Case{"Truncated2", "\xC3"},
        BadUtf8Case{"Truncated3", "\xE9\xAB"}, BadUtf8Case{"Truncated4", "\xF0\x9F\x98"},
        BadUtf8Case{"ContinuationReplacedByAscii", "\xE9\x41\x98"},
        BadUtf8Case{"LoneContinuation", "\x80"}, BadUtf8Case{"AboveMaxF4", "\xF4\x90\x80\x80"},
        BadUtf8Case{"AboveMaxF5", "\xF5\x80\x80\x80"},
        BadUtf8Case{"FiveByteLead", "\xF8\x88\x80\x80\x80"}, BadUtf8Case{"ByteFF", "\xFF"}),
    [](const ::testing::TestParamInfo<BadUtf8Case>& info) { return info.param.name; });

TEST(Utf8Test, EncoderIsTheInverseOfTheDecoder) {
  EXPECT_EQ(encode_utf8(U'A'), "A");
  EXPECT_EQ(encode_utf8(0xE9), "\xC3\xA9");             // é: 2 bytes
  EXPECT_EQ(encode_utf8(0x9AD8), "\xE9\xAB\x98");       // 高: 3 bytes
  EXPECT_EQ(encode_utf8(0x1F600), "\xF0\x9F\x98\x80");  // emoji: 4 bytes
  // Every boundary of the four lengths round-trips through decode_utf8.
  for (char32_t cp :
       {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string text = "x";
    append_utf8(text, cp);
    char32_t back = 0;
    ASSERT_EQ(decode_utf8(text, 1, &back), text.size() - 1) << std::hex << cp;
    EXPECT_EQ(back, cp);
  }
}

TEST(Utf8Test, TruncatedAtEndOfText) {
  std::size_t offset = 0;
  // 高 is E9 AB 98; cut after two bytes at the very end.
  EXPECT_FALSE(is_valid_utf8("高级\xE9\xAB", &offset));
  EXPECT_EQ(offset, 6u);
}

}  // namespace
}  // namespace shopclip::data
