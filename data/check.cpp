#include "data/check.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <xxhash.h>

#include <fmt/format.h>

#include "data/base64.h"
#include "data/error.h"
#include "data/files.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/utf8.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Split order matters: leakage is reported on the later split, and train comes first.
constexpr const char* kSplits[] = {"train", "valid", "test"};
constexpr int kTrain = 0;
constexpr int kTest = 2;

// Multiplier of ContentKeyHash (XXH64's third prime: odd, well mixed).
constexpr std::uint64_t kMixPrime = 0x165667B19E3779F9ULL;

// Identical content: the hash and the length must both match (a 64-bit hash alone would already
// make a false match among a few million images improbable; the length costs nothing).
struct ContentKey {
  std::uint64_t hash = 0;
  std::uint64_t size = 0;
  bool operator==(const ContentKey& other) const {
    return hash == other.hash && size == other.size;
  }
};

struct ContentKeyHash {
  std::size_t operator()(const ContentKey& key) const {
    return static_cast<std::size_t>(key.hash ^ (key.size * kMixPrime));
  }
};

// ---- text helpers ----------------------------------------------------------------------------

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

// Strips ASCII white space and U+3000 (the ideographic space Chinese input methods type) from
// both ends: "红色 连衣裙\u3000" and "红色 连衣裙" are the same query to a user.
std::string_view trim_text(std::string_view text) {
  constexpr std::string_view kIdeographicSpace = "\xE3\x80\x80";
  bool changed = true;
  while (changed && !text.empty()) {
    changed = false;
    if (is_ascii_space(text.front())) {
      text.remove_prefix(1);
      changed = true;
    } else if (text.substr(0, 3) == kIdeographicSpace) {
      text.remove_prefix(3);
      changed = true;
    }
    if (text.empty()) break;
    if (is_ascii_space(text.back())) {
      text.remove_suffix(1);
      changed = true;
    } else if (text.size() >= 3 && text.substr(text.size() - 3) == kIdeographicSpace) {
      text.remove_suffix(3);
      changed = true;
    }
  }
  return text;
}

// Code points of valid UTF-8 text: every byte that is not a continuation byte starts one.
std::int64_t count_code_points(std::string_view text) {
  return std::count_if(text.begin(), text.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

// Input text quoted in a message: at most max_chars code points; invalid UTF-8 and control bytes
// become \xNN so a message is always printable and valid JSON.
std::string excerpt(std::string_view text, std::size_t max_chars = 40) {
  std::string out;
  std::size_t chars = 0, i = 0;
  while (i < text.size()) {
    if (chars == max_chars) {
      out += "...";
      break;
    }
    const auto lead = static_cast<unsigned char>(text[i]);
    char32_t code_point = 0;
    const std::size_t length = decode_utf8(text, i, &code_point);
    if (length == 1 && lead >= 0x20 && lead != 0x7F) {
      out += text[i];
      i += 1;
    } else if (length > 1) {
      out += text.substr(i, length);
      i += length;
    } else {
      out += fmt::format("\\x{:02X}", lead);
      i += 1;
    }
    ++chars;
  }
  return out;
}

// ---- the checker -----------------------------------------------------------------------------

// A split being checked: its files as find_split_files found them, and its place in kSplits.
struct CheckedSplit {
  int split = 0;  // index into kSplits
  std::string images;
  std::string queries;  // "" when has_queries is false
  bool has_images = false;
  bool has_queries = false;
  QuerySchema schema = QuerySchema::kChineseClip;
};

// One image line waiting in a decode batch.
struct PendingImage {
  std::int64_t id = 0;
  std::int64_t line = 0;
  std::string base64;
};

// What a worker found out about one image.
struct ImageVerdict {
  const char* code = nullptr;  // an error code, or nullptr when the image decoded
  std::string message;
  ContentKey content;
  int width = 0;
  int height = 0;
};

std::string hex_prefix(std::string_view bytes, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < std::min(count, bytes.size()); ++i) {
    out += fmt::format("{}{:02X}", i ? " " : "", static_cast<unsigned char>(bytes[i]));
  }
  return out;
}

// Decodes one base64 field and its image. Never throws: every failure is a verdict.
ImageVerdict inspect_image(const PendingImage& pending) {
  ImageVerdict verdict;
  std::string bytes;
  try {
    bytes = decode_base64(pending.base64);
  } catch (const std::exception& e) {
    verdict.code = "image-bad-base64";
    verdict.message = fmt::format("image {}: {}", pending.id, e.what());
    return verdict;
  }
  verdict.content = ContentKey{content_hash(bytes), bytes.size()};
  try {
    const Image image = decode_image(bytes);
    verdict.width = image.width;
    verdict.height = image.height;
  } catch (const DataError& e) {
    const std::string_view reason = e.what();
    if (reason == "not a JPEG or PNG image") {
      verdict.code = "image-not-image";
      verdict.message = fmt::format("image {}: not a JPEG or PNG image ({} bytes, starting {})",
                                    pending.id, bytes.size(), hex_prefix(bytes, 4));
      return verdict;
    }
    if (reason.substr(0, 9) == "truncated") {
      verdict.code = "image-truncated";
    } else if (reason.substr(0, 15) == "image too large") {
      verdict.code = "image-bad-dimensions";
    } else {
      verdict.code = "image-corrupt";
    }
    verdict.message = fmt::format("image {}: {}", pending.id, reason);
  } catch (const std::exception& e) {
    // Not the data's fault as such (e.g. out of memory), but the image could not be checked.
    verdict.code = "image-corrupt";
    verdict.message = fmt::format("image {}: decoder failed: {}", pending.id, e.what());
  }
  return verdict;
}

class Checker {
 public:
  Checker(const CheckOptions& options, const CheckProgress& progress)
      : options_(options), progress_(progress), threads_(resolve_threads(options.threads)) {}

  // Checks the splits (in the order train, valid, test) and returns the report with
  // file_findings (about the splits' files, found while discovering them) merged in.
  CheckReport run(const std::vector<CheckedSplit>& splits,
                  std::vector<CheckFinding> file_findings) {
    report_.findings = std::move(file_findings);
    for (const auto& split : splits) {
      images_paths_[split.split] = split.images;
      queries_paths_[split.split] = split.queries;
    }
    for (const auto& split : splits) {
      for (const auto* path : {&split.images, &split.queries}) {
        std::error_code error;
        const auto size = fs::file_size(*path, error);
        if (!error) total_bytes_ += static_cast<std::int64_t>(size);
      }
    }
    report_progress(0);
    for (const auto& split : splits) {
      SplitCounts counts;
      counts.split = kSplits[split.split];
      pool_.clear();
      pool_complete_ = false;
      if (split.has_images) counts.images = check_images(split);
      if (split.has_queries) counts.queries = check_queries(split);
      report_.splits.push_back(counts);
    }
    if (progress_)
      progress_(std::max(done_bytes_, total_bytes_), std::max(done_bytes_, total_bytes_));
    std::sort(report_.findings.begin(), report_.findings.end(),
              [](const CheckFinding& a, const CheckFinding& b) {
                return std::tie(a.file, a.line, a.code, a.message) <
                       std::tie(b.file, b.line, b.code, b.message);
              });
    return std::move(report_);
  }

 private:
  // Where the first copy of some image bytes (or some query text) was seen.
  struct FirstSeen {
    int split = 0;
    std::int64_t id = 0;
    std::int64_t line = 0;
  };

  void add(Severity severity, const char* code, const std::string& file, std::int64_t line,
           std::string message) {
    report_.findings.push_back(CheckFinding{severity, code, file, line, std::move(message)});
  }
  void error(const char* code, const std::string& file, std::int64_t line, std::string message) {
    add(Severity::kError, code, file, line, std::move(message));
  }
  void warning(const char* code, const std::string& file, std::int64_t line, std::string message) {
    add(Severity::kWarning, code, file, line, std::move(message));
  }

  void report_progress(std::int64_t current_file_bytes) {
    if (progress_) progress_(done_bytes_ + current_file_bytes, total_bytes_);
  }

  // Open failure and read errors of a file; returns false when it could not be read to the end.
  bool reader_finished(const LineReader& reader, const std::string& path) {
    if (!reader.opened()) {
      error("file-unreadable", path, 0, fmt::format("cannot open {}: {}", path, reader.error()));
      return false;
    }
    if (!reader.error().empty()) {
      error("file-unreadable", path, reader.line_number() + 1,
            fmt::format("read error after line {}: {}; the rest of {} is not checked",
                        reader.line_number(), reader.error(), path));
      return false;
    }
    return true;
  }

  // ---- images ----

  std::int64_t check_images(const CheckedSplit& split) {
    const std::string& path = split.images;
    LineReader reader(path, LineReader::OnError::kRecord);
    const std::size_t max_rows = static_cast<std::size_t>(threads_) * 256;
    std::vector<PendingImage> batch;
    std::int64_t batch_bytes = 0;
    std::int64_t rows = 0;
    Line read;
    while (reader.next(&read)) {
      if (read.blank()) continue;  // e.g. a trailing empty line: not a row
      ++rows;
      const std::int64_t number = read.number;
      const std::string_view line = read.text;
      const auto tab = line.find('\t');
      if (tab == std::string_view::npos) {
        error("tsv-no-tab", path, number, "no tab between image id and base64 image");
        continue;
      }
      std::int64_t id = 0;
      if (!parse_decimal_id(line.substr(0, tab), &id)) {
        error("tsv-bad-id", path, number,
              fmt::format("image id '{}' is not an integer", excerpt(line.substr(0, tab))));
        continue;
      }
      // The id joins the pool before its field is judged: a query pointing at a bad image is
      // then not reported a second time as pointing at a missing one.
      const auto [first, inserted] = pool_.emplace(id, number);
      if (!inserted) {
        error("image-duplicate-id", path, number,
              fmt::format("duplicate image id {} (first on line {}); this line is ignored", id,
                          first->second));
        continue;
      }
      const std::string_view field = line.substr(tab + 1);
      if (field.empty()) {
        error("tsv-empty-field", path, number,
              fmt::format("image {} has an empty base64 field", id));
        continue;
      }
      batch.push_back(PendingImage{id, number, std::string(field)});
      batch_bytes += static_cast<std::int64_t>(field.size());
      if (batch.size() >= max_rows || batch_bytes >= options_.batch_bytes) {
        decode_batch(split, batch);
        batch_bytes = 0;
        report_progress(reader.bytes_read());
      }
    }
    decode_batch(split, batch);
    pool_complete_ = reader_finished(reader, path);
    if (pool_complete_ && rows == 0) {
      warning("file-empty", path, 0, fmt::format("{} holds no images", path));
    }
    done_bytes_ += reader.bytes_read();
    report_progress(0);
    return rows;
  }

  void decode_batch(const CheckedSplit& split, std::vector<PendingImage>& batch) {
    std::vector<ImageVerdict> verdicts(batch.size());
    parallel_for(0, batch.size(), threads_,
                 [&](std::size_t i) { verdicts[i] = inspect_image(batch[i]); });
    // Judged in file order on this thread, so which copy counts as the first one (and so the
    // whole report) does not depend on the thread count.
    for (std::size_t i = 0; i < batch.size(); ++i)
      judge_image(split, batch[i], verdicts[i]);
    batch.clear();
  }

  void judge_image(const CheckedSplit& split, const PendingImage& image,
                   const ImageVerdict& verdict) {
    const std::string& path = split.images;
    if (verdict.code != nullptr) {
      error(verdict.code, path, image.line, verdict.message);
      return;
    }
    const int shorter = std::min(verdict.width, verdict.height);
    const int longer = std::max(verdict.width, verdict.height);
    const double aspect = static_cast<double>(longer) / static_cast<double>(shorter);
    const std::string size =
        fmt::format("image {} is {}x{}", image.id, verdict.width, verdict.height);
    if (shorter < options_.min_side) {
      warning("image-too-small", path, image.line,
              fmt::format("{}: shorter side {} < {}", size, shorter, options_.min_side));
    } else if (longer > options_.max_side) {
      warning("image-too-large", path, image.line,
              fmt::format("{}: longer side {} > {}", size, longer, options_.max_side));
    } else if (aspect > options_.max_aspect) {
      warning("image-extreme-aspect", path, image.line,
              fmt::format("{}: aspect ratio {:.2f} > {}", size, aspect, options_.max_aspect));
    }

    const auto [entry, inserted] =
        contents_.emplace(verdict.content, FirstSeen{split.split, image.id, image.line});
    if (inserted) return;
    const FirstSeen& first = entry->second;
    const std::string where = fmt::format("{}:{}", images_paths_[first.split], first.line);
    if (first.split == kTrain && split.split != kTrain) {
      warning("leak-image", path, image.line,
              fmt::format("{} image {} has the same bytes as train image {} ({})",
                          kSplits[split.split], image.id, first.id, where));
    } else {
      warning(
          "image-duplicate-content", path, image.line,
          fmt::format("image {} has the same bytes as image {} ({})", image.id, first.id, where));
    }
  }

  // ---- queries ----

  std::int64_t check_queries(const CheckedSplit& split) {
    const std::string& path = split.queries;
    const QueryFields keys = query_fields(split.schema);
    LineReader reader(path, LineReader::OnError::kRecord);
    std::unordered_map<std::int64_t, std::int64_t> first_line_of_id;
    std::int64_t rows = 0;
    Line line;
    while (reader.next(&line)) {
      if (line.blank()) continue;
      ++rows;
      check_query(split, keys, line.number, line.text, first_line_of_id);
      if (rows % 16384 == 0) report_progress(reader.bytes_read());
    }
    const bool complete = reader_finished(reader, path);
    if (complete && rows == 0) {
      warning("file-empty", path, 0, fmt::format("{} holds no queries", path));
    }
    done_bytes_ += reader.bytes_read();
    report_progress(0);
    return rows;
  }

  void check_query(const CheckedSplit& split, const QueryFields& keys, std::int64_t number,
                   std::string_view line,
                   std::unordered_map<std::int64_t, std::int64_t>& first_line_of_id) {
    const std::string& path = split.queries;
    std::size_t utf8_error = 0;
    if (!is_valid_utf8(line, &utf8_error)) {
      error("query-invalid-utf8", path, number,
            fmt::format("invalid UTF-8 at byte {}", utf8_error + 1));
      return;
    }
    json row;
    if (const std::string reason = parse_json_line(line, &row); !reason.empty()) {
      // "not JSON: " and the parser's message, which may quote control bytes: escaped.
      error("query-not-json", path, number, excerpt(reason, 210));
      return;
    }
    if (!row.is_object()) {
      error("query-not-json", path, number,
            fmt::format("not a JSON object but {}", json_type_name(row)));
      return;
    }
    std::string missing;
    for (const char* key : {keys.id, keys.text, keys.images}) {
      if (!row.contains(key)) missing += fmt::format("{}'{}'", missing.empty() ? "" : ", ", key);
    }
    if (!missing.empty()) {
      error("query-missing-field", path, number, fmt::format("missing field {}", missing));
      return;
    }
    std::int64_t id = 0;
    if (auto reason = read_json_integer(row[keys.id], keys.id, &id); !reason.empty()) {
      error("query-bad-id", path, number, reason);
      return;
    }
    const auto [first, inserted] = first_line_of_id.emplace(id, number);
    if (!inserted) {
      error("query-duplicate-id", path, number,
            fmt::format("duplicate {} {} (first on line {}); this line is ignored", keys.id, id,
                        first->second));
      return;
    }
    check_query_text(split, keys, number, id, row[keys.text]);
    check_query_images(split, keys, number, id, row[keys.images]);
  }

  void check_query_text(const CheckedSplit& split, const QueryFields& keys, std::int64_t number,
                        std::int64_t id, const json& value) {
    const std::string& path = split.queries;
    if (!value.is_string()) {
      error("query-bad-field", path, number,
            fmt::format("'{}' is {}, not a string", keys.text, json_type_name(value)));
      return;
    }
    const std::string& text = value.get_ref<const std::string&>();
    const std::string_view trimmed = trim_text(text);
    if (trimmed.empty()) {
      error("query-empty-text", path, number, fmt::format("query {} has an empty text", id));
      return;
    }
    const std::int64_t chars = count_code_points(text);
    if (chars > options_.max_query_chars) {
      warning("query-too-long", path, number,
              fmt::format("query {} has {} characters, more than {}: '{}'", id, chars,
                          options_.max_query_chars, excerpt(text, 20)));
    }
    const ContentKey key{content_hash(trimmed), trimmed.size()};
    const auto [entry, inserted] = texts_.emplace(key, FirstSeen{split.split, id, number});
    if (inserted || entry->second.split == split.split) return;
    const FirstSeen& first = entry->second;
    warning("leak-query", path, number,
            fmt::format("{} query {} '{}' is also {} query {} ({}:{})", kSplits[split.split], id,
                        excerpt(trimmed, 20), kSplits[first.split], first.id,
                        queries_paths_[first.split], first.line));
  }

  void check_query_images(const CheckedSplit& split, const QueryFields& keys, std::int64_t number,
                          std::int64_t id, const json& value) {
    const std::string& path = split.queries;
    if (!value.is_array()) {
      error("query-bad-field", path, number,
            fmt::format("'{}' is {}, not a list", keys.images, json_type_name(value)));
      return;
    }
    std::vector<std::int64_t> image_ids;
    image_ids.reserve(value.size());
    for (const auto& entry : value) {
      std::int64_t image_id = 0;
      if (!read_json_integer(entry, keys.images, &image_id).empty()) {
        error("query-bad-id", path, number,
              fmt::format("an entry of '{}' is {}, not an integer", keys.images,
                          json_type_name(entry)));
        return;
      }
      image_ids.push_back(image_id);
    }
    if (image_ids.empty()) {
      // MUGE test queries come without ground truth; elsewhere a query must have some.
      if (split.split != kTest) {
        error("query-no-images", path, number,
              fmt::format("{} query {} lists no image ids", kSplits[split.split], id));
      }
      return;
    }
    for (std::size_t i = 0; i < image_ids.size(); ++i) {
      const auto begin = image_ids.begin();
      if (std::find(begin, begin + static_cast<std::ptrdiff_t>(i), image_ids[i]) !=
          begin + static_cast<std::ptrdiff_t>(i)) {
        error("query-repeated-image", path, number,
              fmt::format("query {} lists image id {} twice", id, image_ids[i]));
        continue;
      }
      // Only a fully read image file says which ids exist; otherwise every reference past the
      // read error would be reported as a missing image.
      if (pool_complete_ && pool_.count(image_ids[i]) == 0) {
        error("query-unknown-image", path, number,
              fmt::format("query {} refers to image {}, which is not in {}", id, image_ids[i],
                          split.images));
      }
    }
  }

  const CheckOptions& options_;
  const CheckProgress& progress_;
  const int threads_;
  CheckReport report_;
  // Paths per split index, for messages naming the first copy in another split.
  std::string images_paths_[3];
  std::string queries_paths_[3];
  std::int64_t total_bytes_ = 0;
  std::int64_t done_bytes_ = 0;
  // The current split's image ids -> their line (all ids with a parseable line, good or bad).
  std::unordered_map<std::int64_t, std::int64_t> pool_;
  bool pool_complete_ = false;
  // First copy of each image content and of each trimmed query text, over all splits.
  std::unordered_map<ContentKey, FirstSeen, ContentKeyHash> contents_;
  std::unordered_map<ContentKey, FirstSeen, ContentKeyHash> texts_;
};

void validate(const CheckOptions& options) {
  if (options.min_side < 0 || options.max_side < 1 || options.max_side < options.min_side) {
    throw std::invalid_argument(
        fmt::format("check options: need 0 <= min_side ({}) <= max_side ({}), max_side >= 1",
                    options.min_side, options.max_side));
  }
  if (!(options.max_aspect >= 1.0)) {
    throw std::invalid_argument(
        fmt::format("check options: max_aspect ({}) must be at least 1", options.max_aspect));
  }
  if (options.max_query_chars < 0 || options.threads < 0 || options.batch_bytes <= 0) {
    throw std::invalid_argument(
        fmt::format("check options: max_query_chars ({}) and threads ({}) must be >= 0, "
                    "batch_bytes ({}) > 0",
                    options.max_query_chars, options.threads, options.batch_bytes));
  }
}

}  // namespace

std::uint64_t content_hash(std::string_view bytes) {
  return XXH64(bytes.data(), bytes.size(), /*seed=*/0);
}

const char* severity_name(Severity severity) {
  return severity == Severity::kError ? "error" : "warning";
}

// ---- CheckReport -----------------------------------------------------------------------------

std::int64_t CheckReport::errors() const {
  return std::count_if(findings.begin(), findings.end(),
                       [](const CheckFinding& f) { return f.severity == Severity::kError; });
}

std::int64_t CheckReport::warnings() const {
  return std::count_if(findings.begin(), findings.end(),
                       [](const CheckFinding& f) { return f.severity == Severity::kWarning; });
}

int CheckReport::exit_status() const {
  if (errors() > 0) return 2;
  return warnings() > 0 ? 1 : 0;
}

std::string CheckReport::to_text(std::size_t max_per_code) const {
  std::string out = fmt::format("{} errors, {} warnings\n", errors(), warnings());
  if (!splits.empty()) {
    out += fmt::format("\n{:<8} {:>10} {:>10}\n", "split", "images", "queries");
    for (const auto& split : splits)
      out += fmt::format("{:<8} {:>10} {:>10}\n", split.split, split.images, split.queries);
  }
  if (findings.empty()) return out;

  std::map<std::string, std::pair<Severity, std::size_t>> per_code;
  for (const auto& finding : findings) {
    auto& entry = per_code.try_emplace(finding.code, finding.severity, 0).first->second;
    ++entry.second;
  }
  out += fmt::format("\n{:<26} {:<8} {:>8}\n", "code", "severity", "count");
  for (const auto& [code, entry] : per_code)
    out += fmt::format("{:<26} {:<8} {:>8}\n", code, severity_name(entry.first), entry.second);

  out += "\n";
  std::map<std::string, std::size_t> shown;
  for (const auto& finding : findings) {
    std::size_t& count = shown[finding.code];
    if (max_per_code != 0 && count >= max_per_code) continue;
    ++count;
    // Line 0 is about the whole file; "file:0:" would send an editor to a line that is not there.
    const std::string where =
        finding.line > 0 ? fmt::format("{}:{}", finding.file, finding.line) : finding.file;
    out += fmt::format("{}: {} [{}] {}\n", where, severity_name(finding.severity), finding.code,
                       finding.message);
  }
  for (const auto& [code, entry] : per_code) {
    if (max_per_code != 0 && entry.second > max_per_code) {
      out += fmt::format("... {} more [{}] not shown\n", entry.second - max_per_code, code);
    }
  }
  return out;
}

nlohmann::json CheckReport::to_json() const {
  json out;
  out["errors"] = errors();
  out["warnings"] = warnings();
  out["exit_status"] = exit_status();
  out["splits"] = json::array();
  for (const auto& split : splits) {
    out["splits"].push_back(
        json{{"split", split.split}, {"images", split.images}, {"queries", split.queries}});
  }
  json counts = json::object();
  for (const auto& finding : findings) {
    counts[finding.code] = counts.value(finding.code, 0) + 1;
  }
  out["counts"] = counts;
  out["findings"] = json::array();
  for (const auto& finding : findings) {
    out["findings"].push_back(json{{"severity", severity_name(finding.severity)},
                                   {"code", finding.code},
                                   {"file", finding.file},
                                   {"line", finding.line},
                                   {"message", finding.message}});
  }
  return out;
}

CheckReport CheckReport::from_json(const nlohmann::json& value) {
  CheckReport report;
  try {
    for (const auto& split : value.at("splits")) {
      report.splits.push_back(SplitCounts{split.at("split").get<std::string>(),
                                          split.at("images").get<std::int64_t>(),
                                          split.at("queries").get<std::int64_t>()});
    }
    for (const auto& item : value.at("findings")) {
      const std::string severity = item.at("severity").get<std::string>();
      if (severity != "error" && severity != "warning") {
        throw DataError(fmt::format("check report: unknown severity '{}'", severity));
      }
      report.findings.push_back(
          CheckFinding{severity == "error" ? Severity::kError : Severity::kWarning,
                       item.at("code").get<std::string>(), item.at("file").get<std::string>(),
                       item.at("line").get<std::int64_t>(), item.at("message").get<std::string>()});
    }
  } catch (const json::exception& e) {
    throw DataError(
        fmt::format("check report: not the layout CheckReport::to_json writes: {}", e.what()));
  }
  return report;
}

// ---- check_dataset ---------------------------------------------------------------------------

CheckReport check_dataset(const std::string& root, const CheckOptions& options,
                          const CheckProgress& progress) {
  validate(options);
  std::vector<CheckedSplit> splits;
  std::vector<CheckFinding> file_findings;
  auto file_error = [&](const char* code, const std::string& path, std::string message) {
    file_findings.push_back(CheckFinding{Severity::kError, code, path, 0, std::move(message)});
  };
  for (int index = 0; index < 3; ++index) {
    const std::string split_name = kSplits[index];
    // find_queries_file would throw on the cases reported here as findings.
    const SplitFiles files = find_split_files(root, split_name);
    if (!files.any()) continue;
    CheckedSplit split;
    split.split = index;
    split.images = files.images;
    split.has_images = files.has_images;
    split.has_queries = files.has_queries();
    split.schema = files.schema();
    split.queries = files.queries();
    if (!split.has_images) {
      file_error("file-missing", split.images,
                 fmt::format("split '{}' has a query file but no {}", split_name, split.images));
    }
    if (!split.has_queries) {
      file_error("file-missing", files.clip_queries,
                 fmt::format("split '{}' has {} but no query file: expected {} or {}", split_name,
                             split.images, files.clip_queries, files.tianchi_queries));
    }
    if (files.two_schemas()) {
      file_error("file-two-schemas", files.tianchi_queries,
                 fmt::format("both {} and {} exist; checked the first, ignored this one",
                             files.clip_queries, files.tianchi_queries));
    }
    splits.push_back(std::move(split));
  }
  if (splits.empty()) {
    throw DataError(fmt::format(
        "{}: no MUGE split files: expected {{split}}_imgs.tsv and {{split}}_texts.jsonl or "
        "{{split}}_queries.jsonl for split train, valid or test",
        root));
  }
  return Checker(options, progress).run(splits, std::move(file_findings));
}

}  // namespace shopclip::data
