#include "core/train/step.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/torch.h>

#include "core/model/autocast.h"
#include "core/train/loss.h"
#include "core/train/optim.h"
#include "dist/autograd.h"

namespace shopclip {

StepRunner::StepRunner(DualEncoder& model, torch::optim::Optimizer& optimizer,
                       dist::Communicator& comm, const TrainConfig& config)
    : model_(model), optimizer_(optimizer), comm_(comm), config_(config) {
  if (comm_.world_size() > 1) {
    std::vector<torch::Tensor> trainable;  // a frozen tower has no gradients to sum
    for (const auto& parameter : model_->parameters())
      if (parameter.requires_grad()) trainable.push_back(parameter);
    reducer_ = std::make_unique<dist::GradientReducer>(
        comm_, trainable, static_cast<std::int64_t>(config.bucket_mb * 1024 * 1024));
  }
}

StepRunner::~StepRunner() = default;

StepResult StepRunner::forward_backward(const StepInputs& inputs) {
  optimizer_.zero_grad();
  torch::Tensor local_images, local_texts;
  {
    AutocastGuard autocast(config_.amp);
    // The loss and its logits stay in float32.
    local_images = model_->encode_image(inputs.images).to(torch::kFloat32);
    local_texts = model_->encode_text(inputs.tokens).to(torch::kFloat32);
  }
  const auto rows = local_images.size(0), dims = local_images.size(1);

  ContrastiveBatch batch;
  batch.local_images = local_images;
  batch.local_texts = local_texts;
  batch.relevant = inputs.relevant;
  if (comm_.world_size() > 1) {
    // One gather for both towers: [b, 2D] -> [B, 2D].
    const auto gathered =
        dist::all_gather_with_grad(comm_, torch::cat({local_images, local_texts}, 1));
    batch.all_images = gathered.narrow(1, 0, dims);
    batch.all_texts = gathered.narrow(1, dims, dims);
    batch.offset = static_cast<std::int64_t>(comm_.rank()) * rows;
  } else {
    batch.all_images = local_images;
    batch.all_texts = local_texts;
  }

  torch::Tensor loss = torch::zeros({}, local_images.options());
  torch::Tensor infonce, triplet;
  if (config_.infonce_weight > 0) {
    infonce = config_.loss_mode == "full"
                  ? info_nce_full(batch, model_->logit_scale(), comm_.world_size())
                  : info_nce_local(batch, model_->logit_scale());
    loss = loss + config_.infonce_weight * infonce;
  }
  const bool triplet_on = config_.triplet_weight > 0 && inputs.step >= config_.triplet_start_step;
  if (triplet_on) {
    triplet = hardest_negative_triplet(batch, config_.triplet_margin);
    loss = loss + config_.triplet_weight * triplet;
  }
  loss.backward();
  if (reducer_) reducer_->finish();

  // The shares' values summed over ranks: the global batch's losses, for logs.
  const auto zero = torch::zeros({}, loss.options());
  auto parts = torch::stack({loss.detach(), infonce.defined() ? infonce.detach() : zero,
                             triplet.defined() ? triplet.detach() : zero})
                   .to(torch::kFloat64);
  comm_.all_reduce(parts, dist::ReduceOp::kSum);
  parts = parts.cpu();
  return {parts[0].item<double>(), parts[1].item<double>(), parts[2].item<double>()};
}

StepResult StepRunner::step(const StepInputs& inputs, double lr) {
  set_learning_rate(optimizer_, lr);
  const StepResult result = forward_backward(inputs);
  if (config_.grad_clip > 0)
    torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.grad_clip);
  optimizer_.step();
  model_->clamp_logit_scale();
  return result;
}

double StepRunner::gradient_wait_seconds() const {
  return reducer_ ? reducer_->wait_seconds() : 0.0;
}

}  // namespace shopclip
