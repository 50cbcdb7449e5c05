#include "core/train/profile.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <nlohmann/json.hpp>

namespace shopclip {
namespace {

namespace legacy = torch::autograd::profiler;

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// An operator whose push event was seen and whose pop is awaited.
struct OpenRange {
  std::string name;
  at::RecordFunctionHandle handle;
  double start_us;
  double callees_us = 0;  // time of the operators it called
};

// Adds one thread's events to `totals`: ranges matched by handle (they nest on a thread),
// self = elapsed - callees. Ranges still open when the window ended are dropped.
void add_thread_events(const std::vector<legacy::LegacyEvent>& events,
                       std::map<std::string, OperatorTime>& totals) {
  std::vector<OpenRange> open;
  std::map<std::string, int> open_by_name;  // for totals of recursive calls counted once
  for (const auto& event : events) {
    if (event.kind() == legacy::EventKind::PushRange) {
      open.push_back({event.name(), event.handle(), event.cpuUs()});
      ++open_by_name[open.back().name];
    } else if (event.kind() == legacy::EventKind::PopRange) {
      auto match = std::find_if(open.rbegin(), open.rend(), [&](const OpenRange& range) {
        return range.handle == event.handle();
      });
      if (match == open.rend()) continue;  // began before the window
      // Ranges opened after the matched one and never closed (none in practice) are dropped.
      const auto index = static_cast<std::size_t>(open.rend() - match - 1);
      while (open.size() > index + 1) {
        --open_by_name[open.back().name];
        open.pop_back();
      }
      const OpenRange range = open.back();
      open.pop_back();
      const double elapsed_us = event.cpuUs() - range.start_us;
      auto& time = totals[range.name];
      time.name = range.name;
      time.calls += 1;
      time.self_ms += (elapsed_us - range.callees_us) / 1000;
      if (--open_by_name[range.name] == 0) time.total_ms += elapsed_us / 1000;
      if (!open.empty()) open.back().callees_us += elapsed_us;
    }
  }
}

}  // namespace

double OperatorProfile::operator_ms() const {
  double sum = 0;
  for (const auto& op : operators)
    sum += op.self_ms;
  return sum;
}

OperatorProfiler::~OperatorProfiler() {
  if (!running_) return;
  try {
    legacy::disableProfilerLegacy();
  } catch (...) {
    // Destructors do not throw; the profiler's state was already gone.
  }
}

void OperatorProfiler::start() {
  if (running_) throw std::logic_error("OperatorProfiler::start: a window is already running");
  legacy::enableProfilerLegacy(
      torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  running_ = true;
  window_start_ms_ = now_ms();
}

void OperatorProfiler::stop() {
  if (!running_) throw std::logic_error("OperatorProfiler::stop: no window is running");
  window_ms_ += now_ms() - window_start_ms_;
  const auto threads = legacy::disableProfilerLegacy();
  running_ = false;
  for (const auto& events : threads)
    add_thread_events(events, totals_);
}

OperatorProfile OperatorProfiler::result(int steps) const {
  OperatorProfile profile;
  profile.window_ms = window_ms_;
  profile.steps = steps;
  for (const auto& [name, time] : totals_)
    profile.operators.push_back(time);
  std::sort(profile.operators.begin(), profile.operators.end(),
            [](const OperatorTime& a, const OperatorTime& b) { return a.self_ms > b.self_ms; });
  return profile;
}

std::string profile_markdown(const OperatorProfile& profile, int rows) {
  const double steps = std::max(1, profile.steps);
  const double window = std::max(1e-9, profile.window_ms);
  std::string table = fmt::format(
      "{} step(s), {:.1f} ms per step; self time: inside the operator, not in operators it "
      "called\n\n| operator | self ms / step | share of step | calls / step | total ms / step "
      "|\n| --- | --- | --- | --- | --- |\n",
      profile.steps, profile.window_ms / steps);
  const auto row = [&](const std::string& name, double self_ms, double calls, double total_ms) {
    table +=
        fmt::format("| {} | {:.2f} | {:.1f}% | {} | {} |\n", name, self_ms / steps,
                    100 * self_ms / window, calls < 0 ? "" : fmt::format("{:g}", calls / steps),
                    total_ms < 0 ? "" : fmt::format("{:.2f}", total_ms / steps));
  };
  const std::size_t shown =
      rows <= 0 ? profile.operators.size()
                : std::min(profile.operators.size(), static_cast<std::size_t>(rows));
  double rest_ms = 0, rest_calls = 0;
  for (std::size_t i = 0; i < profile.operators.size(); ++i) {
    const auto& op = profile.operators[i];
    if (i < shown) {
      row("`" + op.name + "`", op.self_ms, double(op.calls), op.total_ms);
    } else {
      rest_ms += op.self_ms;
      rest_calls += double(op.calls);
    }
  }
  if (shown < profile.operators.size()) {
    row(fmt::format("{} other operators", profile.operators.size() - shown), rest_ms, rest_calls,
        -1);
  }
  row("outside operators", profile.window_ms - profile.operator_ms(), -1, -1);
  return table;
}

std::string profile_json(const OperatorProfile& profile) {
  nlohmann::ordered_json operators = nlohmann::ordered_json::array();
  for (const auto& op : profile.operators) {
    operators.push_back({{"name", op.name},
                         {"calls", op.calls},
                         {"self_ms", op.self_ms},
                         {"total_ms", op.total_ms}});
  }
  return nlohmann::ordered_json{{"steps", profile.steps},
                                {"window_ms", profile.window_ms},
                                {"operator_ms", profile.operator_ms()},
                                {"operators", operators}}
      .dump();
}

}  // namespace shopclip
