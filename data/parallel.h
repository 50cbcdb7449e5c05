#pragma once
// Minimal fork-join parallelism for data work (decoding, rendering): no pool to manage, and the
// result never depends on the thread count because each index is processed independently.

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace shopclip::data {

// 0 -> the machine's hardware threads, else the value itself (at least 1).
inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Calls fn(i) for i in [begin, end) on `threads` threads (strided). The first exception thrown
// by any call is rethrown on the calling thread after all threads have joined.
template <class Fn>
void parallel_for(std::size_t begin, std::size_t end, int threads, Fn&& fn) {
  threads = std::max(1, std::min<int>(threads, static_cast<int>(end > begin ? end - begin : 1)));
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&](int worker) {
    try {
      for (std::size_t i = begin + worker; i < end; i += threads)
        fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < threads; ++w)
    pool.emplace_back(work, w);
  work(0);
  for (auto& thread : pool)
    thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace shopclip::data
