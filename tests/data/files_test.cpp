// Tests for data/files.h: the atomic, durable writers (content, nothing left behind, an existing
// file replaced whole, failures that name the file and the failing call and leave the final name
// as it was) and the line reader (line numbers, offsets, CRLF, blank lines, long lines, errors
// that name "file:line").
//
// Durability across a power loss (the fsyncs) cannot be observed from a test; what can is that
// every path goes through commit, leaves no temporary and never a partial final file.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/error.h"
#include "data/files.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;
using shopclip::test_support::Contains;
using shopclip::test_support::read_file;
using shopclip::test_support::TempDir;
using shopclip::test_support::write_file;

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

// ---- writing ----------------------------------------------------------------------------------

TEST(WriteFileAtomicTest, WritesTheContentAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.file("out.jsonl");
  const std::string text = std::string("{\"a\": 1}\n") + std::string("\0\xff binary\n", 10);
  write_file_atomic(path, text);
  EXPECT_EQ(read_file(path), text);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"out.jsonl"});
  write_file_atomic(dir.file("empty"), "");
  EXPECT_EQ(read_file(dir.file("empty")), "");
}

TEST(WriteFileAtomicTest, ReplacesAnExistingFileWhole) {
  TempDir dir;
  const std::string path = dir.file("page.html");
  write_file_atomic(path, std::string(100000, 'x'));
  write_file_atomic(path, "short");  // no tail of the longer old file may survive
  EXPECT_EQ(read_file(path), "short");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"page.html"});
}

TEST(WriteFileAtomicTest, MissingFolderNamesThePathAndTheCallAndLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("no-such-folder/out.json");
  const std::string message = error_of([&] { write_file_atomic(path, "text"); });
  EXPECT_TRUE(Contains(message, path));
  EXPECT_TRUE(Contains(message, "open '" + path + ".tmp'"));
  EXPECT_TRUE(Contains(message, "No such file or directory"));
  EXPECT_TRUE(names_in(dir.path()).empty());
}

TEST(WriteFileAtomicTest, FailedRenameLeavesTheFinalNameAsItWasAndNoTemporary) {
  // A folder under the final name: the rename fails (EISDIR) after the temporary was written.
  TempDir dir;
  const std::string path = dir.file("taken");
  fs::create_directories(path + "/inside");
  const std::string message = error_of([&] { write_file_atomic(path, "text"); });
  EXPECT_TRUE(Contains(message, "cannot write '" + path + "'"));
  EXPECT_TRUE(Contains(message, "rename '" + path + ".tmp' to '" + path + "'"));
  EXPECT_TRUE(Contains(message, "Is a directory"));
  EXPECT_TRUE(fs::is_directory(path + "/inside"));
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"taken"});
}

TEST(AtomicFileWriterTest, StreamsLargeAndSmallPiecesInOrder) {
  TempDir dir;
  const std::string path = dir.file("images.tsv");
  std::string expected;
  {
    AtomicFileWriter out(path);
    EXPECT_EQ(out.path(), path);
    for (int i = 0; i < 40; ++i) {
      // Pieces below, around and above the 1 MiB buffer.
      const std::string piece(static_cast<std::size_t>(i % 3 == 0 ? (3 << 19) + i : 1000 + i),
                              static_cast<char>('a' + i % 26));
      out.write(piece);
      expected += piece;
    }
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    EXPECT_FALSE(fs::exists(path));  // nothing under the final name before the commit
    out.commit();
    EXPECT_THROW(out.commit(), std::logic_error);
    EXPECT_THROW(out.write("more"), std::logic_error);
  }
  EXPECT_EQ(read_file(path), expected);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"images.tsv"});
}

TEST(AtomicFileWriterTest, AbandonedWriterKeepsTheOldFileAndRemovesItsTemporary) {
  TempDir dir;
  const std::string path = dir.file("train_imgs.tsv");
  write_file_atomic(path, "old content\n");
  try {
    AtomicFileWriter out(path);
    out.write(std::string(3 << 20, 'n'));  // some of it reaches the temporary file
    throw std::runtime_error("rendering failed midway");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_file(path), "old content\n");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"train_imgs.tsv"});
}

TEST(CommitFileTest, CommitsATemporaryItsWriterMade) {
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  write_file_atomic(path, "old");
  {
    std::ofstream out(temporary_path(path), std::ios::binary);
    out << "new shard bytes";
  }
  EXPECT_EQ(temporary_path(path), path + ".tmp");
  commit_file(temporary_path(path), path);
  EXPECT_EQ(read_file(path), "new shard bytes");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"shard-00000.h5"});
}

TEST(CommitFileTest, MissingTemporaryNamesBothFilesAndKeepsTheOldOne) {
  TempDir dir;
  const std::string path = dir.file("best.pt");
  write_file_atomic(path, "old");
  const std::string message = error_of([&] { commit_file(path + ".tmp", path); });
  EXPECT_TRUE(Contains(message, "cannot write '" + path + "'"));
  EXPECT_TRUE(Contains(message, "open '" + path + ".tmp'"));
  EXPECT_TRUE(Contains(message, "No such file or directory"));
  EXPECT_EQ(read_file(path), "old");
}

TEST(CommitFileTest, BareFileNameCommitsInTheWorkingDirectory) {
  // A final path without a folder: the folder to fsync is ".".
  TempDir dir;
  const auto previous = fs::current_path();
  fs::current_path(dir.path());
  std::string message;
  try {
    write_file_atomic("bare.txt", "in the working directory");
  } catch (const std::exception& e) {
    message = e.what();
  }
  fs::current_path(previous);
  EXPECT_EQ(message, "");
  EXPECT_EQ(read_file(dir.file("bare.txt")), "in the working directory");
}

// ---- reading ----------------------------------------------------------------------------------

struct ReadLine {
  std::string text;
  std::int64_t number;
  std::int64_t offset;
  bool blank;
};

std::vector<ReadLine> read_all(const std::string& path) {
  LineReader reader(path);
  std::vector<ReadLine> lines;
  Line line;
  while (reader.next(&line))
    lines.push_back({std::string(line.text), line.number, line.offset, line.blank()});
  EXPECT_EQ(reader.bytes_read(), static_cast<std::int64_t>(fs::file_size(path)));
  EXPECT_EQ(reader.line_number(), static_cast<std::int64_t>(lines.size()));
  return lines;
}

TEST(LineReaderTest, NumbersOffsetsLineEndsAndBlankLines) {
  TempDir dir;
  const std::string path = dir.file("mixed.jsonl");
  const std::string content = "{\"a\": 1}\r\n\n  \t\r\n{\"b\": 2}\nlast without newline";
  write_file(path, content);
  const auto lines = read_all(path);
  ASSERT_EQ(lines.size(), 5u);
  const std::vector<std::string> texts = {"{\"a\": 1}", "", "  \t", "{\"b\": 2}",
                                          "last without newline"};
  const std::vector<bool> blank = {false, true, true, false, false};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].text, texts[i]) << i;
    EXPECT_EQ(lines[i].number, static_cast<std::int64_t>(i + 1));
    EXPECT_EQ(lines[i].blank, blank[i]) << i;
    // The offset points at the line's first byte in the file.
    EXPECT_EQ(content.substr(static_cast<std::size_t>(lines[i].offset), texts[i].size()), texts[i]);
  }
  EXPECT_EQ(lines[1].offset, 10);  // after "{\"a\": 1}\r\n"
}

TEST(LineReaderTest, OnlyJsonWhiteSpaceIsBlank) {
  EXPECT_TRUE((Line{"", 1, 0}).blank());
  EXPECT_TRUE((Line{" \t\r", 1, 0}).blank());
  EXPECT_FALSE((Line{"\f", 1, 0}).blank());  // not JSON white space: a bad row, not a gap
  EXPECT_FALSE((Line{" x ", 1, 0}).blank());
}

TEST(LineReaderTest, ReadsLinesLongerThanAnyBuffer) {
  TempDir dir;
  const std::string path = dir.file("valid_imgs.tsv");
  const std::string field(5 << 20, 'Q');
  write_file(path, "1\t" + field + "\n2\tQQ==\n");
  const auto lines = read_all(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text.size(), field.size() + 2);
  EXPECT_EQ(lines[1].text, "2\tQQ==");
  EXPECT_EQ(lines[1].offset, static_cast<std::int64_t>(field.size() + 3));
}

TEST(LineReaderTest, MissingFileThrowsNamingItOrIsRecorded) {
  TempDir dir;
  const std::string path = dir.file("missing.jsonl");
  const std::string message = error_of([&] { LineReader reader(path); });
  EXPECT_TRUE(Contains(message, path));
  EXPECT_TRUE(Contains(message, "No such file or directory"));

  LineReader recorded(path, LineReader::OnError::kRecord);
  EXPECT_FALSE(recorded.opened());
  EXPECT_EQ(recorded.error(), "No such file or directory");
  Line line;
  EXPECT_FALSE(recorded.next(&line));

  LineReader folder(dir.path(), LineReader::OnError::kRecord);
  EXPECT_FALSE(folder.opened());
  EXPECT_EQ(folder.error(), "it is a folder, not a file");
}

TEST(LineReaderTest, ParseErrorsNameFileAndLine) {
  TempDir dir;
  const std::string path = dir.file("rows.jsonl");
  write_file(path, "{\"id\": 1}\n{\"id\": 2,\n");
  LineReader reader(path);
  Line line;
  ASSERT_TRUE(reader.next(&line));
  EXPECT_EQ(reader.parse_json(line).at("id"), 1);
  EXPECT_EQ(reader.where(line), path + ":1");
  ASSERT_TRUE(reader.next(&line));
  const std::string message = error_of([&] { reader.parse_json(line); });
  EXPECT_TRUE(Contains(message, path + ":2: not JSON: "));
  EXPECT_TRUE(Contains(message, "parse error"));
  EXPECT_TRUE(Contains(error_of([&] { reader.fail(line, "no \"feature\""); }),
                       path + ":2: no \"feature\""));
}

TEST(LineReaderTest, ParseJsonLineReportsInsteadOfThrowing) {
  nlohmann::json value = 5;
  EXPECT_EQ(parse_json_line("[1, 2]", &value), "");
  EXPECT_EQ(value, nlohmann::json({1, 2}));
  const std::string reason = parse_json_line("{\"text_id\": ", &value);
  EXPECT_EQ(reason.rfind("not JSON: ", 0), 0u) << reason;
  EXPECT_TRUE(value.is_null());
}

}  // namespace
}  // namespace shopclip::data
