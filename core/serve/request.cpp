#include "core/serve/request.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace shopclip {
namespace {

using nlohmann::json;

bool refuse(RequestError& error, const char* kind, std::string message) {
  error.kind = kind;
  error.message = std::move(message);
  return false;
}

// Code points in valid UTF-8 (the bytes that do not continue a sequence).
std::size_t code_points(std::string_view text) {
  std::size_t n = 0;
  for (const char c : text)
    n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool blank(std::string_view text) {
  for (const char c : text) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') return false;
  }
  return true;
}

// Checks one query string; `where` names it in messages ("query", "queries[3]").
bool check_query(const std::string& query, const std::string& where, const RequestLimits& limits,
                 RequestError& error) {
  if (blank(query)) return refuse(error, "empty_query", fmt::format("{} is empty", where));
  const std::size_t length = code_points(query);
  if (length > static_cast<std::size_t>(limits.max_query_chars)) {
    return refuse(error, "query_too_long",
                  fmt::format("{} has {} characters; the limit is {}", where, length,
                              limits.max_query_chars));
  }
  return true;
}

// "an array", "a string", ...: a JSON value's type for messages.
std::string a_type(const json& value) {
  const std::string name = value.type_name();
  return (name == "array" || name == "object" ? "an " : "a ") + name;
}

json hit_json(const SearchHit& hit) {
  return {{"image_ids", hit.image_ids}, {"scores", hit.scores}};
}

}  // namespace

bool valid_utf8(std::string_view text, std::size_t* bad_offset) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char lead = bytes[i];
    std::size_t length = 0;
    std::uint32_t code = 0, min_code = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code = lead & 0x1F, min_code = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code = lead & 0x0F, min_code = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code = lead & 0x07, min_code = 0x10000;
    } else {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    if (i + length > n) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    for (std::size_t j = 1; j < length; ++j) {
      if ((bytes[i + j] & 0xC0) != 0x80) {
        if (bad_offset != nullptr) *bad_offset = i;
        return false;
      }
      code = (code << 6) | (bytes[i + j] & 0x3F);
    }
    if (code < min_code || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += length;
  }
  return true;
}

bool parse_search_request(std::string_view body, bool batch, const RequestLimits& limits,
                          std::int64_t pool_size, ParsedSearch& parsed, RequestError& error) {
  parsed = ParsedSearch{};
  if (body.size() > limits.max_body_bytes) {
    return refuse(
        error, "body_too_large",
        fmt::format("the body has {} bytes; the limit is {}", body.size(), limits.max_body_bytes));
  }
  std::size_t bad = 0;
  if (!valid_utf8(body, &bad)) {
    return refuse(error, "invalid_utf8",
                  fmt::format("the body is not valid UTF-8 (byte {} of {})", bad, body.size()));
  }
  const json request = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    return refuse(error, "not_json",
                  batch ? R"(the body is not JSON; send {"queries": ["..."], "k": 10})"
                        : R"(the body is not JSON; send {"query": "...", "k": 10})");
  }
  if (!request.is_object()) {
    return refuse(error, "not_object",
                  fmt::format("the body is {} in JSON, not an object", a_type(request)));
  }
  const char* field = batch ? "queries" : "query";
  for (const auto& [key, value] : request.items()) {
    if (key != field && key != "k") {
      return refuse(
          error, "unknown_field",
          fmt::format("unknown field \"{}\"; this endpoint takes \"{}\" and \"k\"", key, field));
    }
  }
  const auto query = request.find(field);
  if (query == request.end() || query->is_null()) {
    return refuse(error, "missing_query", fmt::format("the body has no \"{}\" field", field));
  }
  if (!batch) {
    if (!query->is_string()) {
      return refuse(error, "wrong_type",
                    fmt::format("\"query\" is {}, not a string", a_type(*query)));
    }
    parsed.queries.push_back(query->get<std::string>());
    if (!check_query(parsed.queries.back(), "query", limits, error)) return false;
  } else {
    if (!query->is_array()) {
      return refuse(error, "wrong_type",
                    fmt::format("\"queries\" is {}, not a list of strings", a_type(*query)));
    }
    if (query->empty()) return refuse(error, "empty_query", "\"queries\" is an empty list");
    if (query->size() > static_cast<std::size_t>(limits.max_batch_queries)) {
      return refuse(error, "too_many_queries",
                    fmt::format("\"queries\" holds {} queries; the limit is {}", query->size(),
                                limits.max_batch_queries));
    }
    for (std::size_t i = 0; i < query->size(); ++i) {
      const json& item = (*query)[i];
      const std::string where = fmt::format("queries[{}]", i);
      if (!item.is_string()) {
        return refuse(error, "wrong_type",
                      fmt::format("{} is {}, not a string", where, a_type(item)));
      }
      parsed.queries.push_back(item.get<std::string>());
      if (!check_query(parsed.queries.back(), where, limits, error)) return false;
    }
  }
  const std::int64_t max_k = std::min<std::int64_t>(limits.max_k, pool_size);
  const auto k = request.find("k");
  if (k != request.end()) {
    // An integer, or a float with an integral value (some clients send 10.0); never a bool.
    double value = 0;
    if (k->is_number_integer()) {
      value = static_cast<double>(k->get<std::int64_t>());
    } else if (k->is_number_float() && std::isfinite(k->get<double>()) &&
               std::floor(k->get<double>()) == k->get<double>()) {
      value = k->get<double>();
    } else {
      return refuse(
          error, "wrong_type",
          fmt::format("\"k\" is {}, not an integer", k->is_number() ? k->dump() : a_type(*k)));
    }
    if (value < 1 || value > static_cast<double>(max_k)) {
      return refuse(error, "k_out_of_range",
                    fmt::format("\"k\" is {}; it must be in 1..{} ({})", k->dump(), max_k,
                                max_k == pool_size ? "the pool's images" : "the server's limit"));
    }
    parsed.k = static_cast<int>(value);
  } else if (parsed.k > max_k) {
    return refuse(error, "k_out_of_range",
                  fmt::format("the default k {} exceeds the pool's {} images; send a smaller k",
                              parsed.k, pool_size));
  }
  return true;
}

std::string search_answer_json(const SearchHit& hit, double took_ms) {
  json answer = hit_json(hit);
  answer["took_ms"] = took_ms;
  return answer.dump();
}

std::string batch_answer_json(const std::vector<SearchHit>& hits, double took_ms) {
  json results = json::array();
  for (const auto& hit : hits)
    results.push_back(hit_json(hit));
  return json{{"results", std::move(results)}, {"took_ms", took_ms}}.dump();
}

std::string error_json(const RequestError& error) {
  return json{{"error", error.kind}, {"message", error.message}}.dump();
}

}  // namespace shopclip
