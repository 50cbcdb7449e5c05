#include "core/train/distill_loss.h"

#include <torch/torch.h>

namespace shopclip {
namespace {

void check_teacher(const TeacherBatch& teacher, std::int64_t local_rows) {
  TORCH_CHECK(teacher.local_images.dim() == 2 &&
                  teacher.local_images.sizes() == teacher.local_texts.sizes() &&
                  teacher.local_images.size(0) == local_rows,
              "distillation: the teacher's local images and texts must both be [b, Dt] with b = ",
              local_rows, "; got ", teacher.local_images.sizes(), " and ",
              teacher.local_texts.sizes());
  TORCH_CHECK(teacher.all_images.dim() == 2 &&
                  teacher.all_images.sizes() == teacher.all_texts.sizes() &&
                  teacher.all_images.size(1) == teacher.local_images.size(1),
              "distillation: the teacher's gathered images and texts must both be [B, Dt]; got ",
              teacher.all_images.sizes(), " and ", teacher.all_texts.sizes());
}

// Sum over rows of KL(softmax(teacher_logits) || softmax(student_logits)), rows of [n, B].
torch::Tensor kl_rows(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits) {
  const auto teacher_log = torch::log_softmax(teacher_logits, 1);
  const auto student_log = torch::log_softmax(student_logits, 1);
  return (teacher_log.exp() * (teacher_log - student_log)).sum();
}

}  // namespace

torch::Tensor feature_distillation(const torch::Tensor& student_images,
                                   const torch::Tensor& student_texts, const TeacherBatch& teacher,
                                   std::int64_t global_rows) {
  check_teacher(teacher, student_images.size(0));
  TORCH_CHECK(student_images.sizes() == teacher.local_images.sizes() &&
                  student_texts.sizes() == teacher.local_texts.sizes(),
              "feature distillation: the student's rows must be mapped to the teacher's width; "
              "got ",
              student_images.sizes(), " and ", student_texts.sizes(), " for a teacher of ",
              teacher.local_images.sizes());
  TORCH_CHECK(global_rows > 0, "feature distillation: empty global batch");
  const auto squared = (student_images - teacher.local_images).pow(2).sum() +
                       (student_texts - teacher.local_texts).pow(2).sum();
  return squared / (2.0 * static_cast<double>(global_rows));
}

torch::Tensor interactive_contrastive(const torch::Tensor& student_images,
                                      const torch::Tensor& student_texts,
                                      const TeacherBatch& teacher, std::int64_t offset,
                                      const torch::Tensor& relevant,
                                      const torch::Tensor& logit_scale) {
  check_teacher(teacher, student_images.size(0));
  // info_nce_local contrasts local images with all texts and local texts with all images: with
  // the teacher's rows as "all", that is exactly the interactive loss.
  const ContrastiveBatch mixed{student_images,    student_texts, teacher.all_images,
                               teacher.all_texts, offset,        relevant};
  return info_nce_local(mixed, logit_scale);
}

torch::Tensor relational_distillation(const ContrastiveBatch& student, const TeacherBatch& teacher,
                                      const torch::Tensor& student_scale, double teacher_scale) {
  check_teacher(teacher, student.local_images.size(0));
  TORCH_CHECK(teacher.all_images.size(0) == student.all_images.size(0),
              "relational distillation: the teacher has ", teacher.all_images.size(0),
              " rows of the global batch, the student ", student.all_images.size(0));
  const double global = static_cast<double>(student.all_images.size(0));
  const auto text_to_image =
      kl_rows(teacher_scale * torch::matmul(teacher.local_texts, teacher.all_images.t()),
              student_scale * torch::matmul(student.local_texts, student.all_images.t()));
  const auto image_to_text =
      kl_rows(teacher_scale * torch::matmul(teacher.local_images, teacher.all_texts.t()),
              student_scale * torch::matmul(student.local_images, student.all_texts.t()));
  return (text_to_image + image_to_text) / (2.0 * global);
}

}  // namespace shopclip
