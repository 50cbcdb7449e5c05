#include "core/serve/metrics.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace shopclip {
namespace {

// Latency buckets from 0.5 ms to 5 s: a search box cares about the 1-100 ms range.
std::vector<double> seconds_buckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5};
}
std::vector<double> batch_buckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256};
}

const char* kPrefix = "shopclip_serve_";

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += fmt::format("# HELP {}{} {}\n# TYPE {}{} {}\n", kPrefix, name, help, kPrefix, name, type);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto slot =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++counts_[static_cast<std::size_t>(slot)];
  ++count_;
  sum_ += value;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  std::int64_t cumulative = 0;
  for (std::size_t b = 0; b < upper_bounds_.size(); ++b) {
    cumulative += counts_[b];
    out += fmt::format("{}{}_bucket{{{}{}le=\"{}\"}} {}\n", kPrefix, name, labels, sep,
                       upper_bounds_[b], cumulative);
  }
  out += fmt::format("{}{}_bucket{{{}{}le=\"+Inf\"}} {}\n", kPrefix, name, labels, sep, count_);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}{}_sum{} {}\n", kPrefix, name, braces, sum_);
  out += fmt::format("{}{}_count{} {}\n", kPrefix, name, braces, count_);
}

ServeMetrics::ServeMetrics(std::vector<std::string> endpoints)
    : endpoints_(std::move(endpoints)),
      queue_wait_(seconds_buckets()),
      text_tower_(seconds_buckets()),
      search_(seconds_buckets()),
      batch_queries_(batch_buckets()) {
  for (const char* kind : kServeErrorKinds)
    errors_[kind] = 0;
  for (const auto& endpoint : endpoints_) {
    request_seconds_.emplace(endpoint, Histogram(seconds_buckets()));
    requests_[{endpoint, 200}] = 0;
  }
}

void ServeMetrics::count_request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
  auto it = request_seconds_.find(endpoint);
  if (it == request_seconds_.end()) {
    it = request_seconds_.emplace(endpoint, Histogram(seconds_buckets())).first;
  }
  it->second.observe(seconds);
}

void ServeMetrics::count_error(const std::string& kind) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = errors_.find(kind);
  if (it == errors_.end()) throw std::logic_error("serve metrics: unknown error kind " + kind);
  ++it->second;
}

void ServeMetrics::observe_request_stages(double queue_seconds, double text_tower_seconds,
                                          double search_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_wait_.observe(queue_seconds);
  text_tower_.observe(text_tower_seconds);
  search_.observe(search_seconds);
}

void ServeMetrics::observe_batch(int queries) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_queries_.observe(queries);
}

void ServeMetrics::set_queue_depth(std::function<int()> depth) {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_depth_ = std::move(depth);
}

std::string ServeMetrics::prometheus_text() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  header(out, "requests_total", "counter", "Answered HTTP requests by endpoint and status code.");
  for (const auto& [key, n] : requests_) {
    out += fmt::format("{}requests_total{{endpoint=\"{}\",code=\"{}\"}} {}\n", kPrefix, key.first,
                       key.second, n);
  }
  header(out, "errors_total", "counter", "Refused requests by reason.");
  for (const char* kind : kServeErrorKinds) {
    out += fmt::format("{}errors_total{{kind=\"{}\"}} {}\n", kPrefix, kind, errors_.at(kind));
  }
  header(out, "request_seconds", "histogram", "Handler time per request, body read to answer.");
  for (const auto& [endpoint, histogram] : request_seconds_) {
    histogram.render(out, "request_seconds", fmt::format("endpoint=\"{}\"", endpoint));
  }
  header(out, "queue_wait_seconds", "histogram", "Time a request waited for its batch to start.");
  queue_wait_.render(out, "queue_wait_seconds", "");
  header(out, "text_tower_seconds", "histogram", "The text-tower forward of a request's batch.");
  text_tower_.render(out, "text_tower_seconds", "");
  header(out, "search_seconds", "histogram", "The index search of a request's batch.");
  search_.render(out, "search_seconds", "");
  header(out, "batch_queries", "histogram", "Queries per text-tower forward.");
  batch_queries_.render(out, "batch_queries", "");
  header(out, "queue_depth", "gauge", "Queries accepted and not yet answered.");
  out += fmt::format("{}queue_depth {}\n", kPrefix, queue_depth_ ? queue_depth_() : 0);
  return out;
}

std::int64_t ServeMetrics::errors(const std::string& kind) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = errors_.find(kind);
  return it == errors_.end() ? 0 : it->second;
}

std::int64_t ServeMetrics::requests(const std::string& endpoint, int status) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = requests_.find({endpoint, status});
  return it == requests_.end() ? 0 : it->second;
}

}  // namespace shopclip
