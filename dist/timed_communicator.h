#pragma once
// A Communicator that forwards every call to another one and adds up the wall time spent inside
// them: the time this rank spends communicating, waiting for slower ranks included. Asynchronous
// all-reduces count the time spent in Work::wait(). It also adds up the bytes of the tensors this
// rank hands to each kind of collective. Used by the benchmarks to report the share of step time
// spent in communication and the traffic of a step.

#include <chrono>
#include <memory>

#include "dist/communicator.h"

namespace shopclip::dist {

class TimedCommunicator final : public Communicator {
 public:
  // inner must outlive this object.
  explicit TimedCommunicator(Communicator& inner) : inner_(inner) {}

  // Bytes of the tensors this rank passed in, by collective (the local part for all_gather).
  struct Payload {
    double all_reduce = 0, all_gather = 0, reduce_scatter = 0, broadcast = 0;
    // What this rank sends over the wire in ring algorithms among `ranks` (the cost model of
    // the README): all-reduce 2(R-1)/R x bytes, all-gather x the local part,
    // reduce-scatter (R-1)/R x the input, broadcast its bytes once (an upper bound off the root).
    double ring_bytes_sent(int ranks) const;
  };

  // Seconds spent in collectives and their payload since construction or the last reset().
  double seconds() const { return seconds_; }
  const Payload& payload() const { return payload_; }
  void reset() {
    seconds_ = 0;
    payload_ = {};
  }

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
  // Adds the time from construction to destruction to `total`.
  class Timer {
   public:
    explicit Timer(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
    ~Timer() {
      total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

   private:
    double& total_;
    std::chrono::steady_clock::time_point start_;
  };
  class TimedWork;

  Communicator& inner_;
  double seconds_ = 0;
  Payload payload_;
};

}  // namespace shopclip::dist
