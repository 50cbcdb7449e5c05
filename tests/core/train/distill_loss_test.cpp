// Tests for the distillation losses: each against a computation written out here with explicit
// loops in double precision, against central finite differences, and the per-rank shares of a
// global batch split in two against the whole batch.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

#include "core/train/distill_loss.h"
#include "core/train/loss.h"

namespace shopclip {
namespace {

torch::Tensor unit_rows(std::int64_t rows, std::int64_t dim) {
  auto x = torch::randn({rows, dim}, torch::kDouble);
  return x / x.norm(2, 1, true);
}

using Matrix = std::vector<std::vector<double>>;

Matrix to_matrix(const torch::Tensor& t) {
  const auto c = t.to(torch::kDouble).contiguous();
  Matrix m(static_cast<std::size_t>(c.size(0)), std::vector<double>(c.size(1)));
  auto a = c.accessor<double, 2>();
  for (std::int64_t i = 0; i < c.size(0); ++i)
    for (std::int64_t k = 0; k < c.size(1); ++k)
      m[i][k] = a[i][k];
  return m;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (std::size_t k = 0; k < a.size(); ++k)
    sum += a[k] * b[k];
  return sum;
}

// Cross-entropy of row `logits` with target `target`: log(sum exp) - logits[target].
double cross_entropy(const std::vector<double>& logits, std::size_t target) {
  double sum = 0;
  for (double value : logits)
    sum += std::exp(value);
  return std::log(sum) - logits[target];
}

std::vector<double> softmax(const std::vector<double>& logits) {
  double sum = 0;
  for (double value : logits)
    sum += std::exp(value);
  std::vector<double> p;
  for (double value : logits)
    p.push_back(std::exp(value) / sum);
  return p;
}

// The whole batch as the teacher of itself on one process.
TeacherBatch whole_teacher(const torch::Tensor& images, const torch::Tensor& texts) {
  return {images, texts, images, texts};
}

// Rows [first, first + count) of a batch as rank `first / count` sees it.
TeacherBatch teacher_share(const TeacherBatch& whole, std::int64_t first, std::int64_t count) {
  return {whole.all_images.narrow(0, first, count), whole.all_texts.narrow(0, first, count),
          whole.all_images, whole.all_texts};
}

ContrastiveBatch student_share(const torch::Tensor& images, const torch::Tensor& texts,
                               std::int64_t first, std::int64_t count) {
  return {
      images.narrow(0, first, count), texts.narrow(0, first, count), images, texts, first, {}, {}};
}

// Central differences of f with respect to every entry of x (double), against x's autograd
// gradient of f.
void expect_gradient_matches(const std::function<torch::Tensor(const torch::Tensor&)>& f,
                             torch::Tensor x) {
  x = x.detach().clone().requires_grad_(true);
  f(x).backward();
  const auto analytic = x.grad().clone();
  const double h = 1e-6;
  auto flat = x.detach().clone();
  for (std::int64_t i = 0; i < flat.numel(); ++i) {
    auto plus = flat.clone(), minus = flat.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    const double numeric = (f(plus).item<double>() - f(minus).item<double>()) / (2 * h);
    EXPECT_NEAR(analytic.view(-1)[i].item<double>(), numeric, 1e-6) << "entry " << i;
  }
}

TEST(FeatureDistillation, IsHalfTheMeanSquaredDistanceOverBothTowers) {
  torch::manual_seed(1);
  const auto s_img = unit_rows(4, 3), s_txt = unit_rows(4, 3);
  const auto t_img = unit_rows(4, 3), t_txt = unit_rows(4, 3);
  const auto got =
      feature_distillation(s_img, s_txt, whole_teacher(t_img, t_txt), 4).item<double>();
  const auto a = to_matrix(s_img), b = to_matrix(s_txt), c = to_matrix(t_img), d = to_matrix(t_txt);
  double sum = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    for (std::size_t k = 0; k < 3; ++k)
      sum += (a[i][k] - c[i][k]) * (a[i][k] - c[i][k]) + (b[i][k] - d[i][k]) * (b[i][k] - d[i][k]);
  }
  EXPECT_NEAR(got, sum / 8, 1e-12);
  // A student that equals its teacher has nothing to learn.
  EXPECT_NEAR(feature_distillation(t_img, t_txt, whole_teacher(t_img, t_txt), 4).item<double>(),
              0.0, 1e-15);
}

TEST(InteractiveContrastive, ContrastsStudentRowsWithTheTeachersOtherTower) {
  torch::manual_seed(2);
  const std::int64_t n = 5;
  const auto s_img = unit_rows(n, 4), s_txt = unit_rows(n, 4);
  const auto t_img = unit_rows(n, 4), t_txt = unit_rows(n, 4);
  const double scale = 7.5;
  const auto got = interactive_contrastive(s_img, s_txt, whole_teacher(t_img, t_txt), 0, {},
                                           torch::tensor(scale, torch::kDouble))
                       .item<double>();
  const auto si = to_matrix(s_img), st = to_matrix(s_txt), ti = to_matrix(t_img),
             tt = to_matrix(t_txt);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> image_row, text_row;
    for (std::size_t j = 0; j < n; ++j) {
      image_row.push_back(scale * dot(si[i], tt[j]));  // student image i vs teacher text j
      text_row.push_back(scale * dot(st[i], ti[j]));   // student text i vs teacher image j
    }
    sum += cross_entropy(image_row, i) + cross_entropy(text_row, i);
  }
  EXPECT_NEAR(got, sum / (2.0 * n), 1e-12);
}

TEST(InteractiveContrastive, RelevantPairsAreNotNegatives) {
  torch::manual_seed(3);
  const std::int64_t n = 3;
  const auto s_img = unit_rows(n, 4), s_txt = unit_rows(n, 4);
  const auto t_img = unit_rows(n, 4), t_txt = unit_rows(n, 4);
  auto relevant = torch::zeros({n, n}, torch::kBool);
  relevant[0][1] = true;  // text 1 also answers image 0
  relevant[1][0] = true;
  const auto scale = torch::tensor(5.0, torch::kDouble);
  const auto masked =
      interactive_contrastive(s_img, s_txt, whole_teacher(t_img, t_txt), 0, relevant, scale);
  const auto si = to_matrix(s_img), st = to_matrix(s_txt), ti = to_matrix(t_img),
             tt = to_matrix(t_txt);
  auto excluded = [&](std::size_t i, std::size_t j) {
    return i != j && relevant[i][j].item<bool>();
  };
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> image_row, text_row;
    double image_target = 0, text_target = 0;
    for (std::size_t j = 0; j < n; ++j) {
      // image i vs text j: excluded when text j is relevant to image i; text i vs image j:
      // excluded when text i is relevant to image j.
      if (!excluded(i, j)) image_row.push_back(5.0 * dot(si[i], tt[j]));
      if (j == i) image_target = static_cast<double>(image_row.size() - 1);
      if (!excluded(j, i)) text_row.push_back(5.0 * dot(st[i], ti[j]));
      if (j == i) text_target = static_cast<double>(text_row.size() - 1);
    }
    sum += cross_entropy(image_row, static_cast<std::size_t>(image_target)) +
           cross_entropy(text_row, static_cast<std::size_t>(text_target));
  }
  EXPECT_NEAR(masked.item<double>(), sum / (2.0 * n), 1e-12);
}

TEST(RelationalDistillation, IsTheKlDivergenceOfTheTeachersDistributions) {
  torch::manual_seed(4);
  const std::int64_t n = 4;
  const auto s_img = unit_rows(n, 3), s_txt = unit_rows(n, 3);
  const auto t_img = unit_rows(n, 5), t_txt = unit_rows(n, 5);  // the teacher is wider
  const double student_scale = 6.0, teacher_scale = 20.0;
  const auto got = relational_distillation(
                       ContrastiveBatch::whole(s_img, s_txt, {}), whole_teacher(t_img, t_txt),
                       torch::tensor(student_scale, torch::kDouble), teacher_scale)
                       .item<double>();
  const auto si = to_matrix(s_img), st = to_matrix(s_txt), ti = to_matrix(t_img),
             tt = to_matrix(t_txt);
  auto kl = [](const std::vector<double>& teacher, const std::vector<double>& student) {
    const auto p = softmax(teacher), q = softmax(student);
    double sum = 0;
    for (std::size_t j = 0; j < p.size(); ++j)
      sum += p[j] * std::log(p[j] / q[j]);
    return sum;
  };
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> teacher_t2i, student_t2i, teacher_i2t, student_i2t;
    for (std::size_t j = 0; j < n; ++j) {
      teacher_t2i.push_back(teacher_scale * dot(tt[i], ti[j]));
      student_t2i.push_back(student_scale * dot(st[i], si[j]));
      teacher_i2t.push_back(teacher_scale * dot(ti[i], tt[j]));
      student_i2t.push_back(student_scale * dot(si[i], st[j]));
    }
    sum += kl(teacher_t2i, student_t2i) + kl(teacher_i2t, student_i2t);
  }
  EXPECT_NEAR(got, sum / (2.0 * n), 1e-12);
  // Same similarities at the same scale: nothing to learn.
  EXPECT_NEAR(relational_distillation(ContrastiveBatch::whole(t_img, t_txt, {}),
                                      whole_teacher(t_img, t_txt),
                                      torch::tensor(teacher_scale, torch::kDouble), teacher_scale)
                  .item<double>(),
              0.0, 1e-12);
}

TEST(DistillationLosses, GradientsMatchFiniteDifferences) {
  torch::manual_seed(5);
  const std::int64_t n = 3;
  const auto t_img = unit_rows(n, 4), t_txt = unit_rows(n, 4);
  const auto teacher = whole_teacher(t_img, t_txt);
  const auto s_txt = unit_rows(n, 4);
  const auto scale = torch::tensor(4.0, torch::kDouble);
  // The student's images move (unnormalised, as a projection's output would before the norm is
  // taken; the losses do not assume unit rows for their gradients).
  const auto start = torch::randn({n, 4}, torch::kDouble);
  expect_gradient_matches(
      [&](const torch::Tensor& x) { return feature_distillation(x, s_txt, teacher, n); }, start);
  expect_gradient_matches(
      [&](const torch::Tensor& x) {
        return interactive_contrastive(x, s_txt, teacher, 0, {}, scale);
      },
      start);
  expect_gradient_matches(
      [&](const torch::Tensor& x) {
        return relational_distillation(ContrastiveBatch::whole(x, s_txt, {}), teacher, scale, 12.0);
      },
      start);
  // And the learnable student scale of the relational term.
  const auto images = unit_rows(n, 4);
  expect_gradient_matches(
      [&](const torch::Tensor& s) {
        return relational_distillation(ContrastiveBatch::whole(images, s_txt, {}), teacher, s,
                                       12.0);
      },
      torch::tensor(3.0, torch::kDouble));
}

TEST(DistillationLosses, RankSharesSumToTheWholeBatch) {
  torch::manual_seed(6);
  const std::int64_t n = 6, half = 3;
  const auto s_img = unit_rows(n, 4), s_txt = unit_rows(n, 4);
  const auto t_img = unit_rows(n, 4), t_txt = unit_rows(n, 4);
  const auto teacher = whole_teacher(t_img, t_txt);
  const auto scale = torch::tensor(9.0, torch::kDouble);
  auto relevant = torch::zeros({n, n}, torch::kBool);
  relevant[1][4] = relevant[4][1] = true;
  const double whole_fd = feature_distillation(s_img, s_txt, teacher, n).item<double>();
  const double whole_icl =
      interactive_contrastive(s_img, s_txt, teacher, 0, relevant, scale).item<double>();
  const double whole_rd =
      relational_distillation(ContrastiveBatch::whole(s_img, s_txt, {}), teacher, scale, 15.0)
          .item<double>();
  double fd = 0, icl = 0, rd = 0;
  for (std::int64_t first = 0; first < n; first += half) {
    const auto part = teacher_share(teacher, first, half);
    const auto student = student_share(s_img, s_txt, first, half);
    fd += feature_distillation(student.local_images, student.local_texts, part, n).item<double>();
    icl += interactive_contrastive(student.local_images, student.local_texts, part, first, relevant,
                                   scale)
               .item<double>();
    rd += relational_distillation(student, part, scale, 15.0).item<double>();
  }
  EXPECT_NEAR(fd, whole_fd, 1e-12);
  EXPECT_NEAR(icl, whole_icl, 1e-12);
  EXPECT_NEAR(rd, whole_rd, 1e-12);
}

TEST(DistillationLosses, RefuseATeacherBatchOfAnotherShape) {
  const auto s = unit_rows(3, 4);
  const auto t = unit_rows(2, 4);
  EXPECT_THROW(feature_distillation(s, s, whole_teacher(t, t), 3), c10::Error);
  EXPECT_THROW(relational_distillation(ContrastiveBatch::whole(s, s, {}), whole_teacher(t, t),
                                       torch::tensor(1.0, torch::kDouble), 1.0),
               c10::Error);
}

}  // namespace
}  // namespace shopclip
