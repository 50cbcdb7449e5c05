#pragma once
// Readers and writers for the MUGE retrieval files, both schemas:
//   Chinese-CLIP:  {split}_texts.jsonl    {"text_id": 8428, "text": "...", "image_ids": [1, 2]}
//   Tianchi:       {split}_queries.jsonl  {"query_id": 8428, "query_text": "...", "item_ids": [1]}
//   images:        {split}_imgs.tsv       image_id<TAB>base64 of a JPEG or PNG file
//   predictions:   one JSON line per query with exactly 10 distinct ids.
//
// Bad input never throws out of a reader: each bad row is skipped and recorded in a BadRowLog
// with its file, line and reason; the caller decides (BadRowLog::check_share) whether the share
// of bad rows is too high to go on.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/files.h"  // write_file_atomic, declared here before data/files.h existed

namespace shopclip::data {

struct BadRow {
  std::string file;
  std::int64_t line = 0;  // 1-based
  std::string reason;
};

// Bad rows and row counts per input file.
class BadRowLog {
 public:
  void add_rows(const std::string& file, std::int64_t rows);  // rows read (good and bad)
  void add_bad(const std::string& file, std::int64_t line, std::string reason);
  // Merges another log (e.g. from a worker thread).
  void merge(const BadRowLog& other);

  const std::vector<BadRow>& bad_rows() const { return bad_; }
  std::int64_t rows(const std::string& file) const;
  std::int64_t bad_count(const std::string& file) const;
  std::vector<std::string> files() const;

  // Throws DataError naming the file, its bad/total counts and the limit when any file's share
  // of bad rows exceeds max_share.
  void check_share(double max_share) const;
  // "file: N rows, M bad (x%)" for each file, one per line.
  std::string summary() const;
  // JSON lines: {"file": ..., "line": ..., "reason": ...}, written atomically.
  void write_report(const std::string& path) const;
  // Adds the rows of a report write_report wrote (prep's bad_rows.jsonl) with add_bad; the row
  // counts are not in a report (the caller adds them with add_rows). Blank lines are skipped.
  // Throws DataError naming "path:line" at a line that is not such a row.
  void read_report(const std::string& path);

 private:
  struct Counts {
    std::int64_t rows = 0;
    std::int64_t bad = 0;
  };
  std::map<std::string, Counts> counts_;
  std::vector<BadRow> bad_;
};

// The one listing of bad rows in a command's log: every row as "bad row skipped: FILE:LINE:
// REASON", the first `shown` through `show` (terminal and log file), the others through
// `file_only` (log file only), then, when some were left off the terminal, "... and N more bad
// rows (all in REPORT)" through `show`. (data/ knows no logger: the caller passes its two ways.)
void list_bad_rows(const BadRowLog& log, const std::string& report_path,
                   const std::function<void(const std::string&)>& show,
                   const std::function<void(const std::string&)>& file_only,
                   std::size_t shown = 20);

// Which query file layout a split uses.
enum class QuerySchema { kChineseClip, kTianchi };
const char* schema_name(QuerySchema schema);

// The field names of a query row: id, text and ground-truth list ("text_id", "text", "image_ids"
// or "query_id", "query_text", "item_ids").
struct QueryFields {
  const char* id;
  const char* text;
  const char* images;
};
QueryFields query_fields(QuerySchema schema);

// Parses a decimal int64 id (optional leading '-') and nothing else; values outside int64 are
// rejected (a bad row), never wrapped onto some other image's id.
bool parse_decimal_id(std::string_view text, std::int64_t* out);

struct Query {
  std::int64_t id = 0;
  std::string text;
  std::vector<std::int64_t> image_ids;  // ground truth; empty for test splits
  std::int64_t line = 0;                // 1-based line in its file, for reports
};

struct QuerySet {
  std::string file;
  QuerySchema schema = QuerySchema::kChineseClip;
  std::vector<Query> queries;
};

// The files of one split under a dataset root, as found on disk (nothing is read). The one place
// that knows the names: {split}_imgs.tsv, {split}_texts.jsonl (Chinese-CLIP) and
// {split}_queries.jsonl (Tianchi).
struct SplitFiles {
  std::string split;
  std::string images;           // root/{split}_imgs.tsv, whether it exists or not
  std::string clip_queries;     // root/{split}_texts.jsonl, whether it exists or not
  std::string tianchi_queries;  // root/{split}_queries.jsonl, whether it exists or not
  bool has_images = false;
  bool has_clip_queries = false;
  bool has_tianchi_queries = false;

  bool has_queries() const { return has_clip_queries || has_tianchi_queries; }
  // Any of the three files exists: the split is there, complete or not.
  bool any() const { return has_images || has_queries(); }
  // Both query files exist (find_queries_file refuses that; `data check` reports it).
  bool two_schemas() const { return has_clip_queries && has_tianchi_queries; }
  // The query file to read: the Chinese-CLIP one when it exists, else the Tianchi one ("" when
  // neither exists), and its schema.
  std::string queries() const;
  QuerySchema schema() const;
};
SplitFiles find_split_files(const std::string& root, const std::string& split);

// Locates the query file of a split: {split}_texts.jsonl (Chinese-CLIP) or
// {split}_queries.jsonl (Tianchi). Throws DataError when neither or both exist.
std::string find_queries_file(const std::string& root, const std::string& split,
                              QuerySchema* schema);
std::string images_file(const std::string& root, const std::string& split);
// The schema a query file's name says: "..._queries.jsonl" is Tianchi, anything else (for
// "..._texts.jsonl", a file given by hand) Chinese-CLIP.
QuerySchema schema_of_queries_file(std::string_view path);

struct QueryReadOptions {
  // A query must list at least one image id (train/valid); test files list none.
  bool require_image_ids = true;
  // When set, an image id for which this returns false makes the row bad ("unknown image id").
  std::function<bool(std::int64_t)> image_exists;
};

// Reads a query file. Bad rows (not JSON, invalid UTF-8, missing field, non-integer id, empty
// text, duplicate query id, unknown image id, ...) are skipped and logged.
QuerySet read_queries(const std::string& path, QuerySchema schema, BadRowLog& log,
                      const QueryReadOptions& options = {});

// One row of an {split}_imgs.tsv: the image id and where its base64 field lies in the file.
struct ImageRow {
  std::int64_t id = 0;
  std::int64_t line = 0;          // 1-based
  std::int64_t field_offset = 0;  // byte offset of the base64 text
  std::int64_t field_size = 0;    // its length without the line end
};

// First pass over an images file: checks each line's layout (a tab, an integer id, a non-empty
// base64 field) and id uniqueness, without decoding. Bad lines are logged and left out. Memory:
// one ImageRow per good line.
std::vector<ImageRow> index_images_tsv(const std::string& path, BadRowLog& log);

// Streams lines [first, first + count) of an index back with their base64 text; reads the file
// sequentially from the first row's offset. fn(row, base64_text).
void read_image_fields(const std::string& path, const std::vector<ImageRow>& rows,
                       std::size_t first, std::size_t count,
                       const std::function<void(const ImageRow&, std::string_view)>& fn);

// Writers (atomic: temporary file then rename).
void write_queries(const std::string& path, QuerySchema schema, const std::vector<Query>& queries);
void write_images_tsv(const std::string& path,
                      const std::vector<std::pair<std::int64_t, std::string>>& id_and_base64);

// Predictions: for each query, its ranked image ids.
struct Prediction {
  std::int64_t query_id = 0;
  std::vector<std::int64_t> image_ids;
};
void write_predictions(const std::string& path, QuerySchema schema,
                       const std::vector<Prediction>& predictions);
// Reads a prediction file with the official scorer's rules: every line JSON (a blank line too is
// refused, as the official scorer's json.loads does), integer ids, exactly
// `expected_ids` distinct ids per query, no query twice. The first violation throws DataError
// naming the file and line (the official scorer rejects the whole file).
std::vector<Prediction> read_predictions(const std::string& path, QuerySchema schema,
                                         int expected_ids = 10);

// Checks UTF-8 validity (no overlongs, surrogates or code points above U+10FFFF); on failure
// returns false and sets *error_offset to the first bad byte.
bool is_valid_utf8(std::string_view text, std::size_t* error_offset = nullptr);

// For readers of JSON rows: "a string", "a list", "null", ... (error messages name what was found).
std::string json_type_name(const nlohmann::json& value);
// Reads an integer id field into *out; returns "" or the reason it is not one (not an integer,
// out of the int64 range), naming `key`.
std::string read_json_integer(const nlohmann::json& value, const char* key, std::int64_t* out);

}  // namespace shopclip::data
