#include "dist/timed_communicator.h"

#include <cstdlib>

namespace shopclip::dist {

class TimedCommunicator::TimedWork final : public Work {
 public:
  TimedWork(std::unique_ptr<Work> inner, double& total) : inner_(std::move(inner)), total_(total) {}
  ~TimedWork() override { wait(); }
  void wait() override {
    if (!inner_) return;
    Timer timer(total_);
    inner_->wait();
    inner_.reset();
  }

 private:
  std::unique_ptr<Work> inner_;
  double& total_;
};

double TimedCommunicator::Payload::ring_bytes_sent(int ranks) const {
  const double r = ranks;
  if (ranks <= 1) return 0;
  return 2 * (r - 1) / r * all_reduce + (r - 1) * all_gather + (r - 1) / r * reduce_scatter +
         broadcast;
}

void TimedCommunicator::all_reduce(torch::Tensor& tensor, ReduceOp op) {
  payload_.all_reduce += tensor.nbytes();
  Timer timer(seconds_);
  inner_.all_reduce(tensor, op);
}

std::unique_ptr<Work> TimedCommunicator::all_reduce_async(torch::Tensor& tensor, ReduceOp op) {
  payload_.all_reduce += tensor.nbytes();
  std::unique_ptr<Work> work;
  {
    Timer timer(seconds_);
    work = inner_.all_reduce_async(tensor, op);
  }
  return std::make_unique<TimedWork>(std::move(work), seconds_);
}

torch::Tensor TimedCommunicator::all_gather(const torch::Tensor& tensor) {
  payload_.all_gather += tensor.nbytes();
  Timer timer(seconds_);
  return inner_.all_gather(tensor);
}

torch::Tensor TimedCommunicator::reduce_scatter(const torch::Tensor& tensor,
                                                const std::vector<std::int64_t>& counts) {
  payload_.reduce_scatter += tensor.nbytes();
  Timer timer(seconds_);
  return inner_.reduce_scatter(tensor, counts);
}

void TimedCommunicator::broadcast(torch::Tensor& tensor, int root) {
  payload_.broadcast += tensor.nbytes();
  Timer timer(seconds_);
  inner_.broadcast(tensor, root);
}

void TimedCommunicator::abort(int exit_code) {
  inner_.abort(exit_code);
  std::_Exit(exit_code);  // not reached: the inner abort does not return
}

void TimedCommunicator::barrier() {
  Timer timer(seconds_);
  inner_.barrier();
}

}  // namespace shopclip::dist
