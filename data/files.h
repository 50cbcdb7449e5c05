#pragma once
// Files on disk, written and read one way across the project.
//
// Writing. Every file shopclip produces (checkpoints, HDF5 shards, manifests, predictions, bad-row
// reports, feature files, HTML pages) is written under "<path>.tmp" and renamed over <path> when
// complete, so a reader sees the old file or the new one, never part of one, and a killed
// process leaves no half-written file under the final name. The commit also makes the result
// durable: the temporary file is fsync'ed before the rename (else the rename could reach the disk
// before the data, and a power loss would leave an empty or partial file under the final name)
// and its folder after it (the rename itself is a change of the folder).
//
// Reading. LineReader is the one reader of line-based files (JSON lines, the images TSV): 1-based
// line numbers, byte offsets, "\r\n" line ends, lines of any length (an image's base64 runs to
// megabytes), blank lines marked, and errors that name "file:line".

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "data/error.h"

namespace shopclip::data {

// ---- writing ----------------------------------------------------------------------------------

// "<path>.tmp": the temporary name of every atomic writer (a stale one is simply overwritten).
std::string temporary_path(const std::string& path);

// Makes `temporary`, a complete file its writer has closed (a torch archive, an HDF5 file, a
// stream), the file `final_path`: fsync(temporary), rename(temporary, final_path), fsync of
// final_path's folder. An existing final_path is replaced whole. Throws DataError naming
// final_path, the failing call and its strerror; when the rename did not happen the temporary is
// removed and final_path is left as it was (the old file, or none).
void commit_file(const std::string& temporary, const std::string& final_path);

// Writes text to path atomically and durably (temporary_path(path), then commit_file). The folder
// must exist. Throws DataError as commit_file does; nothing is left behind on failure.
void write_file_atomic(const std::string& path, std::string_view text);

// The whole file as bytes. Throws DataError naming path and the reason (strerror).
std::string read_whole_file(const std::string& path);

// Streams a file that is too large to build in memory first (an images TSV, feature files) to
// temporary_path(path); commit() then makes it `path` as commit_file does. Destroyed without a
// successful commit() (an exception midway), it removes the temporary file. One thread at a time.
class AtomicFileWriter {
 public:
  // Creates or truncates temporary_path(path). Throws DataError naming it and strerror.
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends bytes (buffered). Throws DataError naming the file (e.g. disk full).
  void write(std::string_view bytes);
  // Writes out the buffer, fsyncs and closes the temporary file and renames it to path(). Throws
  // DataError as commit_file does; std::logic_error when called twice.
  void commit();

  const std::string& path() const { return path_; }

 private:
  void flush_buffer();
  void discard() noexcept;

  std::string path_;
  std::string temporary_;
  int fd_ = -1;
  std::string buffer_;  // bytes not yet written; flushed at 1 MiB
};

// ---- reading ----------------------------------------------------------------------------------

// One line as LineReader::next returns it.
struct Line {
  std::string_view text;    // without its '\n' or "\r\n"; valid until the next call of next()
  std::int64_t number = 0;  // 1-based
  std::int64_t offset = 0;  // byte offset of text[0] in the file
  // Nothing but JSON white space (space, tab, CR, LF), or empty: not a row of a JSON-lines or TSV
  // file. Readers skip it, or refuse it where every line must be JSON (prediction files).
  bool blank() const;
};

class LineReader {
 public:
  // kThrow: a file that cannot be opened or read throws DataError naming it and the reason.
  // kRecord: nothing throws; opened() and error() tell (for `data check`, where an unreadable
  // file is a finding like any other).
  enum class OnError { kThrow, kRecord };

  explicit LineReader(std::string path, OnError on_error = OnError::kThrow);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line; false at the end of the file, or (kRecord) on a read error.
  bool next(Line* line);

  const std::string& path() const { return path_; }
  bool opened() const { return file_ != nullptr; }
  // Why the file could not be opened or read on (kRecord); empty while all is well.
  const std::string& error() const { return error_; }
  std::int64_t line_number() const { return line_; }  // lines returned so far
  std::int64_t bytes_read() const { return bytes_; }  // bytes of those lines, line ends included

  // "path:N" of a line, for messages.
  std::string where(const Line& line) const;
  // Throws DataError("path:N: reason").
  [[noreturn]] void fail(const Line& line, std::string_view reason) const;
  // The line parsed as JSON; throws DataError("path:N: not JSON: <parser message>").
  nlohmann::json parse_json(const Line& line) const;

 private:
  std::string path_;
  OnError on_error_;
  std::FILE* file_ = nullptr;
  char* buffer_ = nullptr;  // POSIX getline's buffer, reused across lines
  std::size_t capacity_ = 0;
  std::string error_;
  std::int64_t line_ = 0;
  std::int64_t bytes_ = 0;
};

// Parses text as one JSON value. Returns "" on success, or the reason it is not JSON ("not JSON:
// <parser message>") with *out set to null: for readers that skip bad rows instead of stopping.
std::string parse_json_line(std::string_view text, nlohmann::json* out);

// XXH64 (seed 0) of a file's bytes, read in 1 MiB blocks: what provenance records identify
// inputs by and what caches record their makers by. Throws DataError naming the file when it
// cannot be read.
std::uint64_t xxh64_file(const std::string& path);

// Typed access to the fields of a JSON file (manifests); every error names the file and the
// full key path.
class JsonFields {
 public:
  explicit JsonFields(std::string file) : file_(std::move(file)) {}

  // The member `key` of `object`; `path` is its full key path for messages ("params.resolution").
  const nlohmann::json& member(const nlohmann::json& object, const char* key,
                               const std::string& path) const;
  const nlohmann::json& object(const nlohmann::json& parent, const char* key,
                               const std::string& path) const;
  const nlohmann::json& array(const nlohmann::json& parent, const char* key,
                              const std::string& path) const;
  std::string string(const nlohmann::json& parent, const char* key, const std::string& path) const;
  std::int64_t integer(const nlohmann::json& parent, const char* key, const std::string& path,
                       std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
  // Any JSON number, as a double.
  double number(const nlohmann::json& parent, const char* key, const std::string& path) const;

  DataError error(const std::string& path, const std::string& what) const;

 private:
  std::string file_;
};

}  // namespace shopclip::data
