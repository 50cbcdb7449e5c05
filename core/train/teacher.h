#pragma once
// The teacher of distillation as a model: what `distill cache` encodes with and what the online
// teacher (distill.online) runs in the step. Either a shopclip run or checkpoint
// (distill.teacher), or an imported Chinese-CLIP model (distill.teacher = its converted weights,
// with distill.teacher_vision_config, teacher_text_config and teacher_vocab), both behind the
// Encoder seam (core/model/encoder.h) with unit-norm outputs.

#include <cstdint>
#include <memory>

#include <torch/types.h>

#include "core/config.h"
#include "core/model/encoder.h"
#include "core/train/teacher_cache.h"

namespace shopclip {

struct TeacherModel {
  std::unique_ptr<Encoder> encoder;  // normalized() is true; its weights on the given device
  // checkpoint, xxh64, kind ("shopclip" or "chinese_clip"), dim, logit_scale, image_resolution,
  // context_length
  TeacherIdentity identity;
  std::int64_t parameters = 0;
};

// Loads the teacher distill.teacher names onto `device`, in evaluation mode, without gradients.
// Throws DataError when the files are missing (naming distill.teacher), and what the loaders
// throw for malformed ones.
TeacherModel load_teacher(const DistillConfig& distill, torch::Device device);

}  // namespace shopclip
