#pragma once
// An exponential moving average of a model's weights (train.ema_decay), kept beside the raw
// weights, evaluated beside them and stored in checkpoints so that a resumed run continues the
// same average.
//
// After optimizer update t (0-based), every averaged tensor becomes
//   average = decay_t * average + (1 - decay_t) * weight,   decay_t = min(decay, (1 + t) / (10 +
//   t))
// so that the first updates, when the average would mostly remember the random initialisation,
// move it quickly. Averaged: the trainable parameters and the floating-point buffers (BatchNorm's
// running statistics); integer buffers (a BatchNorm's batch counter) are copied. Frozen
// parameters never change and are not stored.

#include <cstdint>
#include <map>
#include <string>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace shopclip {

class WeightAverage {
 public:
  // Starts the average at the model's current weights. model must outlive this object; the
  // average lives on each tensor's device.
  WeightAverage(torch::nn::Module& model, double decay);

  // The decay applied by update number `updates_done` (0-based).
  static double decay_at(double decay, std::int64_t updates_done);

  // Folds the model's current weights in as update number `updates_done`.
  void update(std::int64_t updates_done);

  // Exchanges the model's weights with the average (call again to exchange them back). Used to
  // evaluate or save the averaged model with the code that handles the model.
  void swap_with_model();

  // The averaged tensors by their names in the model (checkpoint format).
  const std::map<std::string, torch::Tensor>& tensors() const { return average_; }
  // Replaces the average by stored tensors (a resumed run). Throws std::runtime_error naming the
  // missing or mis-shaped tensors, and `source` (the checkpoint's path).
  void load(const std::map<std::string, torch::Tensor>& stored, const std::string& source);

 private:
  struct Pair {
    torch::Tensor weight;   // the model's tensor
    torch::Tensor average;  // same shape, device and type
    bool floating = true;   // false: copied, not averaged
  };
  double decay_;
  std::map<std::string, torch::Tensor> average_;
  std::map<std::string, Pair> pairs_;
};

}  // namespace shopclip
