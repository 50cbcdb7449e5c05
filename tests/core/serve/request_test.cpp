// Tests for the JSON bodies of `shopclip serve` (core/serve/request.h): well-formed requests parse
// with their defaults, each malformed one is refused with its kind and a message naming the field
// or limit, UTF-8 validation catches each class of bad sequence, and answers have the documented
// shape.

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "core/serve/metrics.h"
#include "core/serve/request.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::Contains;

struct Outcome {
  bool ok;
  ParsedSearch parsed;
  RequestError error;
};

Outcome parse(const std::string& body, bool batch = false, std::int64_t pool = 500,
              RequestLimits limits = {}) {
  Outcome o;
  o.ok = parse_search_request(body, batch, limits, pool, o.parsed, o.error);
  return o;
}

TEST(ServeRequest, ParsesQueriesAndK) {
  auto o = parse(R"({"query": "红色 连衣裙"})");
  ASSERT_TRUE(o.ok) << o.error.message;
  EXPECT_EQ(o.parsed.queries, std::vector<std::string>{"红色 连衣裙"});
  EXPECT_EQ(o.parsed.k, 10);
  o = parse(R"({"query": "裙", "k": 3})");
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.parsed.k, 3);
  o = parse(R"({"k": 7.0, "query": "裙"})");  // an integral float is an integer
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.parsed.k, 7);
  o = parse(R"({"queries": ["a", "b", "c"], "k": 500})", true);
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(o.parsed.queries.size(), 3u);
  EXPECT_EQ(o.parsed.k, 500);  // the pool's size is the largest k
}

TEST(ServeRequest, RefusesEachMalformedRequestNamingIt) {
  struct Case {
    std::string body;
    bool batch;
    std::string kind, names;
  };
  const std::string long_query(300, 'x');
  const std::string long_chinese = [] {
    std::string s;
    for (int i = 0; i < 257; ++i)
      s += "裙";  // 257 characters, 771 bytes
    return s;
  }();
  for (const Case& c : {
           Case{"nope", false, "not_json", "not JSON"},
           Case{"{\"query\": \"\xff\"}", false, "invalid_utf8", "byte 11"},
           Case{"[1]", false, "not_object", "array"},
           Case{R"({"query": "a", "limit": 3})", false, "unknown_field", "\"limit\""},
           Case{R"({"queries": ["a"]})", false, "unknown_field", "\"queries\""},
           Case{R"({"query": ["a"]})", false, "wrong_type", "\"query\" is an array"},
           Case{R"({"query": "a", "k": "3"})", false, "wrong_type", "\"k\" is a string"},
           Case{R"({"query": "a", "k": 2.5})", false, "wrong_type", "2.5"},
           Case{R"({"query": "a", "k": false})", false, "wrong_type", "boolean"},
           Case{R"({"k": 3})", false, "missing_query", "\"query\""},
           Case{R"({"query": null})", false, "missing_query", "\"query\""},
           Case{R"({"query": " \t\n"})", false, "empty_query", "query is empty"},
           Case{"{\"query\": \"" + long_query + "\"}", false, "query_too_long", "300 characters"},
           Case{"{\"query\": \"" + long_chinese + "\"}", false, "query_too_long", "257 characters"},
           Case{R"({"query": "a", "k": 0})", false, "k_out_of_range", "1..500"},
           Case{R"({"query": "a", "k": 501})", false, "k_out_of_range", "pool"},
           Case{R"({"query": "a", "k": -4})", false, "k_out_of_range", "-4"},
           Case{R"({"queries": "a"})", true, "wrong_type", "not a list"},
           Case{R"({"queries": ["a", 1]})", true, "wrong_type", "queries[1]"},
           Case{R"({"queries": ["a", ""]})", true, "empty_query", "queries[1]"},
           Case{R"({"queries": []})", true, "empty_query", "empty list"},
       }) {
    SCOPED_TRACE(c.body.substr(0, 60));
    const auto o = parse(c.body, c.batch);
    ASSERT_FALSE(o.ok);
    EXPECT_EQ(o.error.kind, c.kind);
    EXPECT_TRUE(Contains(o.error.message, c.names));
    // Every kind is one the metrics declare.
    EXPECT_NE(std::find(kServeErrorKinds.begin(), kServeErrorKinds.end(), o.error.kind),
              kServeErrorKinds.end());
  }
}

TEST(ServeRequest, AppliesTheConfiguredLimits) {
  RequestLimits limits;
  limits.max_k = 20;
  limits.max_batch_queries = 2;
  limits.max_query_chars = 4;
  limits.max_body_bytes = 40;
  auto o = parse(R"({"query": "abcd", "k": 21})", false, 500, limits);
  EXPECT_EQ(o.error.kind, "k_out_of_range");
  EXPECT_TRUE(Contains(o.error.message, "the server's limit"));
  EXPECT_TRUE(parse(R"({"query": "abcd", "k": 20})", false, 500, limits).ok);
  EXPECT_EQ(parse(R"({"query": "abcde"})", false, 500, limits).error.kind, "query_too_long");
  o = parse(R"({"queries": ["a", "b", "c"]})", true, 500, limits);
  EXPECT_EQ(o.error.kind, "too_many_queries");
  EXPECT_TRUE(Contains(o.error.message, "3 queries; the limit is 2"));
  o = parse(R"({"query": "abcd",         "k": 3            })", false, 500, limits);
  EXPECT_EQ(o.error.kind, "body_too_large");
  // A pool smaller than the default k: the default is refused with a hint.
  o = parse(R"({"query": "a"})", false, 6);
  EXPECT_EQ(o.error.kind, "k_out_of_range");
  EXPECT_TRUE(Contains(o.error.message, "6 images"));
}

TEST(ServeRequest, ValidatesUtf8) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("红色 连衣裙 é 😀"));
  std::size_t at = 99;
  EXPECT_FALSE(valid_utf8("ab\x80", &at));  // a lone continuation byte
  EXPECT_EQ(at, 2u);
  EXPECT_FALSE(valid_utf8("\xe7\xba", &at));  // truncated 3-byte sequence
  EXPECT_EQ(at, 0u);
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // a UTF-16 surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(
      valid_utf8("\xe7"
                 "a"
                 "\xa2"));  // a non-continuation inside a sequence
  EXPECT_FALSE(valid_utf8("\xff"));
}

TEST(ServeRequest, AnswersHaveTheDocumentedShape) {
  SearchHit hit{{11, 22}, {0.5f, 0.25f}};
  auto one = nlohmann::json::parse(search_answer_json(hit, 3.5));
  EXPECT_EQ(one["image_ids"], nlohmann::json({11, 22}));
  EXPECT_EQ(one["scores"], nlohmann::json({0.5, 0.25}));
  EXPECT_EQ(one["took_ms"], 3.5);
  auto many = nlohmann::json::parse(batch_answer_json({hit, hit}, 1));
  ASSERT_EQ(many["results"].size(), 2u);
  EXPECT_EQ(many["results"][1]["image_ids"], nlohmann::json({11, 22}));
  auto error = nlohmann::json::parse(error_json({"empty_query", "query is empty"}));
  EXPECT_EQ(error["error"], "empty_query");
  EXPECT_EQ(error["message"], "query is empty");
}

}  // namespace
}  // namespace shopclip
