#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "data/resize.h"

namespace shopclip::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::uint8_t clamp_byte(double value) {
  return static_cast<std::uint8_t>(std::clamp(std::lround(value), 0L, 255L));
}

std::size_t pixel_count(const ImageView& image) {
  return static_cast<std::size_t>(image.width) * image.height;
}

// PIL's luma, ITU-R 601-2, in integer arithmetic as PIL rounds it.
std::uint8_t luma(const std::uint8_t* rgb) {
  return static_cast<std::uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >>
                                   16);
}

// out = degenerate + factor * (image - degenerate), per byte; `degenerate` has the image's layout.
void blend_with(ImageView image, const std::vector<std::uint8_t>& degenerate, double factor) {
  const std::size_t bytes = pixel_count(image) * 3;
  for (std::size_t i = 0; i < bytes; ++i) {
    image.pixels[i] = clamp_byte(degenerate[i] + factor * (image.pixels[i] - degenerate[i]));
  }
}

// Keys' cubic convolution kernel with a = -0.5 (PIL's and torchvision's bicubic).
double cubic(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// The input's value of channel c at continuous position (x, y) in pixel-index coordinates
// (pixel i's centre at i). Positions outside the image take the fill; neighbours of an inside
// position that fall outside are clamped to the edge.
double sample(const std::uint8_t* input, int width, int height, double x, double y, int c,
              const Fill& fill, Interpolation interpolation) {
  if (x < -0.5 || y < -0.5 || x > width - 0.5 || y > height - 0.5) return fill[c];
  const auto at = [&](int xi, int yi) {
    xi = std::clamp(xi, 0, width - 1);
    yi = std::clamp(yi, 0, height - 1);
    return static_cast<double>(input[(static_cast<std::size_t>(yi) * width + xi) * 3 + c]);
  };
  const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
  const double fx = x - x0, fy = y - y0;
  if (interpolation == Interpolation::kBilinear) {
    return (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) +
           fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
  }
  double value = 0;
  for (int j = -1; j <= 2; ++j) {
    double row = 0;
    for (int i = -1; i <= 2; ++i)
      row += cubic(fx - i) * at(x0 + i, y0 + j);
    value += cubic(fy - j) * row;
  }
  return value;
}

// The four enhancers at a factor.
void enhance(ImageView image, PolicyOp op, double factor) {
  switch (op) {
    case PolicyOp::kColor:
      pixel_ops::saturation(image, factor);
      break;
    case PolicyOp::kContrast:
      pixel_ops::contrast(image, factor);
      break;
    case PolicyOp::kBrightness:
      pixel_ops::brightness(image, factor);
      break;
    case PolicyOp::kSharpness:
      pixel_ops::sharpness(image, factor);
      break;
    default:
      throw std::logic_error("enhance: not an enhancer");
  }
}

}  // namespace

// ---- pixel operations ---------------------------------------------------------------------------

namespace pixel_ops {

void horizontal_flip(ImageView image) {
  for (int y = 0; y < image.height; ++y) {
    std::uint8_t* row = image.pixels + static_cast<std::size_t>(y) * image.width * 3;
    for (int left = 0, right = image.width - 1; left < right; ++left, --right)
      std::swap_ranges(row + left * 3, row + left * 3 + 3, row + right * 3);
  }
}

void crop_resize(ImageView image, int x, int y, int width, int height,
                 Interpolation interpolation) {
  if (x < 0 || y < 0 || width <= 0 || height <= 0 || x + width > image.width ||
      y + height > image.height) {
    throw std::invalid_argument(
        fmt::format("crop_resize: box ({}, {}, {}, {}) outside a {}x{} image", x, y, width, height,
                    image.width, image.height));
  }
  if (interpolation == Interpolation::kBicubic) {
    Image box;  // Pillow's bicubic resize, antialiased when it shrinks (as prep resizes)
    box.width = width;
    box.height = height;
    box.rgb.resize(static_cast<std::size_t>(width) * height * 3);
    for (int row = 0; row < height; ++row) {
      const std::uint8_t* from =
          image.pixels + ((static_cast<std::size_t>(y) + row) * image.width + x) * 3;
      std::copy(from, from + width * 3,
                box.rgb.begin() + static_cast<std::ptrdiff_t>(row) * width * 3);
    }
    const Image resized = resize_bicubic(box, image.width, image.height);
    std::copy(resized.rgb.begin(), resized.rgb.end(), image.pixels);
    return;
  }
  // Bilinear: output centre (i + 0.5) maps to x + (i + 0.5) * width / W inside the box.
  const double sx = double(width) / image.width, sy = double(height) / image.height;
  affine(image, {sx, 0, double(x), 0, sy, double(y)}, Fill{0, 0, 0}, Interpolation::kBilinear);
}

void affine(ImageView image, const std::array<double, 6>& map, const Fill& fill,
            Interpolation interpolation) {
  const std::vector<std::uint8_t> input(image.pixels, image.pixels + pixel_count(image) * 3);
  const auto [a, b, c, d, e, f] = map;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const double cx = x + 0.5, cy = y + 0.5;
      // Input position in pixel-centre coordinates, then in index coordinates.
      const double ix = a * cx + b * cy + c - 0.5, iy = d * cx + e * cy + f - 0.5;
      std::uint8_t* out = image.pixels + (static_cast<std::size_t>(y) * image.width + x) * 3;
      for (int ch = 0; ch < 3; ++ch) {
        out[ch] = clamp_byte(
            sample(input.data(), image.width, image.height, ix, iy, ch, fill, interpolation));
      }
    }
  }
}

void rotate(ImageView image, double degrees, const Fill& fill, Interpolation interpolation) {
  // Output-to-input: the inverse rotation about the centre (y points down, so a positive angle
  // turns the content counter-clockwise on screen).
  const double t = -degrees * kPi / 180.0, cos_t = std::cos(t), sin_t = std::sin(t);
  const double cx = image.width / 2.0, cy = image.height / 2.0;
  affine(image,
         {cos_t, sin_t, cx - cos_t * cx - sin_t * cy, -sin_t, cos_t, cy + sin_t * cx - cos_t * cy},
         fill, interpolation);
}

void shear_x(ImageView image, double factor, const Fill& fill, Interpolation interpolation) {
  affine(image, {1, factor, 0, 0, 1, 0}, fill, interpolation);
}

void shear_y(ImageView image, double factor, const Fill& fill, Interpolation interpolation) {
  affine(image, {1, 0, 0, factor, 1, 0}, fill, interpolation);
}

void translate(ImageView image, double dx, double dy, const Fill& fill,
               Interpolation interpolation) {
  affine(image, {1, 0, dx, 0, 1, dy}, fill, interpolation);
}

void brightness(ImageView image, double factor) {
  blend_with(image, std::vector<std::uint8_t>(pixel_count(image) * 3, 0), factor);
}

void contrast(ImageView image, double factor) {
  const std::size_t n = pixel_count(image);
  double sum = 0;
  for (std::size_t p = 0; p < n; ++p)
    sum += luma(image.pixels + p * 3);
  const auto mean = static_cast<std::uint8_t>(std::clamp(std::floor(sum / n + 0.5), 0.0, 255.0));
  blend_with(image, std::vector<std::uint8_t>(n * 3, mean), factor);
}

void saturation(ImageView image, double factor) {
  const std::size_t n = pixel_count(image);
  std::vector<std::uint8_t> gray(n * 3);
  for (std::size_t p = 0; p < n; ++p)
    std::fill_n(gray.begin() + static_cast<std::ptrdiff_t>(p * 3), 3, luma(image.pixels + p * 3));
  blend_with(image, gray, factor);
}

void sharpness(ImageView image, double factor) {
  // PIL's SMOOTH filter (3x3, centre 5, others 1, over 13) on the interior; the border row and
  // column keep their values, as in PIL.
  const int w = image.width, h = image.height;
  std::vector<std::uint8_t> smooth(image.pixels, image.pixels + pixel_count(image) * 3);
  for (int y = 1; y + 1 < h; ++y) {
    for (int x = 1; x + 1 < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        int sum = 0;
        for (int j = -1; j <= 1; ++j)
          for (int i = -1; i <= 1; ++i)
            sum += image.pixels[((static_cast<std::size_t>(y) + j) * w + x + i) * 3 + c] *
                   (i == 0 && j == 0 ? 5 : 1);
        smooth[(static_cast<std::size_t>(y) * w + x) * 3 + c] = clamp_byte(sum / 13.0);
      }
    }
  }
  blend_with(image, smooth, factor);
}

void hue(ImageView image, double shift) {
  if (shift < -0.5 || shift > 0.5) throw std::invalid_argument("hue: shift must be in [-0.5, 0.5]");
  const std::size_t n = pixel_count(image);
  for (std::size_t p = 0; p < n; ++p) {
    std::uint8_t* rgb = image.pixels + p * 3;
    const double r = rgb[0] / 255.0, g = rgb[1] / 255.0, b = rgb[2] / 255.0;
    const double max = std::max({r, g, b}), min = std::min({r, g, b}), chroma = max - min;
    if (chroma <= 0) continue;  // grey: no hue to turn
    double h;                   // in turns
    if (max == r) {
      h = std::fmod((g - b) / chroma, 6.0) / 6.0;
    } else if (max == g) {
      h = ((b - r) / chroma + 2.0) / 6.0;
    } else {
      h = ((r - g) / chroma + 4.0) / 6.0;
    }
    h = std::fmod(h + shift + 2.0, 1.0);
    const double s = chroma / max, v = max;
    const double sector = h * 6.0;
    const int i = static_cast<int>(std::floor(sector)) % 6;
    const double frac = sector - std::floor(sector);
    const double pv = v * (1 - s), qv = v * (1 - s * frac), tv = v * (1 - s * (1 - frac));
    const double out[6][3] = {{v, tv, pv}, {qv, v, pv}, {pv, v, tv},
                              {pv, qv, v}, {tv, pv, v}, {v, pv, qv}};
    for (int c = 0; c < 3; ++c)
      rgb[c] = clamp_byte(out[i][c] * 255.0);
  }
}

void grayscale(ImageView image) {
  const std::size_t n = pixel_count(image);
  for (std::size_t p = 0; p < n; ++p)
    std::fill_n(image.pixels + p * 3, 3, luma(image.pixels + p * 3));
}

void autocontrast(ImageView image) {
  const std::size_t n = pixel_count(image);
  for (int c = 0; c < 3; ++c) {
    int lo = 255, hi = 0;
    for (std::size_t p = 0; p < n; ++p) {
      lo = std::min<int>(lo, image.pixels[p * 3 + c]);
      hi = std::max<int>(hi, image.pixels[p * 3 + c]);
    }
    if (hi <= lo) continue;
    const double scale = 255.0 / (hi - lo), offset = -lo * scale;
    for (std::size_t p = 0; p < n; ++p) {
      const double value = image.pixels[p * 3 + c] * scale + offset;
      image.pixels[p * 3 + c] = static_cast<std::uint8_t>(std::clamp(value, 0.0, 255.0));
    }
  }
}

void equalize(ImageView image) {
  const std::size_t n = pixel_count(image);
  for (int c = 0; c < 3; ++c) {
    std::array<std::int64_t, 256> histogram{};
    for (std::size_t p = 0; p < n; ++p)
      ++histogram[image.pixels[p * 3 + c]];
    // PIL: step = (pixels - count of the last used value) / 255; a lookup table of the
    // cumulative counts, each rounded by half a step.
    std::int64_t last = 0;
    for (int v = 255; v >= 0; --v) {
      if (histogram[v] > 0) {
        last = histogram[v];
        break;
      }
    }
    const std::int64_t step = (static_cast<std::int64_t>(n) - last) / 255;
    if (step == 0) continue;
    std::array<std::uint8_t, 256> table{};
    std::int64_t cumulative = step / 2;
    for (int v = 0; v < 256; ++v) {
      table[v] = static_cast<std::uint8_t>(std::min<std::int64_t>(255, cumulative / step));
      cumulative += histogram[v];
    }
    for (std::size_t p = 0; p < n; ++p)
      image.pixels[p * 3 + c] = table[image.pixels[p * 3 + c]];
  }
}

void invert(ImageView image) {
  const std::size_t bytes = pixel_count(image) * 3;
  for (std::size_t i = 0; i < bytes; ++i)
    image.pixels[i] = static_cast<std::uint8_t>(255 - image.pixels[i]);
}

void solarize(ImageView image, int threshold) {
  const std::size_t bytes = pixel_count(image) * 3;
  for (std::size_t i = 0; i < bytes; ++i) {
    if (image.pixels[i] >= threshold)
      image.pixels[i] = static_cast<std::uint8_t>(255 - image.pixels[i]);
  }
}

void posterize(ImageView image, int bits) {
  if (bits < 0 || bits > 8) throw std::invalid_argument("posterize: bits must be in [0, 8]");
  const auto mask = static_cast<std::uint8_t>(~((1u << (8 - bits)) - 1u));
  const std::size_t bytes = pixel_count(image) * 3;
  for (std::size_t i = 0; i < bytes; ++i)
    image.pixels[i] &= mask;
}

}  // namespace pixel_ops

// ---- random transforms --------------------------------------------------------------------------

RandomResizedCrop::RandomResizedCrop(double scale_min, double scale_max, double ratio_min,
                                     double ratio_max, Interpolation interpolation)
    : scale_min_(scale_min),
      scale_max_(scale_max),
      ratio_min_(ratio_min),
      ratio_max_(ratio_max),
      interpolation_(interpolation) {
  if (!(scale_min > 0 && scale_min <= scale_max && scale_max <= 1)) {
    throw std::invalid_argument("random resized crop: need 0 < scale_min <= scale_max <= 1");
  }
  if (!(ratio_min > 0 && ratio_min <= ratio_max)) {
    throw std::invalid_argument("random resized crop: need 0 < ratio_min <= ratio_max");
  }
}

void RandomResizedCrop::apply(ImageView image, Rng& rng) const {
  const int width = image.width, height = image.height;
  const double area = double(width) * height;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(scale_min_, scale_max_);
    const double ratio = std::exp(rng.uniform(std::log(ratio_min_), std::log(ratio_max_)));
    const int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const int y = rng.between(0, height - h), x = rng.between(0, width - w);
      if (w == width && h == height) return;  // the whole image: nothing to resample
      pixel_ops::crop_resize(image, x, y, w, h, interpolation_);
      return;
    }
  }
  // Fallback: the centre crop with the ratio clamped into range.
  const double in_ratio = double(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio_min_) {
    h = static_cast<int>(std::lround(w / ratio_min_));
  } else if (in_ratio > ratio_max_) {
    w = static_cast<int>(std::lround(h * ratio_max_));
  }
  if (w == width && h == height) return;
  pixel_ops::crop_resize(image, (width - w) / 2, (height - h) / 2, w, h, interpolation_);
}

void RandomHorizontalFlip::apply(ImageView image, Rng& rng) const {
  if (rng.chance(probability_)) pixel_ops::horizontal_flip(image);
}

void RandomRotation::apply(ImageView image, Rng& rng) const {
  pixel_ops::rotate(image, rng.uniform(-degrees_, degrees_), fill_, interpolation_);
}

ColorJitter::ColorJitter(double brightness, double contrast, double saturation, double hue)
    : brightness_(brightness), contrast_(contrast), saturation_(saturation), hue_(hue) {
  if (brightness < 0 || contrast < 0 || saturation < 0) {
    throw std::invalid_argument("colour jitter: brightness, contrast and saturation must be >= 0");
  }
  if (hue < 0 || hue > 0.5) throw std::invalid_argument("colour jitter: hue must be in [0, 0.5]");
}

void ColorJitter::apply(ImageView image, Rng& rng) const {
  std::vector<int> order = {0, 1, 2, 3};
  rng.shuffle(order);
  const auto factor = [&](double x) { return rng.uniform(std::max(0.0, 1 - x), 1 + x); };
  for (const int which : order) {
    if (which == 0 && brightness_ > 0) pixel_ops::brightness(image, factor(brightness_));
    if (which == 1 && contrast_ > 0) pixel_ops::contrast(image, factor(contrast_));
    if (which == 2 && saturation_ > 0) pixel_ops::saturation(image, factor(saturation_));
    if (which == 3 && hue_ > 0) pixel_ops::hue(image, rng.uniform(-hue_, hue_));
  }
}

void RandomGrayscale::apply(ImageView image, Rng& rng) const {
  if (rng.chance(probability_)) pixel_ops::grayscale(image);
}

// ---- policies -----------------------------------------------------------------------------------

void apply_policy_op(ImageView image, PolicyOp op, int level, bool randaugment, const Fill& fill,
                     Interpolation interpolation, Rng& rng) {
  const double m = std::clamp(level, 0, 10) / 10.0;
  const auto signed_value = [&](double largest) {
    return (rng.chance(0.5) ? -1 : 1) * largest * m;
  };
  const double side = std::min(image.width, image.height);
  switch (op) {
    case PolicyOp::kIdentity:
      return;
    case PolicyOp::kAutoContrast:
      pixel_ops::autocontrast(image);
      return;
    case PolicyOp::kEqualize:
      pixel_ops::equalize(image);
      return;
    case PolicyOp::kInvert:
      pixel_ops::invert(image);
      return;
    case PolicyOp::kRotate:
      pixel_ops::rotate(image, signed_value(30), fill, interpolation);
      return;
    case PolicyOp::kShearX:
      pixel_ops::shear_x(image, signed_value(0.3), fill, interpolation);
      return;
    case PolicyOp::kShearY:
      pixel_ops::shear_y(image, signed_value(0.3), fill, interpolation);
      return;
    case PolicyOp::kTranslateX:
      pixel_ops::translate(image, signed_value(side * 150.0 / 331.0), 0, fill, interpolation);
      return;
    case PolicyOp::kTranslateY:
      pixel_ops::translate(image, 0, signed_value(side * 150.0 / 331.0), fill, interpolation);
      return;
    case PolicyOp::kPosterize:
      pixel_ops::posterize(image,
                           randaugment ? 8 - static_cast<int>(4 * m) : 4 + static_cast<int>(4 * m));
      return;
    case PolicyOp::kSolarize:
      pixel_ops::solarize(image, static_cast<int>(randaugment ? 256 - 256 * m : 256 * m));
      return;
    case PolicyOp::kColor:
    case PolicyOp::kContrast:
    case PolicyOp::kBrightness:
    case PolicyOp::kSharpness:
      enhance(image, op, randaugment ? 1.0 + signed_value(0.9) : 0.1 + 1.8 * m);
      return;
  }
}

const std::vector<std::array<PolicyStep, 2>>& autoaugment_imagenet_policy() {
  using P = PolicyOp;
  // The ImageNet policy of the AutoAugment paper (its appendix), as torchvision and timm
  // ("original") list it.
  static const std::vector<std::array<PolicyStep, 2>> policy = {
      {{{P::kPosterize, 0.4, 8}, {P::kRotate, 0.6, 9}}},
      {{{P::kSolarize, 0.6, 5}, {P::kAutoContrast, 0.6, 5}}},
      {{{P::kEqualize, 0.8, 8}, {P::kEqualize, 0.6, 3}}},
      {{{P::kPosterize, 0.6, 7}, {P::kPosterize, 0.6, 6}}},
      {{{P::kEqualize, 0.4, 7}, {P::kSolarize, 0.2, 4}}},
      {{{P::kEqualize, 0.4, 4}, {P::kRotate, 0.8, 8}}},
      {{{P::kSolarize, 0.6, 3}, {P::kEqualize, 0.6, 7}}},
      {{{P::kPosterize, 0.8, 5}, {P::kEqualize, 1.0, 2}}},
      {{{P::kRotate, 0.2, 3}, {P::kSolarize, 0.6, 8}}},
      {{{P::kEqualize, 0.6, 8}, {P::kPosterize, 0.4, 6}}},
      {{{P::kRotate, 0.8, 8}, {P::kColor, 0.4, 0}}},
      {{{P::kRotate, 0.4, 9}, {P::kEqualize, 0.6, 2}}},
      {{{P::kEqualize, 0.0, 7}, {P::kEqualize, 0.8, 8}}},
      {{{P::kInvert, 0.6, 4}, {P::kEqualize, 1.0, 8}}},
      {{{P::kColor, 0.6, 4}, {P::kContrast, 1.0, 8}}},
      {{{P::kRotate, 0.8, 8}, {P::kColor, 1.0, 2}}},
      {{{P::kColor, 0.8, 8}, {P::kSolarize, 0.8, 7}}},
      {{{P::kSharpness, 0.4, 7}, {P::kInvert, 0.6, 8}}},
      {{{P::kShearX, 0.6, 5}, {P::kEqualize, 1.0, 9}}},
      {{{P::kColor, 0.4, 0}, {P::kEqualize, 0.6, 3}}},
      {{{P::kEqualize, 0.4, 7}, {P::kSolarize, 0.2, 4}}},
      {{{P::kSolarize, 0.6, 5}, {P::kAutoContrast, 0.6, 5}}},
      {{{P::kInvert, 0.6, 4}, {P::kEqualize, 1.0, 8}}},
      {{{P::kColor, 0.6, 4}, {P::kContrast, 1.0, 8}}},
      {{{P::kEqualize, 0.8, 8}, {P::kEqualize, 0.6, 3}}},
  };
  return policy;
}

void AutoAugment::apply(ImageView image, Rng& rng) const {
  for (const PolicyStep& step : rng.pick(autoaugment_imagenet_policy())) {
    if (rng.chance(step.probability)) {
      apply_policy_op(image, step.op, step.level, /*randaugment=*/false, fill_, interpolation_,
                      rng);
    }
  }
}

RandAugment::RandAugment(int ops, int magnitude, const Fill& fill, Interpolation interpolation)
    : ops_(ops), magnitude_(magnitude), fill_(fill), interpolation_(interpolation) {
  if (ops < 1) throw std::invalid_argument("RandAugment: ops must be >= 1");
  if (magnitude < 0 || magnitude > 10) {
    throw std::invalid_argument("RandAugment: magnitude must be in [0, 10]");
  }
}

void RandAugment::apply(ImageView image, Rng& rng) const {
  constexpr int kOps = static_cast<int>(PolicyOp::kTranslateY) + 1;
  for (int i = 0; i < ops_; ++i) {
    const auto op = static_cast<PolicyOp>(rng.below(kOps));
    apply_policy_op(image, op, magnitude_, /*randaugment=*/true, fill_, interpolation_, rng);
  }
}

// ---- recipes ------------------------------------------------------------------------------------

ImageAugmentOptions chinese_clip_augment_options() {
  ImageAugmentOptions options;
  options.crop_scale_min = 0.9;
  options.crop_scale_max = 1.0;
  options.hflip = 0.5;
  options.policy = "autoaugment";
  options.interpolation = Interpolation::kBicubic;
  return options;
}

std::vector<std::shared_ptr<const ImageAugmentation>> make_image_augmentations(
    const ImageAugmentOptions& o) {
  std::vector<std::shared_ptr<const ImageAugmentation>> out;
  const auto probability = [](double p, const char* name) {
    if (p < 0 || p > 1) throw std::invalid_argument(fmt::format("{} must be in [0, 1]", name));
  };
  probability(o.hflip, "hflip");
  probability(o.grayscale, "grayscale");
  if (o.rotate_degrees < 0 || o.rotate_degrees > 180) {
    throw std::invalid_argument("rotate_degrees must be in [0, 180]");
  }
  if (o.crop_scale_min > 0) {
    out.push_back(std::make_shared<RandomResizedCrop>(
        o.crop_scale_min, o.crop_scale_max, o.crop_ratio_min, o.crop_ratio_max, o.interpolation));
  }
  if (o.hflip > 0) out.push_back(std::make_shared<RandomHorizontalFlip>(o.hflip));
  if (o.rotate_degrees > 0) {
    out.push_back(std::make_shared<RandomRotation>(o.rotate_degrees, o.fill, o.interpolation));
  }
  if (o.policy == "autoaugment") {
    out.push_back(std::make_shared<AutoAugment>(o.fill, o.interpolation));
  } else if (o.policy == "randaugment") {
    out.push_back(std::make_shared<RandAugment>(o.randaugment_ops, o.randaugment_magnitude, o.fill,
                                                o.interpolation));
  } else if (o.policy != "none") {
    throw std::invalid_argument(
        fmt::format("policy '{}' is not one of none, randaugment, autoaugment", o.policy));
  }
  if (o.brightness > 0 || o.contrast > 0 || o.saturation > 0 || o.hue > 0) {
    out.push_back(std::make_shared<ColorJitter>(o.brightness, o.contrast, o.saturation, o.hue));
  }
  if (o.grayscale > 0) out.push_back(std::make_shared<RandomGrayscale>(o.grayscale));
  return out;
}

}  // namespace shopclip::data
