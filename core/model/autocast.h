#pragma once

#include <ATen/autocast_mode.h>

namespace shopclip {

// Sets CUDA autocast (mixed precision, bfloat16) on or off for a scope and restores the previous
// setting when the scope ends, exceptions included. Used by the training step (train.amp) and by
// gradient checkpointing, whose recomputation must run in the forward pass's precision.
class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled) : previous_(at::autocast::is_enabled()) {
    if (enabled) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(enabled);
  }
  ~AutocastGuard() {
    // Casts cached inside the scope belong to it (weights cast once per forward pass).
    if (at::autocast::is_enabled()) at::autocast::clear_cache();
    at::autocast::set_enabled(previous_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace shopclip
