#include "core/train/weight_average.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

namespace shopclip {

WeightAverage::WeightAverage(torch::nn::Module& model, double decay) : decay_(decay) {
  if (!(decay > 0 && decay < 1)) {
    throw std::invalid_argument(fmt::format("weight average: decay {} is not in (0, 1)", decay));
  }
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_parameters(true)) {
    if (!item.value().requires_grad()) continue;  // frozen: equal to the model's forever
    pairs_[item.key()] = {item.value(), item.value().detach().clone(), true};
  }
  for (const auto& item : model.named_buffers(true)) {
    pairs_[item.key()] = {item.value(), item.value().detach().clone(),
                          item.value().is_floating_point()};
  }
  for (const auto& [name, pair] : pairs_)
    average_[name] = pair.average;
}

double WeightAverage::decay_at(double decay, std::int64_t updates_done) {
  const double t = static_cast<double>(updates_done);
  return std::min(decay, (1.0 + t) / (10.0 + t));
}

void WeightAverage::update(std::int64_t updates_done) {
  torch::NoGradGuard no_grad;
  const double decay = decay_at(decay_, updates_done);
  for (auto& [name, pair] : pairs_) {
    if (pair.floating) {
      // average += (1 - decay) * (weight - average), in the average's own type
      pair.average.lerp_(pair.weight.detach(), 1.0 - decay);
    } else {
      pair.average.copy_(pair.weight);
    }
  }
}

void WeightAverage::swap_with_model() {
  torch::NoGradGuard no_grad;
  for (auto& [name, pair] : pairs_) {
    const torch::Tensor held = pair.weight.detach().clone();
    pair.weight.copy_(pair.average);
    pair.average.copy_(held);
  }
}

void WeightAverage::load(const std::map<std::string, torch::Tensor>& stored,
                         const std::string& source) {
  std::vector<std::string> problems;
  for (const auto& [name, pair] : pairs_) {
    const auto it = stored.find(name);
    if (it == stored.end()) {
      problems.push_back(name + " (missing)");
    } else if (it->second.sizes() != pair.average.sizes()) {
      problems.push_back(name + " (wrong shape)");
    }
  }
  if (!problems.empty()) {
    throw std::runtime_error(
        fmt::format("'{}': the stored weight average does not fit the model: {}", source,
                    fmt::join(problems, ", ")));
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, pair] : pairs_)
    pair.average.copy_(stored.at(name));
}

}  // namespace shopclip
