#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace shopclip {

// CUDA autocast's switch and precision. LibTorch 2.4 renamed the calls (per device type); the old
// names still exist there but print a deprecation warning on every call.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool cuda_autocast_enabled() {
  return at::autocast::is_autocast_enabled(at::kCUDA);
}
inline void set_cuda_autocast_enabled(bool on) {
  at::autocast::set_autocast_enabled(at::kCUDA, on);
}
inline void set_cuda_autocast_dtype(at::ScalarType type) {
  at::autocast::set_autocast_dtype(at::kCUDA, type);
}
// CPU autocast's switch and precision (linear() leaves autocast's products to at::linear).
inline bool cpu_autocast_enabled() {
  return at::autocast::is_autocast_enabled(at::kCPU);
}
inline void set_cpu_autocast_enabled(bool on) {
  at::autocast::set_autocast_enabled(at::kCPU, on);
}
inline at::ScalarType cpu_autocast_dtype() {
  return at::autocast::get_autocast_dtype(at::kCPU);
}
#else
inline bool cuda_autocast_enabled() {
  return at::autocast::is_enabled();
}
inline void set_cuda_autocast_enabled(bool on) {
  at::autocast::set_enabled(on);
}
inline void set_cuda_autocast_dtype(at::ScalarType type) {
  at::autocast::set_autocast_gpu_dtype(type);
}
inline bool cpu_autocast_enabled() {
  return at::autocast::is_cpu_enabled();
}
inline void set_cpu_autocast_enabled(bool on) {
  at::autocast::set_cpu_enabled(on);
}
inline at::ScalarType cpu_autocast_dtype() {
  return at::autocast::get_autocast_cpu_dtype();
}
#endif

// Sets CUDA autocast (mixed precision, bfloat16) on or off for a scope and restores the previous
// setting when the scope ends, exceptions included. Used by the training step (train.amp) and by
// gradient checkpointing, whose recomputation must run in the forward pass's precision.
class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled) : previous_(cuda_autocast_enabled()) {
    if (enabled) set_cuda_autocast_dtype(at::kBFloat16);
    set_cuda_autocast_enabled(enabled);
  }
  ~AutocastGuard() {
    // Casts cached inside the scope belong to it (weights cast once per forward pass).
    if (cuda_autocast_enabled()) at::autocast::clear_cache();
    set_cuda_autocast_enabled(previous_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace shopclip
