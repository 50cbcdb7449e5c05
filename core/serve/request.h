#pragma once
// The JSON bodies of `shopclip serve`: parsing requests (every malformed one named, never thrown
// at the HTTP layer) and writing answers. Kept apart from HTTP so that each refusal is tested
// without a socket.
//
//   POST /search        {"query": "...", "k": 10}        -> {"image_ids": [...], "scores": [...],
//                                                            "took_ms": ...}
//   POST /search/batch  {"queries": ["...", ...], "k": 10} -> {"results": [{"image_ids", "scores"},
//                                                            ...], "took_ms": ...}
//   any refusal                                           -> {"error": KIND, "message": "..."}
// k is optional (default 10). KIND is one of kServeErrorKinds (core/serve/metrics.h).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/serve/query_service.h"

namespace shopclip {

struct RequestLimits {
  int max_query_chars = 256;    // Unicode code points per query
  int max_k = 1000;             // and never above the pool's size
  int max_batch_queries = 256;  // queries in one /search/batch
  std::size_t max_body_bytes = 64 * 1024;
};

struct ParsedSearch {
  std::vector<std::string> queries;  // one for /search
  int k = 10;
};

// A refusal: its kind (a kServeErrorKinds entry) and a message naming the field and the limit.
struct RequestError {
  std::string kind;
  std::string message;
};

// Parses a /search (batch = false) or /search/batch body. Returns false and fills `error` for a
// malformed request; true and fills `parsed` otherwise. pool_size bounds k.
bool parse_search_request(std::string_view body, bool batch, const RequestLimits& limits,
                          std::int64_t pool_size, ParsedSearch& parsed, RequestError& error);

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). Sets *bad_offset to the first bad byte's offset when not.
bool valid_utf8(std::string_view text, std::size_t* bad_offset = nullptr);

std::string search_answer_json(const SearchHit& hit, double took_ms);
std::string batch_answer_json(const std::vector<SearchHit>& hits, double took_ms);
std::string error_json(const RequestError& error);

}  // namespace shopclip
