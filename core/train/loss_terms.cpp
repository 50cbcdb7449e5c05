#include "core/train/loss_terms.h"

namespace shopclip {

torch::Tensor InfoNceTerm::compute(const LossContext& context) const {
  return mode_ == LossMode::kFull
             ? info_nce_full(context.batch, context.logit_scale, context.world_size)
             : info_nce_local(context.batch, context.logit_scale);
}

torch::Tensor TripletTerm::compute(const LossContext& context) const {
  if (context.step < start_step_) return {};
  return hardest_negative_triplet(context.batch, margin_);
}

std::vector<std::unique_ptr<LossTerm>> make_loss_terms(const TrainConfig& config) {
  std::vector<std::unique_ptr<LossTerm>> terms;
  if (config.infonce_weight > 0) {
    terms.push_back(std::make_unique<InfoNceTerm>(config.infonce_weight, config.loss_mode));
  }
  if (config.triplet_weight > 0) {
    terms.push_back(std::make_unique<TripletTerm>(config.triplet_weight, config.triplet_margin,
                                                  config.triplet_start_step));
  }
  if (terms.empty()) {
    throw ConfigError("train.infonce_weight and train.triplet_weight are both 0: nothing to train");
  }
  return terms;
}

}  // namespace shopclip
