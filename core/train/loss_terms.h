#pragma once
// The training objective as a list of weighted terms, built from the config. Each term computes
// this rank's share of its loss on the gathered batch (core/train/loss.h); the step sums the
// weighted shares and reports every term's value by name in metrics rows and logs. A new loss
// (distillation, say) is one more LossTerm and one more line in make_loss_terms.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "core/train/distill_loss.h"
#include "core/train/loss.h"

namespace shopclip {

class DualEncoderImpl;

// What a term may look at. All tensors on the training device.
struct LossContext {
  const ContrastiveBatch& batch;  // this rank's rows and the gathered global batch
  torch::Tensor logit_scale;      // 0-dim, carries gradient
  int world_size = 1;
  std::int64_t step = 0;                               // global optimizer step
  const std::map<std::string, torch::Tensor>& extras;  // the batch's per-row extras (loader)
  // The same extras, every rank's rows in rank order ([B, ...]), without gradient.
  const std::map<std::string, torch::Tensor>& gathered_extras;
  // The model being trained, for terms with parameters of their own (distillation projections).
  DualEncoderImpl& model;
};

class LossTerm {
 public:
  virtual ~LossTerm() = default;
  // The name of the term in metrics rows ("infonce", "triplet").
  virtual std::string name() const = 0;
  virtual double weight() const = 0;
  // This rank's share of the unweighted term (a 0-dim float32 tensor with gradient), or an
  // undefined tensor when the term is off at this step.
  virtual torch::Tensor compute(const LossContext& context) const = 0;
};

// Symmetric InfoNCE over the global batch (train.loss_mode local or full).
class InfoNceTerm : public LossTerm {
 public:
  InfoNceTerm(double weight, LossMode mode) : weight_(weight), mode_(mode) {}
  std::string name() const override { return "infonce"; }
  double weight() const override { return weight_; }
  torch::Tensor compute(const LossContext& context) const override;

 private:
  double weight_;
  LossMode mode_;
};

// VSE++ hardest-negative triplet loss over the global batch, from step start_step on.
class TripletTerm : public LossTerm {
 public:
  TripletTerm(double weight, double margin, std::int64_t start_step)
      : weight_(weight), margin_(margin), start_step_(start_step) {}
  std::string name() const override { return "triplet"; }
  double weight() const override { return weight_; }
  torch::Tensor compute(const LossContext& context) const override;

 private:
  double weight_, margin_;
  std::int64_t start_step_;
};

// Knowledge distillation (core/train/distill_loss.h) from the teacher's rows of the batch: the
// extras kTeacherImagesExtra and kTeacherTextsExtra (float [b, Dt], unit norm), local and
// gathered. Terms that compare embeddings map the student's into the teacher's space with the
// model's projections (DualEncoderImpl::image_to_teacher).
class FeatureDistillTerm : public LossTerm {
 public:
  explicit FeatureDistillTerm(double weight) : weight_(weight) {}
  std::string name() const override { return "distill_feature"; }
  double weight() const override { return weight_; }
  torch::Tensor compute(const LossContext& context) const override;

 private:
  double weight_;
};

class ContrastiveDistillTerm : public LossTerm {
 public:
  explicit ContrastiveDistillTerm(double weight) : weight_(weight) {}
  std::string name() const override { return "distill_contrastive"; }
  double weight() const override { return weight_; }
  torch::Tensor compute(const LossContext& context) const override;

 private:
  double weight_;
};

// student_temperature 0: the student's learnable logit scale; teacher_temperature must be
// positive (train resolves 0 from the teacher cache before the terms are made).
class RelationalDistillTerm : public LossTerm {
 public:
  RelationalDistillTerm(double weight, double teacher_temperature, double student_temperature);
  std::string name() const override { return "distill_relational"; }
  double weight() const override { return weight_; }
  torch::Tensor compute(const LossContext& context) const override;

 private:
  double weight_, teacher_temperature_, student_temperature_;
};

// The learned reranker's matching loss (core/train/rerank_loss.h) on the batch's token features;
// the model's reranker (model.reranker) is the one trained.
class RerankTerm : public LossTerm {
 public:
  explicit RerankTerm(double weight) : weight_(weight) {}
  std::string name() const override { return "rerank"; }
  double weight() const override { return weight_; }
  torch::Tensor compute(const LossContext& context) const override;

 private:
  double weight_;
};

// The terms with a positive weight, in a fixed order (InfoNCE, triplet, the distillation terms:
// feature, contrastive, relational, then the reranker's). Throws ConfigError when none is on.
std::vector<std::unique_ptr<LossTerm>> make_loss_terms(const TrainConfig& config,
                                                       const DistillConfig& distill = {});

}  // namespace shopclip
