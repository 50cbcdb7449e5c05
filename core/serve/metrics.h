#pragma once
// The counters of `shopclip serve`, rendered for GET /metrics in Prometheus's text exposition
// format (version 0.0.4). Thread-safe: HTTP handler threads and the batching worker update them
// concurrently. Every label value that can occur is declared up front, so a scrape shows zeros
// rather than missing series (what Prometheus's rate() and alerting rules expect).
//
// Series (all prefixed shopclip_serve_):
//   requests_total{endpoint, code}          counter: answered requests by endpoint and status
//   errors_total{kind}                      counter: refused requests by reason (kError* below)
//   request_seconds{endpoint}               histogram: handler time, body parsed to answer written
//   queue_wait_seconds / text_tower_seconds / search_seconds
//                                           histograms per request: time queued before its batch,
//                                           its batch's forward, its batch's search
//   batch_queries                           histogram: queries per text-tower forward
//   queue_depth                             gauge: queries accepted and not yet answered

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace shopclip {

// Why a request was refused: the label values of errors_total (and the "error" field of the
// JSON answer). Fixed so that clients and dashboards can rely on them.
inline constexpr std::array<const char*, 16> kServeErrorKinds = {
    "not_json",          // the body does not parse as JSON
    "invalid_utf8",      // the body is not valid UTF-8
    "not_object",        // the body is JSON but not an object
    "unknown_field",     // a field other than query/queries/k
    "wrong_type",        // query not a string, queries not a list of strings, k not an integer
    "missing_query",     // no query (or queries) field
    "empty_query",       // an empty or all-whitespace query, or an empty queries list
    "query_too_long",    // a query over the character limit
    "too_many_queries",  // a batch over its limit
    "k_out_of_range",    // k outside 1..min(max_k, pool size)
    "body_too_large",    // a body over the byte limit
    "not_found",         // no such endpoint (or method)
    "bad_http",          // a request the HTTP layer could not read (malformed request line, ...)
    "queue_full",        // 503: too many queries waiting
    "shutting_down",     // 503: the service is draining after SIGTERM
    "internal",          // 500: the model or index failed
};

// Cumulative-bucket histogram (Prometheus semantics: bucket le=b counts observations <= b).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  std::int64_t count() const { return count_; }
  double sum() const { return sum_; }
  // Appends `name`'s _bucket, _sum and _count lines; `labels` is "" or `key="value"`.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> upper_bounds_;
  std::vector<std::int64_t> counts_;  // per bound, not cumulative; the last one is +Inf
  std::int64_t count_ = 0;
  double sum_ = 0;
};

class ServeMetrics {
 public:
  // endpoints: the label values of requests_total and request_seconds.
  explicit ServeMetrics(std::vector<std::string> endpoints);

  void count_request(const std::string& endpoint, int status, double seconds);
  // Throws std::logic_error for a kind not in kServeErrorKinds (a programming error).
  void count_error(const std::string& kind);
  void observe_request_stages(double queue_seconds, double text_tower_seconds,
                              double search_seconds);
  void observe_batch(int queries);
  // Where queue_depth comes from (read at each render).
  void set_queue_depth(std::function<int()> depth);

  std::string prometheus_text() const;

  // For tests and the log.
  std::int64_t errors(const std::string& kind) const;
  std::int64_t requests(const std::string& endpoint, int status) const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> endpoints_;
  std::map<std::pair<std::string, int>, std::int64_t> requests_;
  std::map<std::string, std::int64_t> errors_;
  std::map<std::string, Histogram> request_seconds_;
  Histogram queue_wait_, text_tower_, search_, batch_queries_;
  std::function<int()> queue_depth_;
};

}  // namespace shopclip
