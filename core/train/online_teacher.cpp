#include "core/train/online_teacher.h"

#include <stdexcept>
#include <utility>

#include <torch/nn/functional/upsampling.h>
#include <torch/torch.h>

#include "core/train/distill_loss.h"

namespace shopclip {
namespace {

// The teacher's tokens of each row's query.
class TeacherTokens : public data::BatchExtension {
 public:
  TeacherTokens(std::shared_ptr<const data::Tokenizer> tokenizer, int context_length,
                std::vector<std::string> query_texts)
      : tokenizer_(std::move(tokenizer)),
        context_length_(context_length),
        query_texts_(std::move(query_texts)) {}

  void extend(data::Batch& batch) const override {
    std::vector<std::string> texts;
    texts.reserve(batch.pairs.size());
    for (const auto& pair : batch.pairs)
      texts.push_back(query_texts_.at(static_cast<std::size_t>(pair.query)));
    batch.extras[kTeacherTokensExtra] = tokenizer_->encode_batch(texts, context_length_);
  }

 private:
  std::shared_ptr<const data::Tokenizer> tokenizer_;
  int context_length_;
  std::vector<std::string> query_texts_;
};

}  // namespace

OnlineTeacher::OnlineTeacher(const std::string& checkpoint, torch::Device device)
    : checkpoint_(checkpoint), teacher_(load_model(checkpoint)) {
  teacher_.model->to(device);
  teacher_.model->eval();
  for (auto& parameter : teacher_.model->parameters())
    parameter.requires_grad_(false);
  tokenizer_ = std::make_shared<const data::Tokenizer>(teacher_.vocab);
}

std::int64_t OnlineTeacher::dim() const {
  return teacher_.config.model.embed_dim;
}

double OnlineTeacher::logit_scale() const {
  torch::NoGradGuard no_grad;
  return teacher_.model->logit_scale().item<double>();
}

int OnlineTeacher::resolution() const {
  return teacher_.config.model.image.resolution;
}

std::shared_ptr<data::BatchExtension> OnlineTeacher::token_extension(
    std::vector<std::string> query_texts) const {
  return std::make_shared<TeacherTokens>(tokenizer_, teacher_.config.model.text.context_length,
                                         std::move(query_texts));
}

void OnlineTeacher::add_rows(const torch::Tensor& images,
                             std::map<std::string, torch::Tensor>& extras) {
  auto tokens = extras.find(kTeacherTokensExtra);
  if (tokens == extras.end()) {
    throw std::logic_error("online teacher: the batch has no teacher tokens (TeacherTokens)");
  }
  torch::NoGradGuard no_grad;
  auto pixels = images;
  const int side = resolution();
  if (pixels.size(2) != side || pixels.size(3) != side) {
    namespace F = torch::nn::functional;
    pixels = F::interpolate(pixels, F::InterpolateFuncOptions()
                                        .size(std::vector<std::int64_t>{side, side})
                                        .mode(torch::kBilinear)
                                        .align_corners(false));
  }
  extras[kTeacherImagesExtra] = teacher_.model->encode_image(pixels).to(torch::kFloat32);
  extras[kTeacherTextsExtra] =
      teacher_.model->encode_text(tokens->second.to(images.device())).to(torch::kFloat32);
  extras.erase(tokens);
}

}  // namespace shopclip
