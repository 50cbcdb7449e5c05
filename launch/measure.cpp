#include "launch/measure.h"

#include <algorithm>
#include <cstdio>

#include <sys/resource.h>
#include <unistd.h>

namespace shopclip {

double seconds_since(MeasureClock::time_point start) {
  return std::chrono::duration<double>(MeasureClock::now() - start).count();
}

double current_rss_mib() {
  long pages = 0, resident = 0;
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm) {
    if (std::fscanf(statm, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(statm);
  }
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // Linux reports KiB
}

double best_rate(const std::function<void()>& round, std::size_t items, double max_seconds) {
  round();  // warm-up: thread pools, page faults, caches
  double best = 0;
  const auto start = MeasureClock::now();
  do {
    const auto t0 = MeasureClock::now();
    round();
    best = std::max(best, items / seconds_since(t0));
  } while (seconds_since(start) < max_seconds);
  return best;
}

double mean_seconds_per_call(const std::function<void()>& pass, double min_seconds, int min_calls) {
  pass();  // warm-up: allocations, thread pools
  int calls = 0;
  const auto start = MeasureClock::now();
  while (seconds_since(start) < min_seconds || calls < min_calls) {
    pass();
    ++calls;
  }
  return seconds_since(start) / calls;
}

}  // namespace shopclip
