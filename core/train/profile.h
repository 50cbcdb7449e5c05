#pragma once
// Where a training step's time goes, operator by operator: LibTorch's autograd profiler (the
// legacy CPU profiler of LibTorch 1.13) over one or more windows of work, summed per operator
// name. Used by `shopclip bench train --profile` and `train.profile_steps`.
//
// Times are wall-clock on the thread that enabled the profiler (the training thread, which also
// runs the CPU backward pass); an operator's own OpenMP/BLAS threads are inside its time. Self
// time = the operator's time minus that of the operators it called, so self times add up to the
// time spent inside any operator; the rest of the windows' wall time (window_ms - operator_ms)
// is work outside operators: the step's own C++ code, the profiler's bookkeeping, waiting.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace shopclip {

struct OperatorTime {
  std::string name;  // e.g. "aten::mm", "autograd::engine::evaluate_function: MmBackward0"
  std::int64_t calls = 0;
  double self_ms = 0;   // inside the operator, not inside operators it called
  double total_ms = 0;  // inside the operator, callees included (nested calls counted once)
};

struct OperatorProfile {
  std::vector<OperatorTime> operators;  // largest self time first
  double window_ms = 0;                 // wall time of the profiled windows together
  int steps = 0;                        // training steps the windows held (for per-step figures)
  double operator_ms() const;           // the sum of self times
};

// Profiles windows of work on the calling thread. Not copyable; at most one per thread runs at a
// time (LibTorch's profiler state is per thread).
class OperatorProfiler {
 public:
  OperatorProfiler() = default;
  OperatorProfiler(const OperatorProfiler&) = delete;
  OperatorProfiler& operator=(const OperatorProfiler&) = delete;
  ~OperatorProfiler();  // ends a running window (its events are dropped)

  // Begins a window. std::logic_error when one is running.
  void start();
  // Ends the window and adds its operators and wall time to the totals. std::logic_error when
  // none is running.
  void stop();
  bool running() const { return running_; }
  // The totals so far, `steps` recorded as the number of steps they cover.
  OperatorProfile result(int steps) const;

 private:
  bool running_ = false;
  double window_start_ms_ = 0;
  double window_ms_ = 0;
  std::map<std::string, OperatorTime> totals_;
};

// A Markdown table of the `rows` operators with the largest self time (all with rows <= 0): self
// ms per step, share of the window, calls per step, total ms per step; then a row for everything
// else and one for the time outside operators.
std::string profile_markdown(const OperatorProfile& profile, int rows);

// JSON text of the whole profile: {"steps", "window_ms", "operator_ms", "operators": [{name,
// calls, self_ms, total_ms}, ...]}.
std::string profile_json(const OperatorProfile& profile);

}  // namespace shopclip
