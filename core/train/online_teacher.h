#pragma once
// A distillation teacher that runs in the step (distill.online) instead of being read from a
// cache: its embeddings of exactly the batch the student sees, augmented images included, which a
// cache of the stored images cannot hold. The teacher is a shopclip run or checkpoint or an
// imported Chinese-CLIP model (load_teacher, core/train/teacher.h); it encodes without gradients,
// in evaluation mode, its weights on the student's device.
//
//   images  the student's batch, float32 [b, 3, R, R] normalised (data/loader.h); resized
//           (bilinear) to the teacher's resolution when it differs
//   tokens  the queries tokenized with the teacher's vocabulary at its context length: the
//           TeacherTokens extension adds them to each batch as kTeacherTokensExtra (int64
//           [b, L_t]), from the pair's query text (before text augmentation, as the cache holds
//           the teacher's embedding of the stored query)
//   output  unit-norm float32 [b, Dt], the rows distillation's terms read as kTeacherImagesExtra
//           and kTeacherTextsExtra (core/train/distill_loss.h)

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "core/train/teacher.h"
#include "data/loader.h"
#include "data/tokenizer.h"

namespace shopclip {

inline constexpr const char* kTeacherTokensExtra = "teacher_tokens";

class OnlineTeacher {
 public:
  // The teacher distill.teacher names (load_teacher), on `device`.
  OnlineTeacher(const DistillConfig& distill, torch::Device device);

  std::int64_t dim() const { return teacher_.identity.dim; }
  double logit_scale() const { return teacher_.identity.logit_scale; }
  int resolution() const { return teacher_.identity.image_resolution; }
  const std::string& checkpoint() const { return teacher_.identity.checkpoint; }

  // Adds kTeacherTokensExtra to every batch. query_texts: the loader's texts (row =
  // TrainPair::query).
  std::shared_ptr<data::BatchExtension> token_extension(std::vector<std::string> query_texts) const;

  // Sets kTeacherImagesExtra and kTeacherTextsExtra of `extras` (on the images' device) from the
  // batch's images and its kTeacherTokensExtra, which it removes. std::logic_error when the
  // tokens are missing.
  void add_rows(const torch::Tensor& images, std::map<std::string, torch::Tensor>& extras);

 private:
  TeacherModel teacher_;
  std::shared_ptr<const data::Tokenizer> tokenizer_;  // a copy of the teacher's, for the loader
};

}  // namespace shopclip
