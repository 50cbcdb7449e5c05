#pragma once
// One optimisation step of the dual encoder on this rank's share of a global batch, in stages:
//
//   embed    each rank encodes its own rows (under autocast with train.amp), float32 out
//   gather   one all-gather of image and text embeddings with gradient (dist/autograd.h)
//   loss     every loss term (core/train/loss_terms.h) on the gathered batch: this rank's share
//   backward autograd, with the gradient reducer's hooks summing parameter gradients over ranks
//            in buckets while backward runs (dist/gradients.h); or, with synchronize = false,
//            only accumulating them locally (for micro-batches before the last one)
//   reduce   wait for the sums: every parameter's .grad is then the global batch's gradient
//
// A StepStrategy composes the stages into forward_backward. WholeBatchStep runs them once on the
// whole local batch (the result is exactly the gradient of the single-process loss on the global
// batch); GradCacheStep gets the same gradient with the activation memory of one micro-batch.
// With one process every collective is an identity and no reducer is installed.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "core/train/loss_terms.h"
#include "dist/communicator.h"
#include "dist/gradients.h"

namespace shopclip {

struct StepInputs {
  torch::Tensor images;    // float32 [b, 3, R, R], this rank's rows, on the model's device
  torch::Tensor tokens;    // int64 [b, L]
  torch::Tensor relevant;  // bool [B, B] over the global batch, or undefined (see ContrastiveBatch)
  std::int64_t step = 0;   // global optimizer step (a term may start at a given step)
  std::map<std::string, torch::Tensor> extras;  // the batch's per-row extras (data/loader.h)
};

struct StepResult {
  double loss = 0;  // the global batch's weighted loss (shares summed over ranks)
  // Each term's unweighted value on the global batch, by term name, in term order (0 while a
  // term is off at this step).
  std::vector<std::pair<std::string, double>> parts;

  double part(const std::string& name) const;  // 0 when there is no such term
};

// The stages, for strategies to compose. Holds references: model, comm and the reducer must
// outlive it.
class StepStages {
 public:
  StepStages(DualEncoder& model, dist::Communicator& comm, const TrainConfig& config,
             const DistillConfig& distill, dist::GradientReducer* reducer);

  struct Embeddings {
    torch::Tensor images, texts;  // float32 [rows, D], unit norm
    // With train.rerank_weight > 0, the towers' token features from the same forward pass
    // (DualEncoderImpl::encode_with_tokens, float32), else undefined.
    torch::Tensor image_tokens, text_states, text_padding;
  };
  // Encodes rows of images float32 [n, 3, R, R] and tokens int64 [n, L].
  Embeddings embed(const torch::Tensor& images, const torch::Tensor& tokens) const;
  // This rank's rows and the whole global batch (one all-gather of [b, 2D] with gradient; with
  // token features, one more of them flattened, and of the text padding without gradient).
  ContrastiveBatch gather(const Embeddings& local, const torch::Tensor& relevant) const;

  struct Loss {
    torch::Tensor total;                                       // 0-dim, this rank's share
    std::vector<std::pair<std::string, torch::Tensor>> parts;  // unweighted, undefined = off
  };
  Loss loss(const ContrastiveBatch& batch, const StepInputs& inputs) const;
  // Backpropagates `loss`. With synchronize false the reducer only accumulates this backward's
  // gradients; the next synchronized backward adds its own and starts the sums.
  void backward(const torch::Tensor& loss, bool synchronize = true);
  // Waits for the gradient sums of the last synchronized backward (no-op with one process).
  void reduce();
  // The loss values summed over ranks (one small all-reduce), for logs and metrics.
  StepResult summarize(const Loss& loss) const;

 private:
  DualEncoder& model_;
  dist::Communicator& comm_;
  const TrainConfig& config_;
  dist::GradientReducer* reducer_;
  std::vector<std::unique_ptr<LossTerm>> terms_;
  // Each extra of the step's inputs gathered over ranks (no gradient), for the terms.
  std::map<std::string, torch::Tensor> gather_extras(
      const std::map<std::string, torch::Tensor>& extras) const;
};

// How one step's gradient is computed from the stages.
class StepStrategy {
 public:
  virtual ~StepStrategy() = default;
  // Afterwards every trainable parameter's .grad holds the gradient of the global batch's loss
  // (added to what .grad held before: the caller zeroes gradients first), the same on every rank.
  virtual StepResult forward_backward(StepStages& stages, const StepInputs& inputs) = 0;
};

// All local rows at once: embed, gather, loss, backward, reduce.
class WholeBatchStep : public StepStrategy {
 public:
  StepResult forward_backward(StepStages& stages, const StepInputs& inputs) override;
};

// GradCache (Gao et al., 2021), train.micro_batch: the whole batch's exact contrastive gradient
// while holding the activations of only `micro_batch` rows of this rank at a time.
//   1. encode every micro-batch without gradients (the random generators' states saved first, so
//      that dropout replays) and concatenate: this rank's embeddings [b, D], made leaves;
//   2. gather, loss and backward on those leaves only: the gradient of the loss with respect to
//      each embedding row (and the logit scale's gradient, once);
//   3. encode each micro-batch again with gradients (generators restored) and backpropagate
//      <embeddings, cached row gradients>, which gives the towers' parameters the same gradient as
//      one backward through the whole batch; the reducer sums over ranks after the last one.
// Each row is encoded twice (about 4/3 of the plain step's compute). Exact for towers without
// cross-row state (ViT, Chinese-CLIP). A CNN tower's BatchNorm normalises each micro-batch by its
// own statistics (those of the micro-batch on every rank, with several ranks), so the gradient is
// that of a model with micro-batch statistics, and its running statistics are updated by both
// passes; freeze the image tower (locked-image tuning) or use a ViT when that matters.
class GradCacheStep : public StepStrategy {
 public:
  explicit GradCacheStep(std::int64_t micro_batch);
  StepResult forward_backward(StepStages& stages, const StepInputs& inputs) override;

 private:
  std::int64_t micro_batch_;
};

class StepRunner {
 public:
  // model, optimizer and comm must outlive the runner. Installs the gradient reducer's hooks when
  // comm.world_size() > 1. distill: the distillation terms' weights (default: none; the teacher
  // rows then come with each batch's extras). strategy null = from the config: GradCacheStep when
  // train.micro_batch > 0, else WholeBatchStep. Throws ConfigError for train.rerank_weight with
  // train.micro_batch.
  StepRunner(DualEncoder& model, torch::optim::Optimizer& optimizer, dist::Communicator& comm,
             const TrainConfig& config, const DistillConfig& distill = {},
             std::unique_ptr<StepStrategy> strategy = nullptr);
  ~StepRunner();

  // The strategy's forward_backward. Does not zero gradients (step() does).
  StepResult forward_backward(const StepInputs& inputs);

  // Zeroes gradients, forward_backward, then gradient clipping, an optimizer step at `lr` and
  // the logit-scale cap.
  StepResult step(const StepInputs& inputs, double lr);

  // Seconds spent waiting for gradient communication after backward, since construction.
  double gradient_wait_seconds() const;

 private:
  DualEncoder& model_;
  torch::optim::Optimizer& optimizer_;
  TrainConfig config_;
  DistillConfig distill_;
  std::unique_ptr<dist::GradientReducer> reducer_;
  std::unique_ptr<StepStages> stages_;
  std::unique_ptr<StepStrategy> strategy_;
};

}  // namespace shopclip
