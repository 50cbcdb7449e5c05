#include "data/muge.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "data/files.h"
#include "data/utf8.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool is_blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

bool exists(const std::string& path) {
  std::error_code ignored;  // an unreadable folder: the file counts as missing
  return fs::exists(path, ignored);
}

}  // namespace

// ---- BadRowLog -------------------------------------------------------------------------------

void BadRowLog::add_rows(const std::string& file, std::int64_t rows) {
  counts_[file].rows += rows;
}

void BadRowLog::add_bad(const std::string& file, std::int64_t line, std::string reason) {
  counts_[file].bad += 1;
  bad_.push_back(BadRow{file, line, std::move(reason)});
}

void BadRowLog::merge(const BadRowLog& other) {
  for (const auto& [file, counts] : other.counts_) {
    counts_[file].rows += counts.rows;
    counts_[file].bad += counts.bad;
  }
  bad_.insert(bad_.end(), other.bad_.begin(), other.bad_.end());
}

std::int64_t BadRowLog::rows(const std::string& file) const {
  auto it = counts_.find(file);
  return it == counts_.end() ? 0 : it->second.rows;
}

std::int64_t BadRowLog::bad_count(const std::string& file) const {
  auto it = counts_.find(file);
  return it == counts_.end() ? 0 : it->second.bad;
}

std::vector<std::string> BadRowLog::files() const {
  std::vector<std::string> names;
  for (const auto& entry : counts_)
    names.push_back(entry.first);
  return names;
}

void BadRowLog::check_share(double max_share) const {
  for (const auto& [file, counts] : counts_) {
    if (counts.bad == 0) continue;
    const double share = static_cast<double>(counts.bad) /
                         static_cast<double>(std::max<std::int64_t>(counts.rows, 1));
    if (share > max_share) {
      throw DataError(fmt::format(
          "{}: {} of {} rows are bad ({:.2f}%), more than data.max_bad_share = {:.2f}%; the "
          "bad rows are listed above and in the report",
          file, counts.bad, counts.rows, 100.0 * share, 100.0 * max_share));
    }
  }
}

std::string BadRowLog::summary() const {
  std::string out;
  for (const auto& [file, counts] : counts_) {
    const double share = counts.rows ? 100.0 * counts.bad / counts.rows : 0.0;
    out += fmt::format("{}: {} rows, {} bad ({:.2f}%)\n", file, counts.rows, counts.bad, share);
  }
  return out;
}

void BadRowLog::write_report(const std::string& path) const {
  std::string text;
  for (const auto& row : bad_) {
    text += json{{"file", row.file}, {"line", row.line}, {"reason", row.reason}}.dump(
                -1, ' ', false, json::error_handler_t::replace) +
            "\n";
  }
  write_file_atomic(path, text);
}

void BadRowLog::read_report(const std::string& path) {
  LineReader reader(path);
  Line line;
  while (reader.next(&line)) {
    if (line.blank()) continue;
    const json row = reader.parse_json(line);
    try {
      add_bad(row.at("file").get<std::string>(), row.at("line").get<std::int64_t>(),
              row.at("reason").get<std::string>());
    } catch (const json::exception& e) {
      reader.fail(line, fmt::format("not a bad-row report line: {}", e.what()));
    }
  }
}

void list_bad_rows(const BadRowLog& log, const std::string& report_path,
                   const std::function<void(const std::string&)>& show,
                   const std::function<void(const std::string&)>& file_only, std::size_t shown) {
  const auto& rows = log.bad_rows();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string line =
        fmt::format("bad row skipped: {}:{}: {}", rows[i].file, rows[i].line, rows[i].reason);
    (i < shown ? show : file_only)(line);
  }
  if (rows.size() > shown) {
    show(fmt::format("... and {} more bad rows (all in {})", rows.size() - shown, report_path));
  }
}

// ---- file names --------------------------------------------------------------------------

const char* schema_name(QuerySchema schema) {
  return schema == QuerySchema::kChineseClip ? "chinese-clip" : "tianchi";
}

std::string SplitFiles::queries() const {
  if (has_clip_queries) return clip_queries;
  return has_tianchi_queries ? tianchi_queries : std::string();
}

QuerySchema SplitFiles::schema() const {
  return has_clip_queries || !has_tianchi_queries ? QuerySchema::kChineseClip
                                                  : QuerySchema::kTianchi;
}

SplitFiles find_split_files(const std::string& root, const std::string& split) {
  SplitFiles files;
  files.split = split;
  files.images = images_file(root, split);
  files.clip_queries = fmt::format("{}/{}_texts.jsonl", root, split);
  files.tianchi_queries = fmt::format("{}/{}_queries.jsonl", root, split);
  files.has_images = exists(files.images);
  files.has_clip_queries = exists(files.clip_queries);
  files.has_tianchi_queries = exists(files.tianchi_queries);
  return files;
}

std::string find_queries_file(const std::string& root, const std::string& split,
                              QuerySchema* schema) {
  const SplitFiles files = find_split_files(root, split);
  if (files.two_schemas()) {
    throw DataError(fmt::format("both {} and {} exist; keep one schema per split",
                                files.clip_queries, files.tianchi_queries));
  }
  if (!files.has_queries()) {
    throw DataError(fmt::format("no query file for split '{}': expected {} or {}", split,
                                files.clip_queries, files.tianchi_queries));
  }
  if (schema) *schema = files.schema();
  return files.queries();
}

std::string images_file(const std::string& root, const std::string& split) {
  return fmt::format("{}/{}_imgs.tsv", root, split);
}

QuerySchema schema_of_queries_file(std::string_view path) {
  constexpr std::string_view kTianchiSuffix = "_queries.jsonl";
  const bool tianchi = path.size() >= kTianchiSuffix.size() &&
                       path.substr(path.size() - kTianchiSuffix.size()) == kTianchiSuffix;
  return tianchi ? QuerySchema::kTianchi : QuerySchema::kChineseClip;
}

// ---- queries ---------------------------------------------------------------------------------

QuerySet read_queries(const std::string& path, QuerySchema schema, BadRowLog& log,
                      const QueryReadOptions& options) {
  const QueryFields keys = query_fields(schema);
  QuerySet set{path, schema, {}};
  std::unordered_set<std::int64_t> seen_ids;
  LineReader reader(path);
  Line line;
  std::int64_t rows = 0;
  while (reader.next(&line)) {
    if (line.blank()) continue;  // blank lines (e.g. a trailing one) are not rows
    ++rows;
    const std::int64_t number = line.number;
    auto bad = [&](std::string reason) { log.add_bad(path, number, std::move(reason)); };

    std::size_t utf8_error = 0;
    if (!is_valid_utf8(line.text, &utf8_error)) {
      bad(fmt::format("invalid UTF-8 at byte {}", utf8_error + 1));
      continue;
    }
    json row;
    if (std::string reason = parse_json_line(line.text, &row); !reason.empty()) {
      bad(std::move(reason));
      continue;
    }
    if (!row.is_object()) {
      bad("not a JSON object");
      continue;
    }
    std::string missing;
    for (const char* key : {keys.id, keys.text, keys.images}) {
      if (!row.contains(key)) missing += missing.empty() ? key : std::string(", ") + key;
    }
    if (!missing.empty()) {
      bad(fmt::format("missing field {}", missing));
      continue;
    }
    Query query;
    query.line = number;
    if (auto error = read_json_integer(row[keys.id], keys.id, &query.id); !error.empty()) {
      bad(error);
      continue;
    }
    if (!row[keys.text].is_string()) {
      bad(fmt::format("'{}' is {}, not a string", keys.text, json_type_name(row[keys.text])));
      continue;
    }
    query.text = row[keys.text].get<std::string>();
    if (is_blank(query.text)) {
      bad(fmt::format("empty query text (query {})", query.id));
      continue;
    }
    const json& images = row[keys.images];
    if (!images.is_array()) {
      bad(fmt::format("'{}' is {}, not a list", keys.images, json_type_name(images)));
      continue;
    }
    std::string error;
    for (const auto& value : images) {
      std::int64_t image_id = 0;
      error = read_json_integer(value, keys.images, &image_id);
      if (!error.empty()) {
        error = fmt::format("an entry of '{}' is {}, not an integer", keys.images,
                            json_type_name(value));
        break;
      }
      if (std::find(query.image_ids.begin(), query.image_ids.end(), image_id) !=
          query.image_ids.end()) {
        error = fmt::format("image id {} listed twice", image_id);
        break;
      }
      if (options.image_exists && !options.image_exists(image_id)) {
        error = fmt::format("unknown image id {} (not among the split's good images)", image_id);
        break;
      }
      query.image_ids.push_back(image_id);
    }
    if (!error.empty()) {
      bad(error);
      continue;
    }
    if (options.require_image_ids && query.image_ids.empty()) {
      bad(fmt::format("query {} lists no image ids", query.id));
      continue;
    }
    if (!seen_ids.insert(query.id).second) {
      bad(fmt::format("duplicate {} {} (first occurrence kept)", keys.id, query.id));
      continue;
    }
    set.queries.push_back(std::move(query));
  }
  log.add_rows(path, rows);
  return set;
}

// ---- images ----------------------------------------------------------------------------------

std::vector<ImageRow> index_images_tsv(const std::string& path, BadRowLog& log) {
  std::vector<ImageRow> rows;
  std::unordered_set<std::int64_t> seen;
  LineReader reader(path);
  Line line;
  std::int64_t count = 0;
  while (reader.next(&line)) {
    if (line.blank()) continue;
    ++count;
    const std::int64_t number = line.number;
    const std::string_view text = line.text;
    const auto tab = text.find('\t');
    if (tab == std::string_view::npos) {
      log.add_bad(path, number, "no tab between image id and base64 image");
      continue;
    }
    ImageRow row;
    row.line = number;
    const std::string_view id_text = text.substr(0, tab);
    if (!parse_decimal_id(id_text, &row.id)) {
      log.add_bad(
          path, number,
          fmt::format("image id '{}' is not an integer", std::string(id_text.substr(0, 40))));
      continue;
    }
    row.field_offset = line.offset + static_cast<std::int64_t>(tab) + 1;
    row.field_size = static_cast<std::int64_t>(text.size() - tab - 1);
    if (row.field_size == 0) {
      log.add_bad(path, number, fmt::format("image {} has an empty base64 field", row.id));
      continue;
    }
    if (!seen.insert(row.id).second) {
      log.add_bad(path, number,
                  fmt::format("duplicate image id {} (first occurrence kept)", row.id));
      continue;
    }
    rows.push_back(row);
  }
  log.add_rows(path, count);
  return rows;
}

void read_image_fields(const std::string& path, const std::vector<ImageRow>& rows,
                       std::size_t first, std::size_t count,
                       const std::function<void(const ImageRow&, std::string_view)>& fn) {
  if (first + count > rows.size()) throw std::out_of_range("read_image_fields: range past the end");
  if (count == 0) return;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot open '{}'", path));
  // Rows of an index are in file order: read the bytes spanning several rows with one call (the
  // ids, tabs and line ends between fields come along) instead of seeking to every field.
  constexpr std::int64_t kSpanBytes = 8 << 20;
  std::string span;
  std::size_t i = first;
  while (i < first + count) {
    const std::int64_t begin = rows[i].field_offset;
    std::size_t last = i;
    while (last + 1 < first + count &&
           rows[last + 1].field_offset + rows[last + 1].field_size - begin <= kSpanBytes) {
      ++last;
    }
    const std::int64_t end = rows[last].field_offset + rows[last].field_size;
    span.resize(static_cast<std::size_t>(end - begin));
    in.seekg(begin);
    if (!in.read(span.data(), end - begin)) {
      throw DataError(fmt::format("{}: line {}: file shorter than indexed (changed since?)", path,
                                  rows[last].line));
    }
    for (; i <= last; ++i) {
      fn(rows[i],
         std::string_view(span).substr(static_cast<std::size_t>(rows[i].field_offset - begin),
                                       static_cast<std::size_t>(rows[i].field_size)));
    }
  }
}

// ---- writers ---------------------------------------------------------------------------------

void write_queries(const std::string& path, QuerySchema schema, const std::vector<Query>& queries) {
  const QueryFields keys = query_fields(schema);
  std::string text;
  for (const auto& query : queries) {
    json row;
    row[keys.id] = query.id;
    row[keys.text] = query.text;
    row[keys.images] = query.image_ids;
    text += row.dump(-1, ' ', false) + "\n";
  }
  write_file_atomic(path, text);
}

void write_images_tsv(const std::string& path,
                      const std::vector<std::pair<std::int64_t, std::string>>& id_and_base64) {
  std::string text;
  for (const auto& [id, base64] : id_and_base64) {
    text += std::to_string(id);
    text += '\t';
    text += base64;
    text += '\n';
  }
  write_file_atomic(path, text);
}

void write_predictions(const std::string& path, QuerySchema schema,
                       const std::vector<Prediction>& predictions) {
  const QueryFields keys = query_fields(schema);
  std::string text;
  for (const auto& prediction : predictions) {
    json row;
    row[keys.id] = prediction.query_id;
    row[keys.images] = prediction.image_ids;
    text += row.dump() + "\n";
  }
  write_file_atomic(path, text);
}

std::vector<Prediction> read_predictions(const std::string& path, QuerySchema schema,
                                         int expected_ids) {
  const QueryFields keys = query_fields(schema);
  std::vector<Prediction> predictions;
  std::unordered_set<std::int64_t> seen;
  LineReader reader(path);
  Line line;
  while (reader.next(&line)) {
    auto fail = [&](const std::string& reason) { reader.fail(line, reason); };
    // The official scorer parses every line, so a blank one fails the whole file there too.
    if (line.blank()) fail("a blank line is not JSON");
    const json row = reader.parse_json(line);
    if (!row.is_object() || !row.contains(keys.id) || !row.contains(keys.images)) {
      fail(fmt::format("expected an object with '{}' and '{}'", keys.id, keys.images));
    }
    Prediction prediction;
    if (auto error = read_json_integer(row[keys.id], keys.id, &prediction.query_id);
        !error.empty()) {
      fail(error);
    }
    const json& ids = row[keys.images];
    if (!ids.is_array()) fail(fmt::format("'{}' is not a list", keys.images));
    for (const auto& value : ids) {
      std::int64_t id = 0;
      if (auto error = read_json_integer(value, keys.images, &id); !error.empty()) {
        fail(fmt::format("an entry of '{}' is {}, not an integer", keys.images,
                         json_type_name(value)));
      }
      if (std::find(prediction.image_ids.begin(), prediction.image_ids.end(), id) !=
          prediction.image_ids.end()) {
        fail(fmt::format("query {} predicts image {} twice", prediction.query_id, id));
      }
      prediction.image_ids.push_back(id);
    }
    if (static_cast<int>(prediction.image_ids.size()) != expected_ids) {
      fail(fmt::format("query {} has {} predicted ids; exactly {} are required",
                       prediction.query_id, prediction.image_ids.size(), expected_ids));
    }
    if (!seen.insert(prediction.query_id).second) {
      fail(fmt::format("query {} appears twice", prediction.query_id));
    }
    predictions.push_back(std::move(prediction));
  }
  return predictions;
}

// ---- UTF-8 -----------------------------------------------------------------------------------

bool is_valid_utf8(std::string_view text, std::size_t* error_offset) {
  char32_t code_point = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t length = decode_utf8(text, i, &code_point);
    if (length == 0) {
      if (error_offset) *error_offset = i;
      return false;
    }
    i += length;
  }
  return true;
}

std::string json_type_name(const json& value) {
  if (value.is_string()) return "a string";
  if (value.is_number_float()) return "a float";
  if (value.is_boolean()) return "a boolean";
  if (value.is_null()) return "null";
  if (value.is_array()) return "a list";
  if (value.is_object()) return "an object";
  return "a number";
}

std::string read_json_integer(const json& value, const char* key, std::int64_t* out) {
  if (!value.is_number_integer()) {
    return fmt::format("'{}' is {}, not an integer", key, json_type_name(value));
  }
  if (value.is_number_unsigned() && value.get<std::uint64_t>() > INT64_MAX) {
    return fmt::format("'{}' is out of the int64 range", key);
  }
  *out = value.get<std::int64_t>();
  return {};
}

QueryFields query_fields(QuerySchema schema) {
  return schema == QuerySchema::kChineseClip ? QueryFields{"text_id", "text", "image_ids"}
                                             : QueryFields{"query_id", "query_text", "item_ids"};
}

bool parse_decimal_id(std::string_view text, std::int64_t* out) {
  const bool negative = !text.empty() && text[0] == '-';
  const std::string_view digits = text.substr(negative ? 1 : 0);
  if (digits.empty() || digits.size() > 19) return false;
  std::uint64_t value = 0;  // 19 digits stay below 10^19 < 2^64: no wrap-around
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value > static_cast<std::uint64_t>(INT64_MAX)) return false;
  *out = negative ? -static_cast<std::int64_t>(value) : static_cast<std::int64_t>(value);
  return true;
}

}  // namespace shopclip::data
