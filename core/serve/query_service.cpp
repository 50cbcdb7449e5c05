#include "core/serve/query_service.h"

#include <algorithm>
#include <exception>
#include <map>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/eval/predictions.h"

namespace shopclip {
namespace {

double seconds_between(std::chrono::steady_clock::time_point from,
                       std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

QueryService::QueryService(Encoder& encoder, SavedIndex index, QueryServiceOptions options,
                           ServeMetrics& metrics)
    : encoder_(encoder), index_(std::move(index)), options_(options), metrics_(metrics) {
  if (options_.max_batch < 1) throw std::invalid_argument("serve: max batch must be >= 1");
  if (options_.max_wait_ms < 0) throw std::invalid_argument("serve: max wait must be >= 0 ms");
  if (options_.queue_capacity < 1) {
    throw std::invalid_argument("serve: queue capacity must be >= 1");
  }
  if (encoder_.dim() != index_.manifest.embed_dim) {
    throw std::invalid_argument(fmt::format("serve: the encoder gives {} dims, the index holds {}",
                                            encoder_.dim(), index_.manifest.embed_dim));
  }
  // The worker starts last: every member it reads is set.
  worker_ = std::thread([this] { work(); });
}

QueryService::~QueryService() {
  shutdown();
}

std::future<SearchAnswer> QueryService::submit(std::vector<std::string> queries, int k) {
  if (queries.empty()) throw std::invalid_argument("serve: no queries");
  if (k < 1 || k > pool_size()) {
    throw std::invalid_argument(
        fmt::format("serve: k = {} outside 1..{} (the pool's images)", k, pool_size()));
  }
  const int n = static_cast<int>(queries.size());
  Request request;
  request.queries = std::move(queries);
  request.k = k;
  request.submitted = Clock::now();
  std::future<SearchAnswer> answer = request.answer.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw ShuttingDown("the service is shutting down");
    // A request larger than the whole queue is still accepted when nothing else waits: the
    // capacity bounds memory, and refusing it forever would be a client's dead end.
    if (queued_queries_ + in_flight_ + n > options_.queue_capacity &&
        queued_queries_ + in_flight_ > 0) {
      throw QueueFull(fmt::format("{} queries waiting; the queue holds {}",
                                  queued_queries_ + in_flight_, options_.queue_capacity));
    }
    queued_queries_ += n;
    queue_.push_back(std::move(request));
  }
  arrived_.notify_one();
  return answer;
}

void QueryService::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  arrived_.notify_all();
  if (worker_.joinable()) worker_.join();
}

int QueryService::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queued_queries_ + in_flight_;
}

void QueryService::work() {
  // Inference only: no autograd graph, as Encoder implementations expect.
  torch::NoGradGuard no_grad;
  for (;;) {
    std::vector<Request> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      arrived_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything accepted was answered
      // The first request opens the batch; others may join until the deadline or max_batch
      // queries. While stopping, nothing new can arrive: answer what waits at once.
      const auto deadline = queue_.front().submitted +
                            std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double, std::milli>(options_.max_wait_ms));
      int taken = 0;
      for (;;) {
        while (!queue_.empty() &&
               (taken == 0 ||
                taken + static_cast<int>(queue_.front().queries.size()) <= options_.max_batch)) {
          // Taken queries count as in flight at once: they are accepted, waiting in the batch.
          const int size = static_cast<int>(queue_.front().queries.size());
          taken += size;
          queued_queries_ -= size;
          in_flight_ += size;
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (taken >= options_.max_batch || !queue_.empty() || stopping_) break;
        if (arrived_.wait_until(lock, deadline) == std::cv_status::timeout && queue_.empty()) {
          break;
        }
      }
    }
    answer(batch);
  }
}

void QueryService::release(const std::vector<Request>& batch) {
  int answered = 0;
  for (const auto& request : batch)
    answered += static_cast<int>(request.queries.size());
  std::lock_guard<std::mutex> lock(mutex_);
  in_flight_ -= answered;
}

void QueryService::answer(std::vector<Request>& batch) {
  const auto started = Clock::now();
  bool released = false;
  try {
    std::vector<std::string> texts;
    for (const auto& request : batch) {
      texts.insert(texts.end(), request.queries.begin(), request.queries.end());
    }
    const torch::Tensor embeddings = encoder_.encode_texts(tokenize(encoder_, texts)).contiguous();
    const auto encoded = Clock::now();

    // Row offset of each request's first query in `embeddings`; requests grouped by k.
    std::vector<std::int64_t> first(batch.size());
    std::map<int, std::vector<std::size_t>> by_k;
    std::int64_t offset = 0;
    for (std::size_t r = 0; r < batch.size(); ++r) {
      first[r] = offset;
      offset += static_cast<std::int64_t>(batch[r].queries.size());
      by_k[batch[r].k].push_back(r);
    }
    std::vector<SearchAnswer> answers(batch.size());
    const float* pool = index_.pool.data_ptr<float>();
    const std::int64_t dim = index_.pool.size(1);
    for (const auto& [k, members] : by_k) {
      std::vector<torch::Tensor> parts;
      for (const std::size_t r : members) {
        parts.push_back(
            embeddings.narrow(0, first[r], static_cast<std::int64_t>(batch[r].queries.size())));
      }
      const torch::Tensor queries = torch::cat(parts).contiguous();
      std::vector<std::int64_t> labels;
      std::vector<float> index_scores;
      index_.index.search(queries.data_ptr<float>(), queries.size(0), k, labels, index_scores);
      const std::vector<std::int64_t> rows = complete_top_k(labels, k, queries, index_.pool);
      // Scores: the index's own for the rows it found (exact inner products unless its codes are
      // compressed, e.g. PQ); for rows that completed a short list, the inner product with the
      // stored pool vector that complete_top_k ranked them by.
      const float* q = queries.data_ptr<float>();
      std::int64_t row = 0;
      for (const std::size_t r : members) {
        for (std::size_t i = 0; i < batch[r].queries.size(); ++i, ++row) {
          SearchHit hit;
          // The index's score of each row it found (its first, best, occurrence).
          std::unordered_map<std::int64_t, float> found;
          for (int j = 0; j < k; ++j) {
            const std::int64_t label = labels[row * k + j];
            if (label >= 0) found.emplace(label, index_scores[row * k + j]);
          }
          for (int j = 0; j < k; ++j) {
            const std::int64_t image = rows[row * k + j];
            hit.image_ids.push_back(index_.ids[image]);
            if (const auto at = found.find(image); at != found.end()) {
              hit.scores.push_back(at->second);
            } else {
              float dot = 0;
              for (std::int64_t d = 0; d < dim; ++d)
                dot += q[row * dim + d] * pool[image * dim + d];
              hit.scores.push_back(dot);
            }
          }
          answers[r].hits.push_back(std::move(hit));
        }
      }
    }
    const auto searched = Clock::now();
    metrics_.observe_batch(static_cast<int>(texts.size()));
    // Out of the queue's count before any caller wakes, so a caller sees its queries gone.
    release(batch);
    released = true;
    for (std::size_t r = 0; r < batch.size(); ++r) {
      answers[r].timing.queue_seconds = seconds_between(batch[r].submitted, started);
      answers[r].timing.text_tower_seconds = seconds_between(started, encoded);
      answers[r].timing.search_seconds = seconds_between(encoded, searched);
      batch[r].answer.set_value(std::move(answers[r]));
    }
  } catch (...) {
    // Every waiting caller learns of the failure; the worker goes on with the next batch.
    const std::exception_ptr failure = std::current_exception();
    if (!released) release(batch);
    for (auto& request : batch) {
      try {
        request.answer.set_exception(failure);
      } catch (const std::future_error&) {
        // already answered before the failure
      }
    }
  }
}

}  // namespace shopclip
