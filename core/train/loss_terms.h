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
#include "core/train/loss.h"

namespace shopclip {

// What a term may look at. All tensors on the training device.
struct LossContext {
  const ContrastiveBatch& batch;  // this rank's rows and the gathered global batch
  torch::Tensor logit_scale;      // 0-dim, carries gradient
  int world_size = 1;
  std::int64_t step = 0;                               // global optimizer step
  const std::map<std::string, torch::Tensor>& extras;  // the batch's per-row extras (loader)
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

// The terms with a positive weight, in a fixed order (InfoNCE, triplet). Throws ConfigError when
// none is on.
std::vector<std::unique_ptr<LossTerm>> make_loss_terms(const TrainConfig& config);

}  // namespace shopclip
