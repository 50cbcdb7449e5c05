#include "core/train/loss_terms.h"

#include <fmt/format.h>

#include "core/model/dual_encoder.h"
#include "core/train/rerank_loss.h"

namespace shopclip {
namespace {

const torch::Tensor& extra(const std::map<std::string, torch::Tensor>& extras, const char* name) {
  auto it = extras.find(name);
  if (it == extras.end()) {
    throw std::logic_error(fmt::format(
        "distillation: the batch has no '{}' rows (the loader needs the teacher cache's "
        "TeacherRows extension)",
        name));
  }
  return it->second;
}

TeacherBatch teacher_rows(const LossContext& context) {
  return {extra(context.extras, kTeacherImagesExtra), extra(context.extras, kTeacherTextsExtra),
          extra(context.gathered_extras, kTeacherImagesExtra),
          extra(context.gathered_extras, kTeacherTextsExtra)};
}

}  // namespace

torch::Tensor InfoNceTerm::compute(const LossContext& context) const {
  return mode_ == LossMode::kFull
             ? info_nce_full(context.batch, context.logit_scale, context.world_size)
             : info_nce_local(context.batch, context.logit_scale);
}

torch::Tensor TripletTerm::compute(const LossContext& context) const {
  if (context.step < start_step_) return {};
  return hardest_negative_triplet(context.batch, margin_);
}

torch::Tensor FeatureDistillTerm::compute(const LossContext& context) const {
  const auto& batch = context.batch;
  return feature_distillation(context.model.image_to_teacher(batch.local_images),
                              context.model.text_to_teacher(batch.local_texts),
                              teacher_rows(context), batch.all_images.size(0));
}

torch::Tensor ContrastiveDistillTerm::compute(const LossContext& context) const {
  const auto& batch = context.batch;
  return interactive_contrastive(context.model.image_to_teacher(batch.local_images),
                                 context.model.text_to_teacher(batch.local_texts),
                                 teacher_rows(context), batch.offset, batch.relevant,
                                 context.logit_scale);
}

RelationalDistillTerm::RelationalDistillTerm(double weight, double teacher_temperature,
                                             double student_temperature)
    : weight_(weight),
      teacher_temperature_(teacher_temperature),
      student_temperature_(student_temperature) {
  if (teacher_temperature <= 0) {
    throw ConfigError(
        "distill.teacher_temperature: must be resolved to a positive value (0 = the teacher's "
        "logit scale, read from the cache by train)");
  }
}

torch::Tensor RelationalDistillTerm::compute(const LossContext& context) const {
  const auto student_scale = student_temperature_ > 0 ? torch::full({}, 1.0 / student_temperature_,
                                                                    context.logit_scale.options())
                                                      : context.logit_scale;
  return relational_distillation(context.batch, teacher_rows(context), student_scale,
                                 1.0 / teacher_temperature_);
}

torch::Tensor RerankTerm::compute(const LossContext& context) const {
  auto reranker = context.model.reranker();
  if (!reranker) {
    throw ConfigError("train.rerank_weight: the model has no reranker (model.reranker.layers)");
  }
  return rerank_matching_loss(context.batch, *reranker);
}

std::vector<std::unique_ptr<LossTerm>> make_loss_terms(const TrainConfig& config,
                                                       const DistillConfig& distill) {
  std::vector<std::unique_ptr<LossTerm>> terms;
  if (config.infonce_weight > 0) {
    terms.push_back(std::make_unique<InfoNceTerm>(config.infonce_weight, config.loss_mode));
  }
  if (config.triplet_weight > 0) {
    terms.push_back(std::make_unique<TripletTerm>(config.triplet_weight, config.triplet_margin,
                                                  config.triplet_start_step));
  }
  if (distill.feature_weight > 0)
    terms.push_back(std::make_unique<FeatureDistillTerm>(distill.feature_weight));
  if (distill.contrastive_weight > 0)
    terms.push_back(std::make_unique<ContrastiveDistillTerm>(distill.contrastive_weight));
  if (distill.relational_weight > 0) {
    terms.push_back(std::make_unique<RelationalDistillTerm>(
        distill.relational_weight, distill.teacher_temperature, distill.student_temperature));
  }
  if (config.rerank_weight > 0) terms.push_back(std::make_unique<RerankTerm>(config.rerank_weight));
  if (terms.empty()) {
    throw ConfigError(
        "train.infonce_weight, train.triplet_weight, train.rerank_weight and every "
        "distill.*_weight are 0: nothing to train");
  }
  return terms;
}

}  // namespace shopclip
