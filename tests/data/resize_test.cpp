#include "data/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_paths.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::random_image;

// Test inputs with hard edges and no symmetry, so a wrong tap offset or weight changes values.
Image pattern_image(int width, int height) {
  Image image{width, height,
              std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        image.rgb[(y * width + x) * 3 + c] =
            static_cast<std::uint8_t>(((x * 67 + y * 131 + c * 29) ^ (x * y * 7)) & 0xff);
      }
    }
  }
  return image;
}

// 0/255 checkerboard (channels out of phase): bicubic overshoots here, exercising the clamping.
Image checker_image(int width, int height) {
  Image image{width, height,
              std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c)
        image.rgb[(y * width + x) * 3 + c] = (x + y + c) % 2 ? 255 : 0;
    }
  }
  return image;
}

// Something like a product photo at production sizes: smooth gradients (where the rounding of
// the weights shows), a rectangle with sharp edges, thin lines, a disc of pattern_image noise and
// a patch of 0/255 checker. tests/fixtures/make_resize_cases.py (scene_value) builds the same
// image for Pillow, so the two must change together; non-negative integers only, so "/" and "%"
// agree with Python's "//" and "%".
Image scene_image(int width, int height) {
  Image image{width, height,
              std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  const int radius = std::min(width, height) / 5;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int gx = width > 1 ? x * 255 / (width - 1) : 0;
      const int gy = height > 1 ? y * 255 / (height - 1) : 0;
      for (int c = 0; c < 3; ++c) {
        int v = c == 0 ? gx : (c == 1 ? gy : (gx + gy) / 2);
        if (width / 4 <= x && x < 3 * width / 4 && height / 4 <= y && y < 3 * height / 4) {
          v = 255 - v;
        }
        if (x % 17 == 3 && c != 1) v = 0;
        if (y % 13 == 5) v = 255;
        const int dx = std::abs(x - 2 * width / 3);
        const int dy = std::abs(y - height / 3);
        if (dx * dx + dy * dy < radius * radius) {
          v = ((x * 67 + y * 131 + c * 29) ^ (x * y * 7)) & 0xff;
        }
        if (x < width / 6 && y >= 5 * height / 6) v = (x / 2 + y / 2 + c) % 2 ? 255 : 0;
        image.rgb[(static_cast<std::size_t>(y) * width + x) * 3 + c] = static_cast<std::uint8_t>(v);
      }
    }
  }
  return image;
}

Image source_image(const std::string& name, int width, int height) {
  if (name == "Pattern") return pattern_image(width, height);
  if (name == "Checker") return checker_image(width, height);
  if (name == "Scene") return scene_image(width, height);
  throw std::invalid_argument("unknown source image " + name);
}

// A direct double-precision transcription of the resampling formula (no shared code with the
// implementation): each output sample is a normalised cubic-weighted sum over the input
// samples within 2 * max(1, scale) of its centre; horizontal pass, 8-bit rounding and clamping,
// then vertical pass. Axes whose size does not change are passed through.
double reference_cubic(double x) {
  x = std::abs(x);
  if (x < 1) return 1.5 * x * x * x - 2.5 * x * x + 1;
  if (x < 2) return -0.5 * x * x * x + 2.5 * x * x - 4 * x + 2;
  return 0;
}

std::uint8_t round_clamp(double v) {
  return static_cast<std::uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0));
}

// Resamples one line of `in_size` samples (stride apart) into `out_size` samples.
std::vector<std::uint8_t> reference_line(const std::vector<std::uint8_t>& in, int out_size) {
  const int in_size = static_cast<int>(in.size());
  if (in_size == out_size) return in;
  const double scale = static_cast<double>(in_size) / out_size;
  const double stretch = std::max(1.0, scale);
  const double support = 2 * stretch;
  std::vector<std::uint8_t> out(out_size);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    double sum = 0;
    double weight_sum = 0;
    for (int i = 0; i < in_size; ++i) {
      const double distance = (i + 0.5 - center) / stretch;
      // Pillow's window: pixels whose index lies in [trunc(center - support + 0.5),
      // trunc(center + support + 0.5)).
      if (i < static_cast<int>(center - support + 0.5) ||
          i >= static_cast<int>(center + support + 0.5)) {
        continue;
      }
      const double w = reference_cubic(distance);
      sum += w * in[i];
      weight_sum += w;
    }
    out[o] = round_clamp(sum / weight_sum);
  }
  return out;
}

Image reference_resize(const Image& in, int out_width, int out_height) {
  Image mid{out_width, in.height,
            std::vector<std::uint8_t>(static_cast<std::size_t>(out_width) * in.height * 3)};
  for (int y = 0; y < in.height; ++y) {
    for (int c = 0; c < 3; ++c) {
      std::vector<std::uint8_t> line(in.width);
      for (int x = 0; x < in.width; ++x)
        line[x] = in.rgb[(y * in.width + x) * 3 + c];
      const auto out = reference_line(line, out_width);
      for (int x = 0; x < out_width; ++x)
        mid.rgb[(y * out_width + x) * 3 + c] = out[x];
    }
  }
  Image result{out_width, out_height,
               std::vector<std::uint8_t>(static_cast<std::size_t>(out_width) * out_height * 3)};
  for (int x = 0; x < out_width; ++x) {
    for (int c = 0; c < 3; ++c) {
      std::vector<std::uint8_t> line(in.height);
      for (int y = 0; y < in.height; ++y)
        line[y] = mid.rgb[(y * out_width + x) * 3 + c];
      const auto out = reference_line(line, out_height);
      for (int y = 0; y < out_height; ++y)
        result.rgb[(y * out_width + x) * 3 + c] = out[y];
    }
  }
  return result;
}

// Largest per-sample difference between two images of the same size.
int max_difference(const Image& a, const Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.rgb.size(), b.rgb.size());
  int worst = 0;
  for (std::size_t i = 0; i < std::min(a.rgb.size(), b.rgb.size()); ++i) {
    worst = std::max(worst, std::abs(int{a.rgb[i]} - int{b.rgb[i]}));
  }
  return worst;
}

TEST(ResizeTest, ConstantImageStaysConstant) {
  const std::pair<int, int> sizes[][2] = {{{128, 128}, {64, 64}},
                                          {{10, 7}, {33, 2}},
                                          {{1, 1}, {5, 4}},
                                          {{50, 3}, {1, 1}},
                                          {{9, 9}, {9, 4}}};
  for (const auto& [in, out] : sizes) {
    Image image{in.first, in.second,
                std::vector<std::uint8_t>(static_cast<std::size_t>(in.first) * in.second * 3)};
    for (std::size_t i = 0; i < image.rgb.size(); ++i)
      image.rgb[i] = i % 3 == 0 ? 200 : (i % 3 == 1 ? 7 : 255);
    const Image resized = resize_bicubic(image, out.first, out.second);
    ASSERT_EQ(resized.width, out.first);
    ASSERT_EQ(resized.height, out.second);
    ASSERT_EQ(resized.rgb.size(), static_cast<std::size_t>(out.first) * out.second * 3);
    for (std::size_t i = 0; i < resized.rgb.size(); ++i) {
      ASSERT_EQ(resized.rgb[i], i % 3 == 0 ? 200 : (i % 3 == 1 ? 7 : 255))
          << in.first << "x" << in.second << " -> " << out.first << "x" << out.second;
    }
  }
}

TEST(ResizeTest, SameSizeReturnsSamePixels) {
  const Image image = random_image(31, 17, 1);
  const Image resized = resize_bicubic(image, 31, 17);
  EXPECT_EQ(resized.width, 31);
  EXPECT_EQ(resized.height, 17);
  EXPECT_EQ(resized.rgb, image.rgb);
}

TEST(ResizeTest, MatchesDoublePrecisionReference) {
  // Shrink (the 128 -> 64 of the training pipeline), enlarge, mixed, and one-axis-only cases.
  const int cases[][4] = {{128, 128, 64, 64}, {37, 23, 11, 29}, {5, 4, 17, 13}, {64, 64, 224, 224},
                          {40, 9, 40, 3},     {9, 40, 4, 40},   {300, 2, 7, 1}};
  unsigned seed = 10;
  for (const auto& c : cases) {
    for (const Image& image :
         {random_image(c[0], c[1], seed++), pattern_image(c[0], c[1]), checker_image(c[0], c[1])}) {
      const Image resized = resize_bicubic(image, c[2], c[3]);
      // Only fixed-point rounding of the weights may differ.
      EXPECT_LE(max_difference(resized, reference_resize(image, c[2], c[3])), 1)
          << c[0] << "x" << c[1] << " -> " << c[2] << "x" << c[3];
    }
  }
}

// Outputs of Pillow 9.4 Image.resize((w, h), Image.BICUBIC) on pattern_image / checker_image,
// pasted here because they are small enough to read. Regenerate them with
// `/usr/bin/python3 tests/fixtures/make_resize_cases.py --print-cpp`; `--check` compares.
struct Golden {
  const char* input;
  int width, height, out_width, out_height;
  std::vector<std::uint8_t> expected;
};

const Golden kPillowGolden[] = {
    {"Pattern",
     7,
     5,
     3,
     2,
     {91, 123, 105, 117, 138, 111, 120, 123, 132, 104, 128, 121, 132, 128, 130, 134, 129, 96}},
    {"Pattern", 10, 10, 4, 6, {89,  120, 103, 111, 141, 103, 128, 131, 124, 127, 127, 118,
                               102, 131, 111, 125, 125, 133, 137, 131, 121, 113, 97,  124,
                               112, 129, 125, 128, 126, 119, 130, 126, 93,  120, 124, 142,
                               137, 140, 111, 111, 107, 141, 150, 119, 106, 154, 124, 126,
                               145, 133, 113, 158, 171, 102, 82,  149, 145, 86,  126, 141,
                               143, 132, 117, 152, 93,  94,  160, 95,  97,  159, 77,  69}},
    {"Checker",
     4,
     3,
     9,
     7,
     {0,   255, 0,   14,  241, 14,  182, 73,  182, 255, 0,   255, 128, 128, 128, 0,   255, 0,   73,
      182, 73,  241, 14,  241, 255, 0,   255, 26,  229, 26,  52,  203, 52,  164, 91,  164, 227, 28,
      227, 128, 128, 128, 28,  227, 28,  91,  164, 91,  203, 52,  203, 229, 26,  229, 160, 95,  160,
      152, 103, 152, 116, 139, 116, 96,  159, 96,  128, 128, 128, 159, 96,  159, 139, 116, 139, 103,
      152, 103, 95,  160, 95,  255, 0,   255, 223, 32,  223, 82,  173, 82,  2,   253, 2,   128, 128,
      128, 253, 2,   253, 173, 82,  173, 32,  223, 32,  0,   255, 0,   160, 95,  160, 152, 103, 152,
      116, 139, 116, 96,  159, 96,  128, 128, 128, 159, 96,  159, 139, 116, 139, 103, 152, 103, 95,
      160, 95,  26,  229, 26,  52,  203, 52,  164, 91,  164, 227, 28,  227, 128, 128, 128, 28,  227,
      28,  91,  164, 91,  203, 52,  203, 229, 26,  229, 0,   255, 0,   14,  241, 14,  182, 73,  182,
      255, 0,   255, 128, 128, 128, 0,   255, 0,   73,  182, 73,  241, 14,  241, 255, 0,   255}},
    {"Pattern",
     12,
     1,
     5,
     1,
     {61, 90, 116, 121, 150, 78, 113, 142, 131, 104, 133, 93, 164, 193, 136}},
    {"Pattern", 3, 8, 3, 3, {59, 88,  117, 124, 158, 76,  80,  110, 150, 74, 103, 132, 152, 173,
                             88, 106, 102, 152, 90,  119, 148, 187, 150, 95, 149, 155, 82}},
    {"Pattern", 16, 16, 8, 8, {85,  116, 101, 115, 146, 105, 112, 125, 120, 138, 132, 126, 124, 118,
                               121, 127, 181, 123, 143, 125, 138, 127, 113, 121, 102, 134, 111, 127,
                               124, 130, 130, 131, 128, 142, 134, 92,  95,  96,  135, 128, 130, 140,
                               155, 93,  80,  68,  116, 116, 123, 136, 115, 110, 112, 140, 129, 120,
                               98,  138, 115, 125, 159, 137, 147, 170, 81,  84,  79,  133, 122, 115,
                               162, 158, 135, 129, 119, 169, 158, 93,  115, 159, 144, 106, 115, 107,
                               94,  129, 132, 114, 164, 154, 164, 169, 162, 156, 149, 151, 126, 125,
                               125, 147, 110, 97,  135, 114, 115, 130, 111, 115, 131, 95,  85,  144,
                               109, 76,  116, 90,  83,  89,  82,  119, 101, 109, 152, 97,  140, 146,
                               104, 144, 148, 113, 140, 130, 75,  160, 128, 119, 105, 112, 104, 97,
                               99,  56,  62,  131, 103, 145, 167, 96,  172, 158, 141, 133, 122, 99,
                               129, 122, 122, 122, 115, 138, 151, 147, 167, 180, 122, 169, 169, 151,
                               112, 145, 151, 150, 113, 114, 151, 127, 123, 112, 109, 111, 140, 136,
                               173, 75,  79,  148, 110, 110, 73,  175, 163, 141}},
};

TEST(ResizeTest, MatchesPillowExactly) {
  for (const Golden& golden : kPillowGolden) {
    const Image image = source_image(golden.input, golden.width, golden.height);
    const Image resized = resize_bicubic(image, golden.out_width, golden.out_height);
    EXPECT_EQ(resized.rgb, golden.expected)
        << golden.input << " " << golden.width << "x" << golden.height << " -> " << golden.out_width
        << "x" << golden.out_height;
  }
}

// Pillow's outputs at the sizes production resizes to (224, 128, 96, 64, 28 -> 64, non-square
// thumbnails, one axis only), from tests/fixtures/resize_pillow.bin, which
// tests/fixtures/make_resize_cases.py writes (its docstring gives the layout). Every byte must
// match: prep and encode promise Chinese-CLIP's preprocessing exactly, not approximately.
TEST(ResizeTest, MatchesPillowAtProductionSizes) {
  const std::string path = std::string(SHOPCLIP_SOURCE_DIR) + "/tests/fixtures/resize_pillow.bin";
  const std::string data = test_support::read_file(path);
  std::size_t pos = 0;
  // Returns the next '\n'-terminated header line, advancing past it.
  const auto next_line = [&]() -> std::string {
    const std::size_t end = data.find('\n', pos);
    if (end == std::string::npos) throw std::runtime_error(path + ": missing header line");
    std::string line = data.substr(pos, end - pos);
    pos = end + 1;
    return line;
  };
  std::istringstream header(next_line());
  std::string magic, version, pillow, cases_field;
  header >> magic >> version >> pillow >> cases_field;
  ASSERT_EQ(magic, "shopclip-resize-golden");
  ASSERT_EQ(version, "1");
  ASSERT_EQ(cases_field.rfind("cases=", 0), 0u) << cases_field;
  const int cases = std::stoi(cases_field.substr(6));
  // Guard against a truncated fixture silently weakening the test.
  ASSERT_GE(cases, 12);

  for (int i = 0; i < cases; ++i) {
    std::istringstream line(next_line());
    std::string word, source;
    int width = 0, height = 0, out_width = 0, out_height = 0;
    line >> word >> source >> width >> height >> out_width >> out_height;
    ASSERT_EQ(word, "case");
    ASSERT_TRUE(line) << "case " << i << " of " << path;
    const std::size_t size = static_cast<std::size_t>(out_width) * out_height * 3;
    ASSERT_LE(pos + size, data.size()) << path << " is truncated";
    const std::vector<std::uint8_t> expected(
        data.begin() + static_cast<std::ptrdiff_t>(pos),
        data.begin() + static_cast<std::ptrdiff_t>(pos + size));
    pos += size;

    const Image resized =
        resize_bicubic(source_image(source, width, height), out_width, out_height);
    ASSERT_EQ(resized.rgb.size(), size);
    // On a mismatch, say how many samples differ and where the first one is, not 150k values.
    int differing = 0, worst = 0;
    std::string first;
    for (std::size_t k = 0; k < size; ++k) {
      if (resized.rgb[k] == expected[k]) continue;
      const int diff = std::abs(int{resized.rgb[k]} - int{expected[k]});
      worst = std::max(worst, diff);
      if (differing++ == 0) {
        const std::size_t pixel = k / 3;
        first = "(x " + std::to_string(pixel % out_width) + ", y " +
                std::to_string(pixel / out_width) + ", channel " + std::to_string(k % 3) +
                "): got " + std::to_string(resized.rgb[k]) + ", Pillow " +
                std::to_string(expected[k]);
      }
    }
    EXPECT_EQ(differing, 0) << source << " " << width << "x" << height << " -> " << out_width << "x"
                            << out_height << ": " << differing << " of " << size
                            << " samples differ, by up to " << worst << "; first at " << first;
  }
  EXPECT_EQ(pos, data.size()) << "trailing bytes in " << path;
}

TEST(ResizeTest, RejectsBadArguments) {
  const Image image = random_image(4, 4, 3);
  EXPECT_THROW(resize_bicubic(image, 0, 4), std::invalid_argument);
  EXPECT_THROW(resize_bicubic(image, 4, -1), std::invalid_argument);
  EXPECT_THROW(resize_bicubic(Image{}, 4, 4), std::invalid_argument);
  Image inconsistent = image;
  inconsistent.rgb.pop_back();
  EXPECT_THROW(resize_bicubic(inconsistent, 2, 2), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip::data
