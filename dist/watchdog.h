#pragma once
// The collective watchdog: a Communicator that forwards every call to another one (MPI or NCCL)
// and watches it. A collective blocks until every rank has joined it, so a lost peer (a crashed
// or cut-off node, a stopped process) or ranks that disagree about the order of collectives
// would leave the others blocked forever and burn the allocation. When a watched call (a
// collective, or Work::wait of an asynchronous one such as a gradient bucket) has not returned
// after `timeout_seconds`, a watchdog thread reports the collective, what the process was doing
// (set_activity: e.g. "train step 1234"), its rank and host and how long it waited, and ends the
// process with kWatchdogExitCode. The launcher then ends the whole job: mpirun and srun stop
// every other rank when one exits without finalising.
//
// The timeout must exceed the longest legitimate wait of one rank for another: rank 0 writing
// checkpoints or searching the evaluation index while the others wait in the next collective,
// the last prep shard (config key dist.timeout_s, default 10 minutes).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "dist/communicator.h"

namespace shopclip::dist {

// The exit status of a process ended by the watchdog (EX_TEMPFAIL: a retry, e.g. a Slurm requeue
// with --resume, may well succeed).
inline constexpr int kWatchdogExitCode = 75;

struct WatchdogOptions {
  double timeout_seconds = 600;
  // This process's host, for the report (empty: gethostname()).
  std::string host;
  // Receives the report (one line); called on the watchdog thread. Default: stderr.
  std::function<void(const std::string&)> report;
  // Ends the process; called on the watchdog thread after report. Default: std::_Exit. Tests
  // pass one that records the call and returns, after which that call is no longer watched.
  std::function<void(int exit_code)> end_process;
};

class WatchedCommunicator final : public Communicator {
 public:
  // inner must outlive this object. Throws std::invalid_argument for a timeout <= 0.
  WatchedCommunicator(Communicator& inner, WatchdogOptions options);
  ~WatchedCommunicator() override;
  WatchedCommunicator(const WatchedCommunicator&) = delete;
  WatchedCommunicator& operator=(const WatchedCommunicator&) = delete;

  // What this process is doing, named in a report ("train step 1234", "eval valid"). Any thread.
  void set_activity(std::string activity);
  // How many times the watchdog fired (tests).
  int fired() const;

  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  int local_rank() const override { return inner_.local_rank(); }
  int local_world_size() const override { return inner_.local_world_size(); }
  std::string backend() const override { return inner_.backend(); }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& tensor, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void barrier() override;
  [[noreturn]] void abort(int exit_code) override;

 private:
  using Clock = std::chrono::steady_clock;
  // Registers one watched call for its lifetime.
  class Watch {
   public:
    Watch(WatchedCommunicator& owner, const char* collective);
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    WatchedCommunicator& owner_;
    std::uint64_t id_;
  };
  class WatchedWork;
  struct Pending {
    const char* collective;
    Clock::time_point started;
    bool fired = false;
  };

  void run_watchdog();
  std::string report_for(const Pending& pending, double waited) const;

  Communicator& inner_;
  WatchdogOptions options_;
  Clock::duration timeout_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::uint64_t, Pending> pending_;  // by id, in start order
  std::uint64_t next_id_ = 0;
  std::string activity_;
  int fired_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: started when everything above exists
};

}  // namespace shopclip::dist
