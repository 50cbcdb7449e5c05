#pragma once
// The search engine behind `shopclip serve`, without HTTP: queries in, top-k image ids out, from
// one model's text tower (through the Encoder seam) and a saved pool index
// (core/eval/index_store.h).
//
// Why a batching worker: a text-tower forward over 16 queries costs little more than over one on
// a CPU (the matrix products are wider, not longer), so concurrent requests are grouped. Callers
// (HTTP handler threads) submit and block on a future; one worker thread takes the first waiting
// request, waits at most `max_wait_ms` for more (up to `max_batch` queries), then tokenizes and
// encodes them in one forward and searches the index once per distinct k. Only the worker touches
// the encoder and the index (Encoder is not thread-safe).
//
// Results equal `shopclip eval --index-dir` for the same queries and index: the index's search
// parameters are the manifest's, and short lists are completed as eval completes them
// (complete_top_k). Each distinct k is searched on its own because an approximate index's top k
// depends on k (HNSW searches max(efSearch, k) candidates), so a query's answer never depends on
// what else shared its batch.
//
// Bounded: at most `queue_capacity` queries wait; submit throws QueueFull beyond that (the HTTP
// layer answers 503). shutdown() refuses new work (ShuttingDown) and returns once every accepted
// request is answered: nothing accepted is lost.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/eval/index_store.h"
#include "core/model/encoder.h"
#include "core/serve/metrics.h"

namespace shopclip {

struct QueryServiceOptions {
  int max_batch = 32;  // queries per text-tower forward (a larger batch request is one forward)
  double max_wait_ms = 2.0;   // how long the first waiting query waits for others to join it
  int queue_capacity = 1024;  // queries accepted but not yet answered; beyond it: QueueFull
};

// One query's answer: k image ids (the pool's), best first, and their scores: the index's inner
// products for the rows it found (exact unless its codes are compressed, e.g. PQ), the inner
// product with the stored (fp16) pool vector for rows that completed a short list. With an exact
// index the scores fall; after a completion they need not (the index missed better rows).
struct SearchHit {
  std::vector<std::int64_t> image_ids;
  std::vector<float> scores;
};

// Where one request's time went, in seconds (its batch's forward and search, shared by every
// query of the batch).
struct SearchTiming {
  double queue_seconds = 0;  // submitted -> its batch started
  double text_tower_seconds = 0;
  double search_seconds = 0;
};

struct SearchAnswer {
  std::vector<SearchHit> hits;  // one per query, in request order
  SearchTiming timing;
};

class QueueFull : public std::runtime_error {
  using std::runtime_error::runtime_error;
};
class ShuttingDown : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

class QueryService {
 public:
  // `encoder` (its text tower) must have made the index's vectors: the caller checks the
  // manifest (check_index_model). The service owns the index and uses the encoder from its worker
  // thread only; both must outlive it. Throws std::invalid_argument for options out of range.
  QueryService(Encoder& encoder, SavedIndex index, QueryServiceOptions options,
               ServeMetrics& metrics);
  ~QueryService();  // shutdown()
  QueryService(const QueryService&) = delete;
  QueryService& operator=(const QueryService&) = delete;

  // Queues `queries` (non-empty, each non-empty) for their top k (1 <= k <= pool size) and
  // returns the future answer. Throws QueueFull when they do not fit in the queue,
  // ShuttingDown after shutdown(), std::invalid_argument for arguments out of range. A failure
  // inside the worker (e.g. the encoder throws) reaches the future, not the worker.
  std::future<SearchAnswer> submit(std::vector<std::string> queries, int k);

  // Refuses new work, answers everything accepted, stops the worker. Idempotent.
  void shutdown();

  std::int64_t pool_size() const { return static_cast<std::int64_t>(index_.ids.size()); }
  const IndexManifest& manifest() const { return index_.manifest; }
  // Queries accepted but not answered yet.
  int queue_depth() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Request {
    std::vector<std::string> queries;
    int k = 10;
    Clock::time_point submitted;
    std::promise<SearchAnswer> answer;
  };

  void work();
  // Answers one batch: a single forward for all its queries, one search per distinct k.
  void answer(std::vector<Request>& batch);
  // Takes the batch's queries out of in_flight_ (before its callers are woken).
  void release(const std::vector<Request>& batch);

  Encoder& encoder_;
  const SavedIndex index_;
  const QueryServiceOptions options_;
  ServeMetrics& metrics_;

  mutable std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<Request> queue_;
  int queued_queries_ = 0;  // queries in queue_
  int in_flight_ = 0;       // queries taken by the worker (waiting in its batch or being answered)
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace shopclip
