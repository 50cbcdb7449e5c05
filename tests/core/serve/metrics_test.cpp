// Tests for serve's counters (core/serve/metrics.h): histogram buckets are cumulative with +Inf,
// every error kind is present from the start, counts land on their labels, and an undeclared
// kind is a programming error.

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "core/serve/metrics.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::Contains;

TEST(ServeMetrics, HistogramBucketsAreCumulative) {
  Histogram h({1, 2, 5});
  for (double v : {0.5, 1.0, 1.5, 4.0, 9.0})
    h.observe(v);
  std::string out;
  h.render(out, "x", "a=\"b\"");
  EXPECT_TRUE(Contains(out, "shopclip_serve_x_bucket{a=\"b\",le=\"1\"} 2\n"));  // 0.5 and 1.0
  EXPECT_TRUE(Contains(out, "shopclip_serve_x_bucket{a=\"b\",le=\"2\"} 3\n"));
  EXPECT_TRUE(Contains(out, "shopclip_serve_x_bucket{a=\"b\",le=\"5\"} 4\n"));
  EXPECT_TRUE(Contains(out, "shopclip_serve_x_bucket{a=\"b\",le=\"+Inf\"} 5\n"));
  EXPECT_TRUE(Contains(out, "shopclip_serve_x_sum{a=\"b\"} 16\n"));
  EXPECT_TRUE(Contains(out, "shopclip_serve_x_count{a=\"b\"} 5\n"));
  std::string bare;
  h.render(bare, "y", "");
  EXPECT_TRUE(Contains(bare, "shopclip_serve_y_bucket{le=\"1\"} 2\n"));
  EXPECT_TRUE(Contains(bare, "shopclip_serve_y_count 5\n"));
}

TEST(ServeMetrics, DeclaresEveryKindAndCountsOnItsLabels) {
  ServeMetrics metrics({"search", "healthz"});
  std::string text = metrics.prometheus_text();
  for (const char* kind : kServeErrorKinds) {
    EXPECT_TRUE(
        Contains(text, std::string("shopclip_serve_errors_total{kind=\"") + kind + "\"} 0"));
  }
  EXPECT_TRUE(Contains(text, "shopclip_serve_requests_total{endpoint=\"search\",code=\"200\"} 0"));
  EXPECT_TRUE(Contains(text, "# TYPE shopclip_serve_request_seconds histogram"));
  metrics.count_error("empty_query");
  metrics.count_error("empty_query");
  metrics.count_request("search", 400, 0.001);
  metrics.count_request("search", 200, 0.003);
  metrics.observe_batch(5);
  metrics.observe_request_stages(0.001, 0.002, 0.0005);
  metrics.set_queue_depth([] { return 7; });
  text = metrics.prometheus_text();
  EXPECT_TRUE(Contains(text, "shopclip_serve_errors_total{kind=\"empty_query\"} 2\n"));
  EXPECT_TRUE(
      Contains(text, "shopclip_serve_requests_total{endpoint=\"search\",code=\"400\"} 1\n"));
  EXPECT_TRUE(Contains(text, "shopclip_serve_request_seconds_count{endpoint=\"search\"} 2\n"));
  EXPECT_TRUE(Contains(text, "shopclip_serve_batch_queries_bucket{le=\"4\"} 0\n"));
  EXPECT_TRUE(Contains(text, "shopclip_serve_batch_queries_bucket{le=\"8\"} 1\n"));
  EXPECT_TRUE(Contains(text, "shopclip_serve_text_tower_seconds_sum 0.002\n"));
  EXPECT_TRUE(Contains(text, "shopclip_serve_queue_depth 7\n"));
  EXPECT_EQ(metrics.errors("empty_query"), 2);
  EXPECT_EQ(metrics.requests("search", 200), 1);
  EXPECT_THROW(metrics.count_error("no_such_kind"), std::logic_error);
}

}  // namespace
}  // namespace shopclip
