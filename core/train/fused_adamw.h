#pragma once
// AdamW whose update is one pass over each parameter on the CPU.
//
// LibTorch 1.13's AdamW::step runs eight tensor operations per parameter (decay, two moment
// updates, square root, division, epsilon, the update), each a pass over parameter-sized memory
// and an operator dispatch: 56 parameters of bench_small made ~450 operator calls per step.
// FusedAdamW computes the same update element by element in one parallel pass. Its state is
// AdamW's own (AdamWParamState: step, exp_avg, exp_avg_sq), so checkpoints, load_optimizer_state
// and the trainer see an ordinary AdamW.

#include <torch/optim/adamw.h>

namespace shopclip {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  // float32 CPU parameters with contiguous gradients and moments, without amsgrad, take the
  // fused pass; any other configuration runs AdamW::step for the whole step. The closure, as
  // in AdamW, is evaluated first with gradients enabled.
  torch::Tensor step(LossClosure closure = nullptr) override;

  // Whether step() takes the fused pass for every parameter with a gradient.
  bool fused() const;
};

}  // namespace shopclip
