#include "core/train/profile.h"

#include <algorithm>
#include <stdexcept>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

namespace shopclip {
namespace {

const OperatorTime* find_operator(const OperatorProfile& profile, const std::string& name) {
  for (const auto& op : profile.operators)
    if (op.name == name) return &op;
  return nullptr;
}

TEST(OperatorProfiler, CountsEveryCallAndSplitsSelfFromCalleeTime) {
  auto a = torch::randn({128, 128}), b = torch::randn({128, 128});
  OperatorProfiler profiler;
  profiler.start();
  for (int i = 0; i < 5; ++i)
    a = torch::matmul(a, b).tanh();
  profiler.stop();
  // A second window adds to the first.
  profiler.start();
  a = torch::matmul(a, b);
  profiler.stop();
  const OperatorProfile profile = profiler.result(6);

  EXPECT_EQ(profile.steps, 6);
  const auto* matmul = find_operator(profile, "aten::matmul");
  const auto* mm = find_operator(profile, "aten::mm");
  const auto* tanh = find_operator(profile, "aten::tanh");
  ASSERT_NE(matmul, nullptr);
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(tanh, nullptr);
  EXPECT_EQ(matmul->calls, 6);
  EXPECT_EQ(mm->calls, 6);
  EXPECT_EQ(tanh->calls, 5);
  // matmul calls mm: its own time excludes mm's, its total includes it.
  EXPECT_GT(mm->self_ms, 0);
  EXPECT_GE(matmul->total_ms + 1e-9, matmul->self_ms + mm->total_ms);
  EXPECT_LE(mm->self_ms, mm->total_ms + 1e-9);
  // Largest self time first; operator time fits inside the windows.
  EXPECT_TRUE(std::is_sorted(
      profile.operators.begin(), profile.operators.end(),
      [](const OperatorTime& x, const OperatorTime& y) { return x.self_ms > y.self_ms; }));
  EXPECT_GT(profile.operator_ms(), 0);
  EXPECT_LE(profile.operator_ms(), profile.window_ms);
}

TEST(OperatorProfiler, RecordsTheBackwardPass) {
  auto w = torch::randn({64, 64}, torch::requires_grad());
  const auto x = torch::randn({32, 64});
  OperatorProfiler profiler;
  profiler.start();
  torch::mm(x, w).relu().sum().backward();
  profiler.stop();
  const OperatorProfile profile = profiler.result(1);
  const bool has_backward = std::any_of(
      profile.operators.begin(), profile.operators.end(),
      [](const OperatorTime& op) { return op.name.find("MmBackward") != std::string::npos; });
  EXPECT_TRUE(has_backward);
  EXPECT_NE(find_operator(profile, "aten::threshold_backward"), nullptr);
}

TEST(OperatorProfiler, RefusesWindowsOutOfOrder) {
  OperatorProfiler profiler;
  EXPECT_THROW(profiler.stop(), std::logic_error);
  profiler.start();
  EXPECT_TRUE(profiler.running());
  EXPECT_THROW(profiler.start(), std::logic_error);
  profiler.stop();
  EXPECT_FALSE(profiler.running());
  // A profiler destroyed while running leaves no profiler behind: a new one starts.
  {
    OperatorProfiler abandoned;
    abandoned.start();
  }
  OperatorProfiler next;
  next.start();
  torch::ones({4}).sum();
  next.stop();
  EXPECT_NE(find_operator(next.result(1), "aten::sum"), nullptr);
}

TEST(OperatorProfiler, TableAndJsonCarryEveryOperatorsShare) {
  OperatorProfile profile;
  profile.steps = 2;
  profile.window_ms = 100;
  profile.operators = {
      {"aten::mm", 4, 60, 70}, {"aten::relu", 2, 20, 20}, {"aten::add", 6, 10, 10}};
  const std::string table = profile_markdown(profile, 2);
  EXPECT_NE(table.find("2 step(s), 50.0 ms per step"), std::string::npos) << table;
  EXPECT_NE(table.find("| `aten::mm` | 30.00 | 60.0% | 2 | 35.00 |"), std::string::npos) << table;
  EXPECT_NE(table.find("| `aten::relu` | 10.00 | 20.0% | 1 | 10.00 |"), std::string::npos);
  EXPECT_NE(table.find("| 1 other operators | 5.00 | 10.0% | 3 |  |"), std::string::npos) << table;
  EXPECT_NE(table.find("| outside operators | 5.00 | 10.0% |  |  |"), std::string::npos) << table;
  EXPECT_EQ(table.find("aten::add"), std::string::npos);

  const auto json = nlohmann::json::parse(profile_json(profile));
  EXPECT_EQ(json["steps"], 2);
  EXPECT_DOUBLE_EQ(json["operator_ms"].get<double>(), 90);
  ASSERT_EQ(json["operators"].size(), 3u);
  EXPECT_EQ(json["operators"][2]["name"], "aten::add");
  EXPECT_EQ(json["operators"][2]["calls"], 6);
}

}  // namespace
}  // namespace shopclip
