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

OnlineTeacher::OnlineTeacher(const DistillConfig& distill, torch::Device device)
    : teacher_(load_teacher(distill, device)),
      tokenizer_(std::make_shared<const data::Tokenizer>(teacher_.encoder->tokenizer())) {}

std::shared_ptr<data::BatchExtension> OnlineTeacher::token_extension(
    std::vector<std::string> query_texts) const {
  return std::make_shared<TeacherTokens>(tokenizer_, teacher_.identity.context_length,
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
  // The encoder moves its inputs to its weights and answers on the CPU (core/model/encoder.h).
  extras[kTeacherImagesExtra] = teacher_.encoder->encode_images(pixels).to(images.device());
  extras[kTeacherTextsExtra] = teacher_.encoder->encode_texts(tokens->second).to(images.device());
  extras.erase(tokens);
}

}  // namespace shopclip
