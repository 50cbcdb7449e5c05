// TimedCommunicator: forwards every call unchanged and adds up the time spent inside them,
// including the wait of an asynchronous all-reduce.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <torch/torch.h>

#include "dist/timed_communicator.h"

namespace shopclip::dist {
namespace {

using namespace std::chrono_literals;

// The single-process backend, where every collective takes 20 ms and async work 30 ms to wait.
class SlowCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_world_size() const override { return 1; }
  std::string backend() const override { return "slow"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    std::this_thread::sleep_for(20ms);
    inner_.all_reduce(tensor, op);
  }
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& tensor, ReduceOp op) override {
    struct SlowWork final : Work {
      void wait() override { std::this_thread::sleep_for(30ms); }
    };
    inner_.all_reduce(tensor, op);
    return std::make_unique<SlowWork>();
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    std::this_thread::sleep_for(20ms);
    return inner_.all_gather(tensor);
  }
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override {
    std::this_thread::sleep_for(20ms);
    return inner_.reduce_scatter(tensor, counts);
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    std::this_thread::sleep_for(20ms);
    inner_.broadcast(tensor, root);
  }
  void barrier() override { std::this_thread::sleep_for(20ms); }
  [[noreturn]] void abort(int exit_code) override { inner_.abort(exit_code); }

 private:
  SingleProcessCommunicator inner_;
};

TEST(TimedCommunicator, ForwardsAndAddsUpTimeInside) {
  SlowCommunicator slow;
  TimedCommunicator timed(slow);
  EXPECT_EQ(timed.backend(), "slow");
  EXPECT_EQ(timed.world_size(), 1);
  auto t = torch::arange(4.0);
  timed.all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(timed.all_gather(t), t));
  EXPECT_TRUE(torch::equal(timed.reduce_scatter(t, {4}), t));
  timed.broadcast(t, 0);
  timed.barrier();
  EXPECT_GE(timed.seconds(), 5 * 0.020);
  EXPECT_LT(timed.seconds(), 5 * 0.020 + 0.5);

  timed.reset();
  EXPECT_EQ(timed.seconds(), 0.0);
  {
    auto work = timed.all_reduce_async(t, ReduceOp::kSum);
    work->wait();
    work->wait();  // a second wait costs nothing
  }
  EXPECT_GE(timed.seconds(), 0.030);
  EXPECT_LT(timed.seconds(), 0.030 + 0.02 + 0.5);
  {
    auto unfinished = timed.all_reduce_async(t, ReduceOp::kSum);  // waited for on destruction
  }
  EXPECT_GE(timed.seconds(), 0.060);
}

TEST(TimedCommunicator, AddsUpThePayloadOfEachCollective) {
  SingleProcessCommunicator single;
  TimedCommunicator timed(single);
  auto floats = torch::zeros({10});                   // 40 bytes
  auto doubles = torch::zeros({3}, torch::kFloat64);  // 24 bytes
  timed.all_reduce(floats, ReduceOp::kSum);
  timed.all_reduce_async(doubles, ReduceOp::kSum)->wait();
  timed.all_gather(floats);
  timed.reduce_scatter(doubles, {3});
  timed.broadcast(floats, 0);
  timed.barrier();
  const auto& payload = timed.payload();
  EXPECT_EQ(payload.all_reduce, 64);
  EXPECT_EQ(payload.all_gather, 40);
  EXPECT_EQ(payload.reduce_scatter, 24);
  EXPECT_EQ(payload.broadcast, 40);
  EXPECT_EQ(payload.ring_bytes_sent(1), 0);
  // 4 ranks: 2*3/4*64 + 3*40 + 3/4*24 + 40
  EXPECT_DOUBLE_EQ(payload.ring_bytes_sent(4), 96 + 120 + 18 + 40);
  timed.reset();
  EXPECT_EQ(timed.payload().all_reduce, 0);
}

}  // namespace
}  // namespace shopclip::dist
