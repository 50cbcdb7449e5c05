#include "core/model/batch_norm_relu.h"

#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/autograd.h>

namespace shopclip {
namespace {

// Partial sums are kept in kLanes independent lanes, one 16-byte vector of GCC's vector extension
// (one SSE register on the baseline x86-64 target): a reduction written as a scalar loop would be
// left unvectorised (float addition does not reassociate), lanes written as an inner array loop
// were vectorised across the outer loop with strided loads, and 32-byte vectors on this target
// were split through stack spills. The ReLU mask is a bitwise and with the comparison's result.
constexpr int kLanes = 4;
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
typedef std::int32_t LaneMask __attribute__((vector_size(kLanes * sizeof(float))));

// d where pre > 0, else 0 (lane by lane).
Lanes where_positive(const Lanes& pre, const Lanes& d) {
  const LaneMask positive = pre > Lanes{};
  return reinterpret_cast<Lanes>(reinterpret_cast<LaneMask>(d) & positive);
}

Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Two sums in double, each added from a Lanes vector of float partial sums over one plane (H * W
// / kLanes values per lane; the float64 tests hold the results to 1e-4).
struct PairedSums {
  double first = 0, second = 0;
  void add(const Lanes& first_lanes, const Lanes& second_lanes) {
    for (int j = 0; j < kLanes; ++j) {
      first += first_lanes[j];
      second += second_lanes[j];
    }
  }
};

// The per-channel affine map of the forward pass, y = max(0, (x - mean) * scale + bias), centred
// first so that a mean far from zero costs no precision. The backward pass recomputes the ReLU
// mask with these same float operations, so it agrees with the forward's.
struct ChannelAffine {
  float mean, scale, bias;
  // T: float, or Lanes (the scalars broadcast).
  template <typename T>
  T operator()(const T& x) const {
    return (x - mean) * scale + bias;
  }
};
ChannelAffine channel_affine(float mean, float invstd, float weight, float bias) {
  return {mean, invstd * weight, bias};
}

// Values per parallel task of both layouts' passes (a plane task holds whole planes).
constexpr std::int64_t kValuesPerTask = 32768;

// x [N, C, H, W] as N * C planes of H * W values. Every pass walks the planes in memory order,
// in parallel, and per-channel sums are gathered per plane ([N * C] doubles) and then added up
// over N: walking one channel's planes (C * H * W values apart) defeated the hardware prefetcher
// and took twice as long as these streaming passes (bench_small's step, measured).
struct Planes {
  std::int64_t count, channels, length;
  explicit Planes(const torch::Tensor& x)
      : count(x.size(0) * x.size(1)), channels(x.size(1)), length(x.size(2) * x.size(3)) {}

  // body(plane, channel, offset of the plane's first value), for every plane, in parallel.
  template <typename Body>
  void for_each(Body&& body) const {
    const std::int64_t grain = std::max<std::int64_t>(1, kValuesPerTask / length);
    at::parallel_for(0, count, grain, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t plane = begin; plane < end; ++plane)
        body(plane, plane % channels, plane * length);
    });
  }

  // Per-channel totals of per-plane values [N * C].
  std::vector<double> channel_totals(const std::vector<double>& per_plane) const {
    std::vector<double> totals(static_cast<size_t>(channels), 0.0);
    for (std::int64_t plane = 0; plane < count; ++plane)
      totals[static_cast<size_t>(plane % channels)] += per_plane[static_cast<size_t>(plane)];
    return totals;
  }
};

// x [N, C, H, W] stored channels-last ([N, H, W, C] in memory) as N * H * W rows of C values.
// Every pass walks blocks of consecutive rows in parallel, vectorised across the channels of a
// row; per-channel sums are gathered per block ([blocks * C] doubles) and then added up.
struct Rows {
  std::int64_t count, channels, rows_per_block, blocks;
  explicit Rows(const torch::Tensor& x)
      : count(x.size(0) * x.size(2) * x.size(3)),
        channels(x.size(1)),
        // As many values per block as a task of Planes holds: float partial sums over at most
        // kValuesPerTask / C rows per channel (1024 for bench_small's first stage, like its
        // planes).
        rows_per_block(std::max<std::int64_t>(1, kValuesPerTask / x.size(1))),
        blocks((count + rows_per_block - 1) / rows_per_block) {}

  // body(block, offset of its first value, rows in it), for every block, in parallel.
  template <typename Body>
  void for_each(Body&& body) const {
    at::parallel_for(0, blocks, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t block = begin; block < end; ++block) {
        const std::int64_t first = block * rows_per_block;
        body(block, first * channels, std::min(rows_per_block, count - first));
      }
    });
  }

  // Per-channel totals of per-block values [blocks * C].
  std::vector<double> channel_totals(const std::vector<double>& per_block) const {
    std::vector<double> totals(static_cast<size_t>(channels), 0.0);
    for (std::int64_t block = 0; block < blocks; ++block)
      for (std::int64_t c = 0; c < channels; ++c)
        totals[static_cast<size_t>(c)] += per_block[static_cast<size_t>(block * channels + c)];
    return totals;
  }
};

// The kernels below work on one plane, through raw pointers and Lanes vectors so that they
// vectorise; the ReLU's select is a mask, not a branch.

// y = max(0, affine(x)) over n values.
void normalise_run(const float* x, float* y, std::int64_t n, ChannelAffine affine) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = affine(x[i]);
    y[i] = v > 0.f ? v : 0.f;
  }
}

// Sum (first) and sum of squares (second) of x - centre over n values.
void centred_sums(const float* x, std::int64_t n, float centre, PairedSums& sums) {
  Lanes s = {}, q = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Lanes d = load_lanes(x + i) - centre;
    s += d;
    q += d * d;
  }
  for (; i < n; ++i) {
    const float d = x[i] - centre;
    s[0] += d;
    q[0] += d * d;
  }
  sums.add(s, q);
}

// Sum g (first) and sum g (x - mean) (second) over n values, g = dy where affine(x) > 0.
void masked_sums(const float* x, const float* dy, std::int64_t n, ChannelAffine affine,
                 PairedSums& sums) {
  Lanes s = {}, t = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Lanes v = load_lanes(x + i), d = load_lanes(dy + i);
    const Lanes g = where_positive(affine(v), d);
    s += g;
    t += g * (v - affine.mean);
  }
  for (; i < n; ++i) {
    const float v = x[i], d = dy[i];
    const float g = affine(v) > 0.f ? d : 0.f;
    s[0] += g;
    t[0] += g * (v - affine.mean);
  }
  sums.add(s, t);
}

// dx = gain g + slope (x - mean) + intercept over n values, g as in masked_sums.
void input_grad_run(const float* x, const float* dy, float* dx, std::int64_t n,
                    ChannelAffine affine, float gain, float slope, float intercept) {
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Lanes v = load_lanes(x + i), d = load_lanes(dy + i);
    const Lanes g = where_positive(affine(v), d);
    const Lanes result = g * gain + ((v - affine.mean) * slope + intercept);
    std::memcpy(dx + i, &result, sizeof result);
  }
  for (; i < n; ++i) {
    const float v = x[i], d = dy[i];
    const float g = affine(v) > 0.f ? d : 0.f;
    dx[i] = g * gain + ((v - affine.mean) * slope + intercept);
  }
}

// The per-channel affine maps as arrays, for the row kernels: lane c of a row uses entry c.
struct ChannelArrays {
  std::vector<float> mean, scale, bias;
  explicit ChannelArrays(const std::vector<ChannelAffine>& affines) {
    for (const ChannelAffine& a : affines) {
      mean.push_back(a.mean);
      scale.push_back(a.scale);
      bias.push_back(a.bias);
    }
  }
  // The map of lanes c..c+kLanes-1 (the same float operations as ChannelAffine's).
  Lanes operator()(const Lanes& x, size_t c) const {
    return (x - load_lanes(&mean[c])) * load_lanes(&scale[c]) + load_lanes(&bias[c]);
  }
  float operator()(float x, size_t c) const { return (x - mean[c]) * scale[c] + bias[c]; }
};

// The row kernels: `rows` rows of C values from x (and dy, dx), channels in lanes of kLanes, the
// remainder of C one by one. Channel c of every row takes the same path, so the ReLU mask the
// backward pass recomputes agrees with the forward's.

// y = max(0, affine(x)).
void normalise_rows(const float* x, float* y, std::int64_t rows, const ChannelArrays& affine) {
  const auto channels = affine.mean.size();
  for (std::int64_t r = 0; r < rows; ++r, x += channels, y += channels) {
    size_t c = 0;
    for (; c + kLanes <= channels; c += kLanes) {
      const Lanes v = affine(load_lanes(x + c), c);
      const Lanes result = where_positive(v, v);
      std::memcpy(y + c, &result, sizeof result);
    }
    for (; c < channels; ++c) {
      const float v = affine(x[c], c);
      y[c] = v > 0.f ? v : 0.f;
    }
  }
}

// Per-channel sums of x - centre (first) and of its square (second), in float over the rows,
// written to first[c] and second[c].
void centred_row_sums(const float* x, std::int64_t rows, const std::vector<float>& centre,
                      double* first, double* second) {
  const auto channels = centre.size();
  std::vector<float> s(channels, 0.f), q(channels, 0.f);
  for (std::int64_t r = 0; r < rows; ++r, x += channels) {
    size_t c = 0;
    for (; c + kLanes <= channels; c += kLanes) {
      const Lanes d = load_lanes(x + c) - load_lanes(&centre[c]);
      const Lanes sum = load_lanes(&s[c]) + d, square = load_lanes(&q[c]) + d * d;
      std::memcpy(&s[c], &sum, sizeof sum);
      std::memcpy(&q[c], &square, sizeof square);
    }
    for (; c < channels; ++c) {
      const float d = x[c] - centre[c];
      s[c] += d;
      q[c] += d * d;
    }
  }
  for (size_t c = 0; c < channels; ++c) {
    first[c] = s[c];
    second[c] = q[c];
  }
}

// Per-channel sums of g (first) and g (x - mean) (second), g = dy where affine(x) > 0.
void masked_row_sums(const float* x, const float* dy, std::int64_t rows,
                     const ChannelArrays& affine, double* first, double* second) {
  const auto channels = affine.mean.size();
  std::vector<float> s(channels, 0.f), t(channels, 0.f);
  for (std::int64_t r = 0; r < rows; ++r, x += channels, dy += channels) {
    size_t c = 0;
    for (; c + kLanes <= channels; c += kLanes) {
      const Lanes v = load_lanes(x + c);
      const Lanes g = where_positive(affine(v, c), load_lanes(dy + c));
      const Lanes sum = load_lanes(&s[c]) + g;
      const Lanes product = load_lanes(&t[c]) + g * (v - load_lanes(&affine.mean[c]));
      std::memcpy(&s[c], &sum, sizeof sum);
      std::memcpy(&t[c], &product, sizeof product);
    }
    for (; c < channels; ++c) {
      const float g = affine(x[c], c) > 0.f ? dy[c] : 0.f;
      s[c] += g;
      t[c] += g * (x[c] - affine.mean[c]);
    }
  }
  for (size_t c = 0; c < channels; ++c) {
    first[c] = s[c];
    second[c] = t[c];
  }
}

// Per channel, dx = gain g + slope (x - mean) + intercept with g as in masked_sums.
struct InputGradTerms {
  std::vector<float> gain, slope, intercept;
};

// dx over the rows, g as in masked_row_sums.
void input_grad_rows(const float* x, const float* dy, float* dx, std::int64_t rows,
                     const ChannelArrays& affine, const InputGradTerms& terms) {
  const auto channels = affine.mean.size();
  for (std::int64_t r = 0; r < rows; ++r, x += channels, dy += channels, dx += channels) {
    size_t c = 0;
    for (; c + kLanes <= channels; c += kLanes) {
      const Lanes v = load_lanes(x + c);
      const Lanes g = where_positive(affine(v, c), load_lanes(dy + c));
      const Lanes result = g * load_lanes(&terms.gain[c]) +
                           ((v - load_lanes(&affine.mean[c])) * load_lanes(&terms.slope[c]) +
                            load_lanes(&terms.intercept[c]));
      std::memcpy(dx + c, &result, sizeof result);
    }
    for (; c < channels; ++c) {
      const float g = affine(x[c], c) > 0.f ? dy[c] : 0.f;
      dx[c] = g * terms.gain[c] + ((x[c] - affine.mean[c]) * terms.slope[c] + terms.intercept[c]);
    }
  }
}

// Whether x [N, C, H, W] is walked as channels-last rows (else as planes).
bool is_rows_layout(const torch::Tensor& x) {
  return !x.is_contiguous();
}

// Per channel, the sum of x - centre and of its square, float64 [C] each: x [N, C, H, W] float32
// in the default layout (planes) or channels-last (rows).
std::pair<std::vector<double>, std::vector<double>> centred_channel_sums(
    const torch::Tensor& x, const std::vector<float>& centre) {
  const float* data = x.data_ptr<float>();
  if (is_rows_layout(x)) {
    const Rows rows(x);
    std::vector<double> sums(static_cast<size_t>(rows.blocks * rows.channels)),
        squares(sums.size());
    rows.for_each([&](std::int64_t block, std::int64_t offset, std::int64_t count) {
      const auto at = static_cast<size_t>(block * rows.channels);
      centred_row_sums(data + offset, count, centre, &sums[at], &squares[at]);
    });
    return {rows.channel_totals(sums), rows.channel_totals(squares)};
  }
  const Planes planes(x);
  std::vector<double> sums(static_cast<size_t>(planes.count)), squares(sums.size());
  planes.for_each([&](std::int64_t plane, std::int64_t channel, std::int64_t offset) {
    PairedSums plane_sums;
    centred_sums(data + offset, planes.length, centre[static_cast<size_t>(channel)], plane_sums);
    sums[static_cast<size_t>(plane)] = plane_sums.first;
    squares[static_cast<size_t>(plane)] = plane_sums.second;
  });
  return {planes.channel_totals(sums), planes.channel_totals(squares)};
}

// Per-channel mean and biased variance of x [N, C, H, W] (float32, in the default layout or
// channels-last), as float64 [C]. The sums are centred on the mean of each channel over the
// first image (an estimate of the channel's mean), which keeps the variance free of
// cancellation.
std::pair<torch::Tensor, torch::Tensor> channel_moments(const torch::Tensor& x) {
  const auto channels = x.size(1);
  const auto first_image = x[0].mean({1, 2}).contiguous();
  const float* first_means = first_image.data_ptr<float>();
  const std::vector<float> centres(first_means, first_means + channels);
  const auto [sum, square] = centred_channel_sums(x, centres);
  auto mean = torch::empty({channels}, torch::kFloat64);
  auto variance = torch::empty({channels}, torch::kFloat64);
  double* mean_data = mean.data_ptr<double>();
  double* variance_data = variance.data_ptr<double>();
  const double count = static_cast<double>(x.numel() / channels);
  for (std::int64_t c = 0; c < channels; ++c) {
    const auto i = static_cast<size_t>(c);
    const double offset = sum[i] / count;
    mean_data[c] = centres[i] + offset;
    variance_data[c] = std::max(0.0, square[i] / count - offset * offset);
  }
  return {mean, variance};
}

// The passes of BatchNormReluFunction over x (and dy, dx), in x's layout: tensors of x's shape
// and strides, float32.

// y = max(0, affine_c(x)).
void normalise(const torch::Tensor& x, const torch::Tensor& y,
               const std::vector<ChannelAffine>& affine) {
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  if (is_rows_layout(x)) {
    const Rows rows(x);
    const ChannelArrays arrays(affine);
    rows.for_each([&](std::int64_t, std::int64_t offset, std::int64_t count) {
      normalise_rows(in + offset, out + offset, count, arrays);
    });
    return;
  }
  const Planes planes(x);
  planes.for_each([&](std::int64_t, std::int64_t channel, std::int64_t offset) {
    normalise_run(in + offset, out + offset, planes.length, affine[static_cast<size_t>(channel)]);
  });
}

// Per channel, sum g (first) and sum g (x - mean) (second), g = dy where affine_c(x) > 0.
std::pair<std::vector<double>, std::vector<double>> masked_channel_sums(
    const torch::Tensor& x, const torch::Tensor& dy, const std::vector<ChannelAffine>& affine) {
  const float* in = x.data_ptr<float>();
  const float* grad = dy.data_ptr<float>();
  if (is_rows_layout(x)) {
    const Rows rows(x);
    const ChannelArrays arrays(affine);
    std::vector<double> g(static_cast<size_t>(rows.blocks * rows.channels)), gx(g.size());
    rows.for_each([&](std::int64_t block, std::int64_t offset, std::int64_t count) {
      const auto at = static_cast<size_t>(block * rows.channels);
      masked_row_sums(in + offset, grad + offset, count, arrays, &g[at], &gx[at]);
    });
    return {rows.channel_totals(g), rows.channel_totals(gx)};
  }
  const Planes planes(x);
  std::vector<double> g(static_cast<size_t>(planes.count)), gx(g.size());
  planes.for_each([&](std::int64_t plane, std::int64_t channel, std::int64_t offset) {
    PairedSums plane_sums;
    masked_sums(in + offset, grad + offset, planes.length, affine[static_cast<size_t>(channel)],
                plane_sums);
    g[static_cast<size_t>(plane)] = plane_sums.first;
    gx[static_cast<size_t>(plane)] = plane_sums.second;
  });
  return {planes.channel_totals(g), planes.channel_totals(gx)};
}

// dx = gain_c g + slope_c (x - mean_c) + intercept_c, g as in masked_channel_sums.
void input_grad(const torch::Tensor& x, const torch::Tensor& dy, const torch::Tensor& dx,
                const std::vector<ChannelAffine>& affine, const InputGradTerms& terms) {
  const float* in = x.data_ptr<float>();
  const float* grad = dy.data_ptr<float>();
  float* out = dx.data_ptr<float>();
  if (is_rows_layout(x)) {
    const Rows rows(x);
    const ChannelArrays arrays(affine);
    rows.for_each([&](std::int64_t, std::int64_t offset, std::int64_t count) {
      input_grad_rows(in + offset, grad + offset, out + offset, count, arrays, terms);
    });
    return;
  }
  const Planes planes(x);
  planes.for_each([&](std::int64_t, std::int64_t channel, std::int64_t offset) {
    const auto c = static_cast<size_t>(channel);
    input_grad_run(in + offset, grad + offset, out + offset, planes.length, affine[c],
                   terms.gain[c], terms.slope[c], terms.intercept[c]);
  });
}

class BatchNormReluFunction : public torch::autograd::Function<BatchNormReluFunction> {
 public:
  // mean and invstd [C] (float32) are the batch's statistics of x, computed outside: they carry
  // no gradient of their own, the backward formula below accounts for their dependence on x.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& mean, const torch::Tensor& invstd) {
    ctx->save_for_backward({x, weight, bias, mean, invstd});
    auto y = torch::empty_like(x);  // x's layout: the strides are kept
    normalise(x, y, channel_affines(weight, bias, mean, invstd));
    return y;
  }

  // With g = dy where the forward's pre-activation was positive (0 elsewhere), x^ the normalised
  // input and M = N * H * W: dbias = sum g, dweight = sum g x^, and
  // dx = weight * invstd * (g - dbias / M - x^ * dweight / M).
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3],
               &invstd = saved[4];
    const auto grad_out = grads[0].contiguous(is_rows_layout(x) ? torch::MemoryFormat::ChannelsLast
                                                                : torch::MemoryFormat::Contiguous);
    const auto affine = channel_affines(weight, bias, mean, invstd);
    const auto [sum_g, sum_g_centred] = masked_channel_sums(x, grad_out, affine);
    // sum_g is dbias, sum_g_centred is dweight / invstd.
    const auto channels = x.size(1);
    auto grad_weight = torch::empty_like(weight);
    auto grad_bias = torch::empty_like(bias);
    InputGradTerms terms;
    const double count = static_cast<double>(x.numel() / channels);
    const float* w = weight.data_ptr<float>();
    const float* is = invstd.data_ptr<float>();
    float* db = grad_bias.data_ptr<float>();
    float* dw = grad_weight.data_ptr<float>();
    for (std::int64_t c = 0; c < channels; ++c) {
      const auto i = static_cast<size_t>(c);
      const double inv = is[c];
      db[c] = static_cast<float>(sum_g[i]);
      dw[c] = static_cast<float>(sum_g_centred[i] * inv);
      const double k_g = w[c] * inv;
      terms.gain.push_back(static_cast<float>(k_g));
      terms.slope.push_back(static_cast<float>(-k_g * inv * inv * sum_g_centred[i] / count));
      terms.intercept.push_back(static_cast<float>(-k_g * sum_g[i] / count));
    }
    torch::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      grad_x = torch::empty_like(x);
      input_grad(x, grad_out, grad_x, affine, terms);
    }
    return {grad_x, grad_weight, grad_bias, torch::Tensor(), torch::Tensor()};
  }

 private:
  static std::vector<ChannelAffine> channel_affines(const torch::Tensor& weight,
                                                    const torch::Tensor& bias,
                                                    const torch::Tensor& mean,
                                                    const torch::Tensor& invstd) {
    const float *w = weight.data_ptr<float>(), *b = bias.data_ptr<float>();
    const float *mu = mean.data_ptr<float>(), *is = invstd.data_ptr<float>();
    std::vector<ChannelAffine> affines;
    for (std::int64_t c = 0; c < weight.numel(); ++c)
      affines.push_back(channel_affine(mu[c], is[c], w[c], b[c]));
    return affines;
  }
};

}  // namespace

bool batch_norm_relu_is_fused(const torch::Tensor& x) {
  return x.defined() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
         (x.is_contiguous() || x.is_contiguous(torch::MemoryFormat::ChannelsLast)) &&
         x.size(0) * x.size(2) * x.size(3) > 1 && x.size(1) > 0;
}

torch::Tensor batch_norm_relu_train(const torch::Tensor& x, const torch::Tensor& weight,
                                    const torch::Tensor& bias, const torch::Tensor& running_mean,
                                    const torch::Tensor& running_var, double momentum, double eps) {
  if (!batch_norm_relu_is_fused(x)) {
    auto normalised = torch::batch_norm(x, weight, bias, running_mean, running_var,
                                        /*training=*/true, momentum, eps, false);
    return torch::relu_(normalised);
  }
  const auto channels = x.size(1);
  TORCH_CHECK(weight.scalar_type() == torch::kFloat32 && weight.is_contiguous() &&
                  weight.numel() == channels && bias.scalar_type() == torch::kFloat32 &&
                  bias.is_contiguous() && bias.numel() == channels,
              "batch_norm_relu_train: weight and bias must be float32 [", channels, "]");
  auto [mean, variance] = channel_moments(x);
  {
    torch::NoGradGuard no_grad;
    const double count = static_cast<double>(x.numel() / channels);
    running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
    running_var.mul_(1 - momentum)
        .add_((variance * (count / (count - 1))).to(running_var.scalar_type()), momentum);
  }
  const auto invstd = (variance + eps).rsqrt().to(torch::kFloat32);
  return BatchNormReluFunction::apply(x, weight, bias, mean.to(torch::kFloat32), invstd);
}

}  // namespace shopclip
