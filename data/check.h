#pragma once
// Dataset quality checker behind `shopclip data check DIR`: reads every MUGE split in DIR (train,
// valid, test: {split}_imgs.tsv plus {split}_texts.jsonl or {split}_queries.jsonl), decodes every
// image fully and lists each problem once, with a severity, a stable code, its file and line.
//
// Unlike the readers of muge.h, which skip bad rows so a run can go on, the checker exists to
// describe a dataset: it never stops at a broken file (an unreadable or missing file is itself a
// finding) and also reports what the readers accept but a user should know about (duplicate image
// bytes, leakage between splits, extreme image sizes, overlong queries).
//
// Codes (stable: scripts may filter on them), "E" error, "W" warning:
//   files   E file-missing          a split has its image file but no query file, or the reverse
//           E file-unreadable       cannot open or read a file (the rest of it is not checked)
//           E file-two-schemas      both {split}_texts.jsonl and {split}_queries.jsonl exist
//                                   (the Chinese-CLIP file is checked, the Tianchi one ignored)
//           W file-empty            a file with no rows
//   tsv     E tsv-no-tab            a line without the tab between id and base64
//           E tsv-bad-id            an image id that is not a decimal int64
//           E tsv-empty-field       nothing after the tab
//           E image-duplicate-id    the id was on an earlier line (the message names it); the
//                                   repeated line is not checked further (readers drop it)
//           E image-bad-base64      the field is not strict base64
//           E image-not-image       the bytes are neither a JPEG nor a PNG file
//           E image-truncated       a JPEG or PNG cut short
//           E image-corrupt         any other decode failure (libjpeg warnings count)
//           E image-bad-dimensions  the decoder refuses the size (empty or > 2^27 pixels)
//           W image-too-small       shorter side < min_side      } at most one of these three
//           W image-too-large       longer side > max_side       } per image, in this order
//           W image-extreme-aspect  longer / shorter side > max_aspect
//           W image-duplicate-content  identical file bytes as an earlier image (same split, or
//                                   another split unless that is a leak); one per repeated copy
//           W leak-image            a valid/test image whose bytes are also a train image
//   queries E query-invalid-utf8    the line is not valid UTF-8 (byte offset given)
//           E query-not-json        not JSON, or not a JSON object
//           E query-missing-field   one of the schema's three fields is absent
//           E query-bad-id          the query id or an entry of the image id list is not an
//                                   integer (int64)
//           E query-bad-field       the text is not a string or the id list not a list
//           E query-duplicate-id    the query id was on an earlier line (the message names it);
//                                   the repeated line is not checked further
//           E query-empty-text      empty or whitespace-only text
//           W query-too-long        more than max_query_chars code points
//           E query-no-images       a train/valid query with an empty id list
//           E query-repeated-image  one image id listed twice in a query
//           E query-unknown-image   an image id not in the split's image file (one finding per
//                                   missing id; only checked when the image file was fully read)
//           W leak-query            the same text (trimmed) as a query of another, earlier split
//                                   (train < valid < test); one per repeated query
// Only images that decode are compared for duplicate bytes; a query pointing at a bad image is
// not reported again (the image is).
//
// Memory: per image only its id, line, a 64-bit content hash, its byte size and split; per query
// its id, line and a text hash. Image lines are streamed in batches (bounded by count and bytes)
// and decoded in parallel; the report does not depend on the thread count.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace shopclip::data {

// The content hash the checker compares image bytes and query texts by: XXH64 with seed 0
// (libxxhash), fast next to decoding the images it hashes. Hashes never leave the process.
std::uint64_t content_hash(std::string_view bytes);

enum class Severity { kWarning, kError };
const char* severity_name(Severity severity);  // "warning" / "error"

struct CheckFinding {
  Severity severity = Severity::kError;
  std::string code;       // one of the codes listed above
  std::string file;       // the path as built from the root given to check_dataset
  std::int64_t line = 0;  // 1-based; 0 for a finding about a whole file
  std::string message;    // one line, valid UTF-8 (bytes from the input are escaped)
};

struct CheckOptions {
  int min_side = 32;         // image-too-small when the shorter side is below this
  int max_side = 4096;       // image-too-large when the longer side is above this
  double max_aspect = 5.0;   // image-extreme-aspect when longer / shorter side exceeds this
  int max_query_chars = 64;  // query-too-long when the text has more code points than this
  int threads = 0;           // image decoding threads; 0 = all hardware threads
  // Image lines held in memory at once: a batch ends at this many base64 bytes (or 256 lines per
  // thread, whichever comes first). Bounds memory at MUGE scale.
  std::int64_t batch_bytes = std::int64_t{64} << 20;
};

struct SplitCounts {
  std::string split;
  std::int64_t images = 0;   // non-blank lines of {split}_imgs.tsv
  std::int64_t queries = 0;  // non-blank lines of the query file
};

struct CheckReport {
  std::vector<CheckFinding> findings;  // sorted by file, line, code, message
  std::vector<SplitCounts> splits;     // the splits found, in the order train, valid, test

  std::int64_t errors() const;
  std::int64_t warnings() const;
  // Exit status of `shopclip data check`: 0 clean, 1 warnings only, 2 any error.
  int exit_status() const;
  // Human-readable report: totals, images/queries per split, a table of counts per code, then the
  // findings as "file:line: error [code] message" ("file: ..." for line 0), at most max_per_code
  // of each code (0 = all; the number left out is said per code).
  std::string to_text(std::size_t max_per_code = 20) const;
  // Machine-readable report: {"errors", "warnings", "exit_status", "splits": [{"split", "images",
  // "queries"}], "counts": {code: n}, "findings": [{"severity", "code", "file", "line",
  // "message"}]} with every finding.
  nlohmann::json to_json() const;
  // Reads what to_json wrote (for tools comparing reports). Throws DataError on a wrong layout.
  static CheckReport from_json(const nlohmann::json& value);
};

// Progress callback: progress(done_bytes, total_bytes) over the sizes of all files checked; called
// now and then from the calling thread, and once at the end with done == total.
using CheckProgress = std::function<void(std::int64_t, std::int64_t)>;

// Checks the MUGE splits under root (see the top of this file). Problems in the files are
// findings, never exceptions. Throws DataError naming root when it holds no split file at all
// (the caller pointed at the wrong folder), and std::invalid_argument for nonsensical options.
CheckReport check_dataset(const std::string& root, const CheckOptions& options = {},
                          const CheckProgress& progress = {});

}  // namespace shopclip::data
