#include "core/train/fused_adamw.h"

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include <ATen/Parallel.h>

namespace shopclip {
namespace {

// The optimizer state's key for a parameter: LibTorch 1.13 keys it by the TensorImpl address
// printed as a string, later versions by the address itself.
[[maybe_unused]] std::string state_key(const torch::Tensor& p, std::string*) {
  std::ostringstream text;
  text << p.unsafeGetTensorImpl();
  return text.str();
}
[[maybe_unused]] void* state_key(const torch::Tensor& p, void**) {
  return p.unsafeGetTensorImpl();
}

bool fusable(const torch::Tensor& p) {
  if (!p.device().is_cpu() || p.scalar_type() != torch::kFloat32 || !p.is_contiguous()) {
    return false;
  }
  const auto& g = p.grad();  // a parameter without one is skipped, as AdamW skips it
  return !g.defined() || (g.device().is_cpu() && g.scalar_type() == torch::kFloat32 &&
                          !g.is_sparse() && g.is_contiguous());
}

// One parameter's update, the order of AdamW::step's tensor operations kept per element:
// p *= 1 - lr wd; m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g^2;
// p += -(lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
struct Update {
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_correction2, eps, step_size;

  void apply(float* p, const float* g, float* m, float* v, std::int64_t n) const {
    at::parallel_for(0, n, 16384, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const float gradient = g[i];
        const float parameter = p[i] * decay;
        const float first = m[i] * beta1 + one_minus_beta1 * gradient;
        const float second = v[i] * beta2 + one_minus_beta2 * (gradient * gradient);
        const float denominator = std::sqrt(second) / sqrt_correction2 + eps;
        m[i] = first;
        v[i] = second;
        p[i] = parameter + -step_size * (first / denominator);
      }
    });
  }
};

}  // namespace

bool FusedAdamW::fused() const {
  for (const auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (options.amsgrad()) return false;
    for (const auto& p : group.params())
      if (!fusable(p)) return false;
  }
  return true;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  if (!fused()) return torch::optim::AdamW::step(std::move(closure));
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  using Key = std::decay_t<decltype(state_)>::key_type;
  for (auto& group : param_groups()) {
    const auto& options = static_cast<torch::optim::AdamWOptions&>(group.options());
    const auto [beta1, beta2] = options.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const Key key = state_key(p, static_cast<Key*>(nullptr));
      auto found = state_.find(key);
      if (found == state_.end()) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
        found = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*found->second);
      TORCH_CHECK(state.exp_avg().is_contiguous() && state.exp_avg_sq().is_contiguous() &&
                      state.exp_avg().scalar_type() == torch::kFloat32 &&
                      state.exp_avg_sq().scalar_type() == torch::kFloat32,
                  "FusedAdamW: moments must be contiguous float32");
      state.step(state.step() + 1);
      const double correction1 = 1 - std::pow(beta1, state.step());
      const double correction2 = 1 - std::pow(beta2, state.step());
      const Update update{static_cast<float>(1 - options.lr() * options.weight_decay()),
                          static_cast<float>(beta1),
                          static_cast<float>(1 - beta1),
                          static_cast<float>(beta2),
                          static_cast<float>(1 - beta2),
                          static_cast<float>(std::sqrt(correction2)),
                          static_cast<float>(options.eps()),
                          static_cast<float>(options.lr() / correction1)};
      update.apply(p.data_ptr<float>(), p.grad().data_ptr<float>(),
                   state.exp_avg().data_ptr<float>(), state.exp_avg_sq().data_ptr<float>(),
                   p.numel());
    }
  }
  return loss;
}

}  // namespace shopclip
