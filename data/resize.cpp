#include "data/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace shopclip::data {
namespace {

// Pillow accumulates 8-bit resampling in 32-bit integers with weights scaled by 2^22: enough
// precision for the weights while 255 * sum|w| * 2^22 still fits in an int32.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr std::int32_t kHalf = std::int32_t{1} << (kPrecisionBits - 1);

// Keys' cubic convolution kernel with a = -0.5 (Catmull-Rom-like), support 2.
double cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// The taps of one axis, computed once per resize and shared by every row / column.
struct AxisTaps {
  int max_taps = 0;                   // stride of `weights`
  std::vector<int> first;             // first input index for each output index
  std::vector<int> count;             // number of input samples for each output index
  std::vector<std::int32_t> weights;  // out_size * max_taps fixed-point weights
};

AxisTaps compute_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  // When shrinking, the kernel is stretched over `scale` input pixels so every input pixel
  // contributes (antialiasing); when enlarging it stays at its natural width.
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  const double inverse_filter_scale = 1.0 / filter_scale;

  AxisTaps taps;
  taps.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<std::size_t>(out_size) * taps.max_taps, 0);
  std::vector<double> w(taps.max_taps);

  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // Truncating casts (not floor) as Pillow does; negatives are clamped right after anyway.
    int lo = static_cast<int>(center - support + 0.5);
    int hi = static_cast<int>(center + support + 0.5);
    lo = std::max(lo, 0);
    hi = std::min(hi, in_size);
    const int n = std::max(hi - lo, 0);

    double total = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = cubic((k + lo - center + 0.5) * inverse_filter_scale);
      total += w[k];
    }
    std::int32_t* out = &taps.weights[static_cast<std::size_t>(o) * taps.max_taps];
    for (int k = 0; k < n; ++k) {
      // Normalising keeps flat regions flat even where the kernel is cut off at the border.
      const double normalized = total != 0.0 ? w[k] / total : w[k];
      const double fixed = normalized * (1 << kPrecisionBits);
      // Round half away from zero, as Pillow's (int)(x +/- 0.5).
      out[k] = static_cast<std::int32_t>(fixed < 0.0 ? fixed - 0.5 : fixed + 0.5);
    }
    taps.first[o] = lo;
    taps.count[o] = n;
  }
  return taps;
}

inline std::uint8_t clip8(std::int32_t sum) {
  // Arithmetic shift floors; with the kHalf start value the result is rounded.
  const std::int32_t value = sum >> kPrecisionBits;
  return static_cast<std::uint8_t>(value < 0 ? 0 : (value > 255 ? 255 : value));
}

// Resamples rows [row_begin, row_end) of `in` along x into `out` (width taps.first.size()).
void resample_horizontal(const std::uint8_t* in, int in_width, int row_begin, int row_end,
                         const AxisTaps& taps, std::uint8_t* out) {
  const int out_width = static_cast<int>(taps.first.size());
  for (int y = row_begin; y < row_end; ++y) {
    const std::uint8_t* src_row = in + static_cast<std::size_t>(y) * in_width * 3;
    std::uint8_t* dst = out + static_cast<std::size_t>(y - row_begin) * out_width * 3;
    for (int x = 0; x < out_width; ++x) {
      const std::uint8_t* src = src_row + static_cast<std::size_t>(taps.first[x]) * 3;
      const std::int32_t* w = &taps.weights[static_cast<std::size_t>(x) * taps.max_taps];
      std::int32_t r = kHalf;
      std::int32_t g = kHalf;
      std::int32_t b = kHalf;
      const int n = taps.count[x];
      for (int k = 0; k < n; ++k) {
        r += src[k * 3 + 0] * w[k];
        g += src[k * 3 + 1] * w[k];
        b += src[k * 3 + 2] * w[k];
      }
      dst[x * 3 + 0] = clip8(r);
      dst[x * 3 + 1] = clip8(g);
      dst[x * 3 + 2] = clip8(b);
    }
  }
}

// Resamples `in` (whose row 0 is input row `row_offset`) along y. Whole rows are accumulated
// at once so the inner loop runs over contiguous bytes and vectorises.
void resample_vertical(const std::uint8_t* in, int width, int row_offset, const AxisTaps& taps,
                       std::uint8_t* out) {
  const int out_height = static_cast<int>(taps.first.size());
  const std::size_t row_values = static_cast<std::size_t>(width) * 3;
  std::vector<std::int32_t> sums(row_values);
  for (int y = 0; y < out_height; ++y) {
    std::fill(sums.begin(), sums.end(), kHalf);
    const std::int32_t* w = &taps.weights[static_cast<std::size_t>(y) * taps.max_taps];
    const int n = taps.count[y];
    for (int k = 0; k < n; ++k) {
      const std::uint8_t* src = in + (taps.first[y] - row_offset + k) * row_values;
      const std::int32_t weight = w[k];
      std::int32_t* acc = sums.data();
      for (std::size_t i = 0; i < row_values; ++i)
        acc[i] += src[i] * weight;
    }
    std::uint8_t* dst = out + static_cast<std::size_t>(y) * row_values;
    for (std::size_t i = 0; i < row_values; ++i)
      dst[i] = clip8(sums[i]);
  }
}

}  // namespace

Image resize_bicubic(const Image& image, int out_width, int out_height) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<std::size_t>(image.width) * image.height * 3) {
    throw std::invalid_argument("resize_bicubic: empty image or rgb size != width * height * 3");
  }
  if (out_width <= 0 || out_height <= 0) {
    throw std::invalid_argument("resize_bicubic: output size must be positive");
  }

  Image out;
  out.width = out_width;
  out.height = out_height;
  const bool horizontal = out_width != image.width;
  const bool vertical = out_height != image.height;
  // Like Pillow, an axis whose size does not change is not filtered at all.
  if (!horizontal && !vertical) {
    out.rgb = image.rgb;
    return out;
  }
  out.rgb.resize(static_cast<std::size_t>(out_width) * out_height * 3);

  if (!vertical) {
    const AxisTaps x_taps = compute_taps(image.width, out_width);
    resample_horizontal(image.rgb.data(), image.width, 0, image.height, x_taps, out.rgb.data());
    return out;
  }
  const AxisTaps y_taps = compute_taps(image.height, out_height);
  if (!horizontal) {
    resample_vertical(image.rgb.data(), image.width, 0, y_taps, out.rgb.data());
    return out;
  }

  // Horizontal first, clamped to 8 bits in between (as Pillow), and only over the input rows
  // the vertical pass reads.
  const AxisTaps x_taps = compute_taps(image.width, out_width);
  const int row_begin = y_taps.first.front();
  const int row_end = y_taps.first.back() + y_taps.count.back();
  std::vector<std::uint8_t> temp(static_cast<std::size_t>(row_end - row_begin) * out_width * 3);
  resample_horizontal(image.rgb.data(), image.width, row_begin, row_end, x_taps, temp.data());
  resample_vertical(temp.data(), out_width, row_begin, y_taps, out.rgb.data());
  return out;
}

}  // namespace shopclip::data
