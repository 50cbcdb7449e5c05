#pragma once
// Knowledge-distillation losses: a student dual encoder trained to follow a teacher's embeddings
// of the same batch (CLIP-KD, Yang et al. CVPR 2024; TinyCLIP's affinity mimicking).
//
// Conventions as core/train/loss.h: row i of the global batch is the pair (image i, text i);
// rank r holds rows [offset, offset + b); each function returns this rank's share, and the
// shares summed over ranks equal the single-process loss of the global batch (the gradients too,
// once parameter gradients are summed over ranks). The teacher's rows carry no gradient.

#include <cstdint>

#include <torch/types.h>

#include "core/train/loss.h"

namespace shopclip {

// Names of the batch extras (data::Batch::extras) that hold the teacher's rows.
inline constexpr const char* kTeacherImagesExtra = "teacher_images";
inline constexpr const char* kTeacherTextsExtra = "teacher_texts";

// The teacher's unit-norm embeddings of the global batch, width Dt (may differ from the
// student's D). No gradient.
struct TeacherBatch {
  torch::Tensor local_images, local_texts;  // float [b, Dt], this rank's rows
  torch::Tensor all_images, all_texts;      // float [B, Dt], every rank's rows in rank order
};

// Feature distillation (CLIP-KD's strongest single loss): the squared L2 distance between each
// student embedding, already mapped into the teacher's space (student_images/student_texts:
// float [b, Dt], unit norm), and the teacher's embedding of the same row:
//   (sum over local rows of |s_img - t_img|^2 + |s_txt - t_txt|^2) / 2B.
torch::Tensor feature_distillation(const torch::Tensor& student_images,
                                   const torch::Tensor& student_texts, const TeacherBatch& teacher,
                                   std::int64_t global_rows);

// Interactive contrastive learning (CLIP-KD): InfoNCE of each local student image (in the
// teacher's space, [b, Dt]) against the teacher's texts of the global batch, and of each local
// student text against the teacher's images, at the student's logit scale; `relevant` as
// ContrastiveBatch::relevant. The same share as info_nce_local.
torch::Tensor interactive_contrastive(const torch::Tensor& student_images,
                                      const torch::Tensor& student_texts,
                                      const TeacherBatch& teacher, std::int64_t offset,
                                      const torch::Tensor& relevant,
                                      const torch::Tensor& logit_scale);

// Relational (affinity) distillation: for each local text, KL(p_T || p_S) between the teacher's
// and the student's distributions over the global batch's images, p = softmax(scale * s . v);
// the same for each local image over the texts:
//   (sum over local rows of both KL divergences) / 2B.
// No relevance mask: an unlabelled positive keeps the probability the teacher gives it instead
// of being pushed away. student_scale: 0-dim (the learnable logit scale carries gradient);
// teacher_scale: a constant.
torch::Tensor relational_distillation(const ContrastiveBatch& student, const TeacherBatch& teacher,
                                      const torch::Tensor& student_scale, double teacher_scale);

}  // namespace shopclip
