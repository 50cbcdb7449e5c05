#include "core/train/teacher.h"

#include <algorithm>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/model/chinese_clip.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "data/files.h"

namespace shopclip {
namespace {

TeacherModel shopclip_teacher(const std::string& teacher, torch::Device device) {
  const std::string checkpoint = teacher_checkpoint_path(teacher);
  LoadedModel loaded = load_model(checkpoint);
  TeacherModel out;
  out.identity.checkpoint = checkpoint;
  out.identity.kind = "shopclip";
  out.identity.logit_scale = loaded.model->logit_scale().item<double>();
  out.parameters = count_parameters(*loaded.model);
  loaded.model->to(device);
  for (auto& parameter : loaded.model->parameters())
    parameter.requires_grad_(false);
  out.encoder = std::make_unique<DualEncoderAdapter>(loaded.model, data::Tokenizer(loaded.vocab),
                                                     loaded.config.model.text.context_length);
  return out;
}

TeacherModel chinese_clip_teacher(const DistillConfig& distill, torch::Device device) {
  const std::string weights = teacher_checkpoint_path(distill.teacher);
  ImportedChineseClip imported = load_imported_chinese_clip(
      distill.teacher_vision_config, distill.teacher_text_config, weights, distill.teacher_vocab);
  TeacherModel out;
  out.identity.checkpoint = weights;
  out.identity.kind = "chinese_clip";
  out.identity.logit_scale = imported.model->log_logit_scale().exp().item<double>();
  out.parameters = count_parameters(*imported.model);
  imported.model->to(device);
  for (auto& parameter : imported.model->parameters())
    parameter.requires_grad_(false);
  const int context_length = std::min(distill.teacher_context_length,
                                      imported.model->config().text.max_position_embeddings);
  // Unit-norm rows, as Chinese-CLIP's own retrieval uses them.
  out.encoder = std::make_unique<ChineseClipEncoder>(
      imported.model, data::Tokenizer(std::move(imported.vocab)), context_length,
      /*normalize=*/true);
  return out;
}

}  // namespace

TeacherModel load_teacher(const DistillConfig& distill, torch::Device device) {
  TeacherModel teacher = distill.teacher_vision_config.empty()
                             ? shopclip_teacher(distill.teacher, device)
                             : chinese_clip_teacher(distill, device);
  TeacherIdentity& id = teacher.identity;
  id.xxh64 = fmt::format("{:016x}", data::xxh64_file(id.checkpoint));
  id.dim = teacher.encoder->dim();
  id.image_resolution = teacher.encoder->image_resolution();
  id.context_length = teacher.encoder->context_length();
  return teacher;
}

}  // namespace shopclip
