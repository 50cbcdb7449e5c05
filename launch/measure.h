#pragma once
// Timing and memory measurements shared by the benchmarks (launch/bench.cpp) and the commands
// that report their own cost (prep). Wall time is steady_clock; memory is the process's resident
// set (Linux: /proc/self/statm now, getrusage's high-water mark for the peak).

#include <chrono>
#include <cstddef>
#include <functional>

namespace shopclip {

using MeasureClock = std::chrono::steady_clock;

// Seconds from `start` to now.
double seconds_since(MeasureClock::time_point start);

// Resident memory of this process now, MiB (0 when /proc/self/statm cannot be read).
double current_rss_mib();
// The highest resident memory this process has had so far, MiB.
double peak_rss_mib();

// Items per second of the fastest call of `round` (each call processes `items`), after one
// warm-up call, calling it again until `max_seconds` have passed (at least once).
double best_rate(const std::function<void()>& round, std::size_t items, double max_seconds);

// Mean seconds per call of `pass` after one warm-up call, calling it until at least
// `min_seconds` have passed and at least `min_calls` calls were timed.
double mean_seconds_per_call(const std::function<void()>& pass, double min_seconds, int min_calls);

}  // namespace shopclip
