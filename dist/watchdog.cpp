#include "dist/watchdog.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>
#include <unistd.h>

namespace shopclip::dist {
namespace {

std::string this_host() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

}  // namespace

WatchedCommunicator::Watch::Watch(WatchedCommunicator& owner, const char* collective)
    : owner_(owner) {
  std::lock_guard<std::mutex> lock(owner_.mutex_);
  id_ = owner_.next_id_++;
  owner_.pending_.emplace(id_, Pending{collective, Clock::now()});
  owner_.changed_.notify_all();
}

WatchedCommunicator::Watch::~Watch() {
  std::lock_guard<std::mutex> lock(owner_.mutex_);
  owner_.pending_.erase(id_);
  owner_.changed_.notify_all();
}

// Watches wait() (the destructor waits too, as Work's contract says).
class WatchedCommunicator::WatchedWork final : public Work {
 public:
  WatchedWork(WatchedCommunicator& owner, std::unique_ptr<Work> inner)
      : owner_(owner), inner_(std::move(inner)) {}
  ~WatchedWork() override {
    if (!inner_) return;
    Watch watch(owner_, "all_reduce_async (wait)");
    inner_.reset();
  }
  void wait() override {
    if (!inner_) return;
    Watch watch(owner_, "all_reduce_async (wait)");
    inner_->wait();
    inner_.reset();
  }

 private:
  WatchedCommunicator& owner_;
  std::unique_ptr<Work> inner_;
};

WatchedCommunicator::WatchedCommunicator(Communicator& inner, WatchdogOptions options)
    : inner_(inner), options_(std::move(options)) {
  if (!(options_.timeout_seconds > 0)) {
    throw std::invalid_argument(fmt::format("collective watchdog: timeout {} s must be positive",
                                            options_.timeout_seconds));
  }
  timeout_ = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.timeout_seconds));
  if (options_.host.empty()) options_.host = this_host();
  if (!options_.report) {
    options_.report = [](const std::string& line) {
      std::fprintf(stderr, "%s\n", line.c_str());
      std::fflush(stderr);
    };
  }
  if (!options_.end_process) options_.end_process = [](int code) { std::_Exit(code); };
  thread_ = std::thread([this] { run_watchdog(); });
}

WatchedCommunicator::~WatchedCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void WatchedCommunicator::set_activity(std::string activity) {
  std::lock_guard<std::mutex> lock(mutex_);
  activity_ = std::move(activity);
}

int WatchedCommunicator::fired() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fired_;
}

std::string WatchedCommunicator::report_for(const Pending& pending, double waited) const {
  return fmt::format(
      "collective watchdog: rank {} of {} on {}: {} has not completed after {:.1f} s "
      "(dist.timeout_s {:g}){}; a peer is lost, stopped or out of step; ending the job (exit {})",
      inner_.rank(), inner_.world_size(), options_.host, pending.collective, waited,
      options_.timeout_seconds, activity_.empty() ? "" : " during " + activity_, kWatchdogExitCode);
}

void WatchedCommunicator::run_watchdog() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    // The oldest call not yet reported sets the next deadline; none: sleep until one starts.
    Pending* oldest = nullptr;
    for (auto& [id, pending] : pending_) {
      if (!pending.fired) {
        oldest = &pending;
        break;
      }
    }
    if (!oldest) {
      changed_.wait(lock);
      continue;
    }
    const auto deadline = oldest->started + timeout_;
    if (Clock::now() < deadline) {
      changed_.wait_until(lock, deadline);
      continue;
    }
    // Still pending at its deadline (the map is re-read under the lock: it may have finished).
    Pending& pending = *oldest;
    pending.fired = true;
    ++fired_;
    const double waited = std::chrono::duration<double>(Clock::now() - pending.started).count();
    const std::string line = report_for(pending, waited);
    lock.unlock();
    options_.report(line);
    options_.end_process(kWatchdogExitCode);
    lock.lock();
  }
}

void WatchedCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  Watch watch(*this, "all_reduce");
  inner_.all_reduce(tensor, op);
}

std::unique_ptr<Work> WatchedCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  std::unique_ptr<Work> work;
  {
    Watch watch(*this, "all_reduce_async");
    work = inner_.all_reduce_async(tensor, op);
  }
  return std::make_unique<WatchedWork>(*this, std::move(work));
}

torch::Tensor WatchedCommunicator::all_gather(const torch::Tensor& tensor) {
  Watch watch(*this, "all_gather");
  return inner_.all_gather(tensor);
}

torch::Tensor WatchedCommunicator::reduce_scatter(const torch::Tensor& tensor,
                                                  const std::vector<std::int64_t>& counts) {
  Watch watch(*this, "reduce_scatter");
  return inner_.reduce_scatter(tensor, counts);
}

void WatchedCommunicator::broadcast(torch::Tensor& tensor, int root) {
  Watch watch(*this, "broadcast");
  inner_.broadcast(tensor, root);
}

void WatchedCommunicator::barrier() {
  Watch watch(*this, "barrier");
  inner_.barrier();
}

void WatchedCommunicator::abort(int exit_code) {
  inner_.abort(exit_code);
  std::_Exit(exit_code);  // not reached: the inner abort does not return
}

}  // namespace shopclip::dist
