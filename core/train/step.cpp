#include "core/train/step.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "core/model/autocast.h"
#include "core/train/optim.h"
#include "dist/autograd.h"

namespace shopclip {

double StepResult::part(const std::string& name) const {
  for (const auto& [part_name, value] : parts)
    if (part_name == name) return value;
  return 0.0;
}

// ---- stages -------------------------------------------------------------------------------------

StepStages::StepStages(DualEncoder& model, dist::Communicator& comm, const TrainConfig& config,
                       const DistillConfig& distill, dist::GradientReducer* reducer)
    : model_(model),
      comm_(comm),
      config_(config),
      reducer_(reducer),
      terms_(make_loss_terms(config, distill)) {}

StepStages::Embeddings StepStages::embed(const torch::Tensor& images,
                                         const torch::Tensor& tokens) const {
  AutocastGuard autocast(config_.amp);
  // The loss and its logits stay in float32.
  if (config_.rerank_weight > 0) {
    auto encoded = model_->encode_with_tokens(images, tokens);
    return {encoded.images.to(torch::kFloat32), encoded.texts.to(torch::kFloat32),
            encoded.image_tokens.to(torch::kFloat32), encoded.text_states.to(torch::kFloat32),
            encoded.text_padding};
  }
  Embeddings out;
  out.images = model_->encode_image(images).to(torch::kFloat32);
  out.texts = model_->encode_text(tokens).to(torch::kFloat32);
  return out;
}

ContrastiveBatch StepStages::gather(const Embeddings& local, const torch::Tensor& relevant) const {
  ContrastiveBatch batch;
  batch.local_images = local.images;
  batch.local_texts = local.texts;
  batch.relevant = relevant;
  if (local.image_tokens.defined()) {
    batch.tokens = {local.image_tokens, local.text_states, local.text_padding,
                    local.image_tokens, local.text_states, local.text_padding};
  }
  if (comm_.world_size() == 1) {
    batch.all_images = local.images;
    batch.all_texts = local.texts;
    return batch;
  }
  if (local.image_tokens.defined()) {
    // [b, T, C] and [b, L, W] as one [b, T*C + L*W] gather with gradient.
    const auto& image = local.image_tokens;
    const auto& text = local.text_states;
    const auto gathered =
        dist::all_gather_with_grad(comm_, torch::cat({image.flatten(1), text.flatten(1)}, 1));
    const auto image_size = image.size(1) * image.size(2);
    // narrow() along dim 1 is not contiguous: reshape copies.
    batch.tokens.all_images =
        gathered.narrow(1, 0, image_size).reshape({-1, image.size(1), image.size(2)});
    batch.tokens.all_texts = gathered.narrow(1, image_size, text.size(1) * text.size(2))
                                 .reshape({-1, text.size(1), text.size(2)});
    batch.tokens.all_padding =
        comm_.all_gather(local.text_padding.to(torch::kUInt8).contiguous()).to(torch::kBool);
  }
  const auto rows = local.images.size(0), dims = local.images.size(1);
  // One gather for both towers: [b, 2D] -> [B, 2D].
  const auto gathered =
      dist::all_gather_with_grad(comm_, torch::cat({local.images, local.texts}, 1));
  batch.all_images = gathered.narrow(1, 0, dims);
  batch.all_texts = gathered.narrow(1, dims, dims);
  batch.offset = static_cast<std::int64_t>(comm_.rank()) * rows;
  return batch;
}

std::map<std::string, torch::Tensor> StepStages::gather_extras(
    const std::map<std::string, torch::Tensor>& extras) const {
  if (comm_.world_size() == 1) return extras;
  std::map<std::string, torch::Tensor> gathered;
  for (const auto& [name, tensor] : extras)
    gathered[name] = comm_.all_gather(tensor.detach().contiguous());
  return gathered;
}

StepStages::Loss StepStages::loss(const ContrastiveBatch& batch, const StepInputs& inputs) const {
  const auto gathered = gather_extras(inputs.extras);
  const LossContext context{batch,       model_->logit_scale(), comm_.world_size(),
                            inputs.step, inputs.extras,         gathered,
                            *model_};
  Loss loss{torch::zeros({}, batch.local_images.options()), {}};
  for (const auto& term : terms_) {
    torch::Tensor value = term->compute(context);
    if (value.defined()) loss.total = loss.total + term->weight() * value;
    loss.parts.emplace_back(term->name(), value);
  }
  return loss;
}

void StepStages::backward(const torch::Tensor& loss, bool synchronize) {
  if (reducer_) reducer_->set_synchronize(synchronize);
  loss.backward();
}

void StepStages::reduce() {
  if (reducer_) reducer_->finish();
}

StepResult StepStages::summarize(const Loss& loss) const {
  std::vector<torch::Tensor> values{loss.total.detach()};
  const auto zero = torch::zeros({}, loss.total.options());
  for (const auto& part : loss.parts)
    values.push_back(part.second.defined() ? part.second.detach() : zero);
  auto sums = torch::stack(values).to(torch::kFloat64);
  comm_.all_reduce(sums, dist::ReduceOp::kSum);
  sums = sums.cpu();
  StepResult result;
  result.loss = sums[0].item<double>();
  for (std::size_t i = 0; i < loss.parts.size(); ++i) {
    result.parts.emplace_back(loss.parts[i].first,
                              sums[static_cast<std::int64_t>(i) + 1].item<double>());
  }
  return result;
}

StepResult WholeBatchStep::forward_backward(StepStages& stages, const StepInputs& inputs) {
  const auto local = stages.embed(inputs.images, inputs.tokens);
  const auto batch = stages.gather(local, inputs.relevant);
  const auto loss = stages.loss(batch, inputs);
  stages.backward(loss.total);
  stages.reduce();
  return stages.summarize(loss);
}

// ---- GradCache
// ------------------------------------------------------------------------------------

namespace {

// The states of the default random generators that a forward pass may draw from (dropout): the
// CPU one and, for a CUDA input, that device's.
class GeneratorStates {
 public:
  explicit GeneratorStates(const torch::Device& device) {
    generators_.push_back(at::globalContext().defaultGenerator(torch::kCPU));
    if (device.is_cuda()) generators_.push_back(at::globalContext().defaultGenerator(device));
  }
  void save() {
    states_.clear();
    for (auto& generator : generators_) {
      std::lock_guard<std::mutex> lock(generator.mutex());
      states_.push_back(generator.get_state());
    }
  }
  void restore() {
    for (std::size_t i = 0; i < generators_.size(); ++i) {
      std::lock_guard<std::mutex> lock(generators_[i].mutex());
      generators_[i].set_state(states_[i]);
    }
  }

 private:
  std::vector<at::Generator> generators_;
  std::vector<torch::Tensor> states_;
};

}  // namespace

GradCacheStep::GradCacheStep(std::int64_t micro_batch) : micro_batch_(micro_batch) {
  if (micro_batch <= 0) throw std::invalid_argument("GradCacheStep: micro_batch must be positive");
}

StepResult GradCacheStep::forward_backward(StepStages& stages, const StepInputs& inputs) {
  const std::int64_t rows = inputs.images.size(0);
  std::vector<std::pair<std::int64_t, std::int64_t>> chunks;  // (first row, rows)
  for (std::int64_t begin = 0; begin < rows; begin += micro_batch_)
    chunks.emplace_back(begin, std::min(micro_batch_, rows - begin));
  std::vector<GeneratorStates> generators(chunks.size(), GeneratorStates(inputs.images.device()));

  // 1. Embeddings of every row, without activations kept.
  std::vector<torch::Tensor> images, texts;
  {
    torch::NoGradGuard no_grad;
    for (std::size_t c = 0; c < chunks.size(); ++c) {
      generators[c].save();
      const auto [begin, count] = chunks[c];
      const auto embedded = stages.embed(inputs.images.narrow(0, begin, count),
                                         inputs.tokens.narrow(0, begin, count));
      images.push_back(embedded.images);
      texts.push_back(embedded.texts);
    }
  }
  // 2. The loss on the embeddings as leaves: their gradients, and the logit scale's. The reducer
  // only accumulates here; the logit scale's sum over ranks goes out with the last micro-batch.
  StepStages::Embeddings leaves;
  leaves.images = torch::cat(images).requires_grad_();
  leaves.texts = torch::cat(texts).requires_grad_();
  images.clear();
  texts.clear();
  const auto loss = stages.loss(stages.gather(leaves, inputs.relevant), inputs);
  stages.backward(loss.total, /*synchronize=*/false);
  const torch::Tensor image_grads = leaves.images.grad(), text_grads = leaves.texts.grad();

  // 3. Each micro-batch again, with gradients, backpropagating its rows' cached gradients.
  for (std::size_t c = 0; c < chunks.size(); ++c) {
    generators[c].restore();
    const auto [begin, count] = chunks[c];
    const auto embedded =
        stages.embed(inputs.images.narrow(0, begin, count), inputs.tokens.narrow(0, begin, count));
    const torch::Tensor surrogate = (embedded.images * image_grads.narrow(0, begin, count)).sum() +
                                    (embedded.texts * text_grads.narrow(0, begin, count)).sum();
    stages.backward(surrogate, /*synchronize=*/c + 1 == chunks.size());
  }
  stages.reduce();
  return stages.summarize(loss);
}

// ---- runner -------------------------------------------------------------------------------------

StepRunner::StepRunner(DualEncoder& model, torch::optim::Optimizer& optimizer,
                       dist::Communicator& comm, const TrainConfig& config,
                       const DistillConfig& distill, std::unique_ptr<StepStrategy> strategy)
    : model_(model),
      optimizer_(optimizer),
      config_(config),
      distill_(distill),
      strategy_(std::move(strategy)) {
  if (config_.rerank_weight > 0 && config_.micro_batch > 0) {
    throw ConfigError(
        "config key 'train.rerank_weight': the reranker's loss reads the towers' token features "
        "of the whole batch, which GradCache (train.micro_batch) does not keep; set "
        "train.micro_batch: 0");
  }
  if (comm.world_size() > 1) {
    std::vector<torch::Tensor> trainable;  // a frozen tower has no gradients to sum
    for (const auto& parameter : model_->parameters())
      if (parameter.requires_grad()) trainable.push_back(parameter);
    reducer_ = std::make_unique<dist::GradientReducer>(
        comm, trainable, static_cast<std::int64_t>(config.bucket_mb * 1024 * 1024));
  }
  stages_ = std::make_unique<StepStages>(model_, comm, config_, distill_, reducer_.get());
  if (!strategy_ && config_.micro_batch > 0) {
    strategy_ = std::make_unique<GradCacheStep>(config_.micro_batch);
  }
  if (!strategy_) strategy_ = std::make_unique<WholeBatchStep>();
}

StepRunner::~StepRunner() = default;

StepResult StepRunner::forward_backward(const StepInputs& inputs) {
  return strategy_->forward_backward(*stages_, inputs);
}

StepResult StepRunner::step(const StepInputs& inputs, double lr) {
  set_learning_rate(optimizer_, lr);
  // Zeroed in place, as LibTorch 1.13 does; 2.x's default (set_to_none) would let AdamW skip a
  // parameter that gets no gradient in a step instead of decaying it.
#if TORCH_VERSION_MAJOR >= 2
  optimizer_.zero_grad(/*set_to_none=*/false);
#else
  optimizer_.zero_grad();
#endif
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
