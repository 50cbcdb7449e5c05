#include "data/image.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <png.h>
#include <turbojpeg.h>

#include "data/error.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::random_image;

// A smooth image: JPEG reproduces it closely, so round-trip errors stay small.
Image gradient_image(int width, int height) {
  Image image{width, height,
              std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      std::uint8_t* p = &image.rgb[(y * width + x) * 3];
      p[0] = static_cast<std::uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = static_cast<std::uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = static_cast<std::uint8_t>(128 + 60 * std::sin((x + y) * 0.1));
    }
  }
  return image;
}

// Decodes expecting a DataError and returns its message.
std::string decode_error(const std::string& bytes) {
  try {
    decode_image(bytes);
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "decode_image did not throw";
  return "";
}

// ---- PNG fixtures written with libpng directly, to cover inputs encode_png never produces ----

struct PngSpec {
  int width = 0;
  int height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;
  std::vector<png_byte> palette_alpha;          // tRNS for palette images
  std::vector<std::vector<std::uint8_t>> rows;  // already packed as the PNG format stores them
};

void append_to_string(png_structp png, png_bytep data, png_size_t length) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), length);
}

std::string write_png(const PngSpec& spec) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) std::abort();  // fixture bug; libpng has printed why
  png_set_write_fn(png, &out, append_to_string, nullptr);
  png_set_IHDR(png, info, spec.width, spec.height, spec.bit_depth, spec.color_type,
               spec.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!spec.palette.empty()) {
    png_set_PLTE(png, info, spec.palette.data(), static_cast<int>(spec.palette.size()));
  }
  if (!spec.palette_alpha.empty()) {
    png_set_tRNS(png, info, spec.palette_alpha.data(), static_cast<int>(spec.palette_alpha.size()),
                 nullptr);
  }
  png_write_info(png, info);
  std::vector<png_bytep> rows;
  for (const auto& row : spec.rows)
    rows.push_back(const_cast<png_bytep>(row.data()));
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void expect_pixel(const Image& image, int x, int y, int r, int g, int b) {
  const std::uint8_t* p = &image.rgb[(y * image.width + x) * 3];
  EXPECT_EQ(p[0], r) << "(" << x << ", " << y << ")";
  EXPECT_EQ(p[1], g) << "(" << x << ", " << y << ")";
  EXPECT_EQ(p[2], b) << "(" << x << ", " << y << ")";
}

// ---- PNG ------------------------------------------------------------------------------------

TEST(ImageTest, PngRoundTripIsExact) {
  for (const auto& [w, h] : {std::pair{1, 1}, std::pair{17, 3}, std::pair{64, 48}}) {
    const Image image = random_image(w, h, static_cast<unsigned>(w * 100 + h));
    const std::string png = encode_png(image);
    const Image decoded = decode_image(png);
    EXPECT_EQ(decoded.width, w);
    EXPECT_EQ(decoded.height, h);
    EXPECT_EQ(decoded.rgb, image.rgb);
  }
}

TEST(ImageTest, DecodesGrayscalePng) {
  PngSpec spec;
  spec.width = 5;
  spec.height = 4;
  spec.color_type = PNG_COLOR_TYPE_GRAY;
  for (int y = 0; y < 4; ++y) {
    std::vector<std::uint8_t> row;
    for (int x = 0; x < 5; ++x)
      row.push_back(static_cast<std::uint8_t>(x * 50 + y * 3));
    spec.rows.push_back(row);
  }
  const Image image = decode_image(write_png(spec));
  ASSERT_EQ(image.width, 5);
  ASSERT_EQ(image.height, 4);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x)
      expect_pixel(image, x, y, x * 50 + y * 3, x * 50 + y * 3, x * 50 + y * 3);
  }
}

TEST(ImageTest, DecodesLowBitDepthGrayscalePng) {
  // 1-bit: 0 / 255. 4-bit: v * 17 (the full-range scaling Pillow also uses).
  PngSpec one_bit;
  one_bit.width = 10;
  one_bit.height = 1;
  one_bit.color_type = PNG_COLOR_TYPE_GRAY;
  one_bit.bit_depth = 1;
  one_bit.rows = {{0b10110000, 0b01000000}};  // pixels 1,0,1,1,0,0,0,0 | 0,1
  const Image a = decode_image(write_png(one_bit));
  const int bits[] = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1};
  for (int x = 0; x < 10; ++x)
    expect_pixel(a, x, 0, bits[x] * 255, bits[x] * 255, bits[x] * 255);

  PngSpec four_bit = one_bit;
  four_bit.width = 4;
  four_bit.bit_depth = 4;
  four_bit.rows = {{0x0f, 0x37}};
  const Image b = decode_image(write_png(four_bit));
  const int nibbles[] = {0, 15, 3, 7};
  for (int x = 0; x < 4; ++x) {
    expect_pixel(b, x, 0, nibbles[x] * 17, nibbles[x] * 17, nibbles[x] * 17);
  }
}

TEST(ImageTest, DropsAlphaWithoutCompositing) {
  PngSpec rgba;
  rgba.width = 3;
  rgba.height = 1;
  rgba.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  // Fully transparent pixels keep their colour: alpha is dropped, not blended onto a background.
  rgba.rows = {{10, 20, 30, 0, 200, 100, 50, 128, 1, 2, 3, 255}};
  const Image a = decode_image(write_png(rgba));
  ASSERT_EQ(a.rgb.size(), 9u);
  expect_pixel(a, 0, 0, 10, 20, 30);
  expect_pixel(a, 1, 0, 200, 100, 50);
  expect_pixel(a, 2, 0, 1, 2, 3);

  PngSpec gray_alpha = rgba;
  gray_alpha.width = 2;
  gray_alpha.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
  gray_alpha.rows = {{77, 0, 160, 255}};
  const Image b = decode_image(write_png(gray_alpha));
  expect_pixel(b, 0, 0, 77, 77, 77);
  expect_pixel(b, 1, 0, 160, 160, 160);
}

TEST(ImageTest, DecodesPaletteWithTransparency) {
  PngSpec spec;
  spec.width = 4;
  spec.height = 2;
  spec.color_type = PNG_COLOR_TYPE_PALETTE;
  spec.bit_depth = 4;
  spec.palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 8, 7}};
  spec.palette_alpha = {0, 128};  // entries 0 and 1 are (semi)transparent
  spec.rows = {{0x01, 0x23}, {0x32, 0x10}};
  const Image image = decode_image(write_png(spec));
  expect_pixel(image, 0, 0, 255, 0, 0);
  expect_pixel(image, 1, 0, 0, 255, 0);
  expect_pixel(image, 2, 0, 0, 0, 255);
  expect_pixel(image, 3, 0, 9, 8, 7);
  expect_pixel(image, 0, 1, 9, 8, 7);
  expect_pixel(image, 3, 1, 255, 0, 0);
}

TEST(ImageTest, Decodes16BitPngByKeepingHighByte) {
  PngSpec rgb16;
  rgb16.width = 2;
  rgb16.height = 1;
  rgb16.bit_depth = 16;
  rgb16.rows = {{0x12, 0x34, 0xab, 0xcd, 0xff, 0xff, 0x00, 0xff, 0x80, 0x00, 0x7f, 0xff}};
  const Image a = decode_image(write_png(rgb16));
  expect_pixel(a, 0, 0, 0x12, 0xab, 0xff);
  expect_pixel(a, 1, 0, 0x00, 0x80, 0x7f);

  PngSpec gray16 = rgb16;
  gray16.color_type = PNG_COLOR_TYPE_GRAY;
  gray16.rows = {{0x40, 0x01, 0xfe, 0x99}};
  const Image b = decode_image(write_png(gray16));
  expect_pixel(b, 0, 0, 0x40, 0x40, 0x40);
  expect_pixel(b, 1, 0, 0xfe, 0xfe, 0xfe);
}

TEST(ImageTest, DecodesInterlacedPng) {
  const Image source = random_image(13, 11, 5);
  PngSpec spec;
  spec.width = 13;
  spec.height = 11;
  spec.interlaced = true;
  for (int y = 0; y < 11; ++y) {
    spec.rows.emplace_back(source.rgb.begin() + y * 13 * 3, source.rgb.begin() + (y + 1) * 13 * 3);
  }
  const Image image = decode_image(write_png(spec));
  EXPECT_EQ(image.rgb, source.rgb);
}

TEST(ImageTest, ReportsTruncatedPng) {
  const std::string png = encode_png(random_image(40, 30, 2));
  EXPECT_EQ(decode_error(png.substr(0, png.size() / 2)), "truncated PNG");
  EXPECT_EQ(decode_error(png.substr(0, 20)), "truncated PNG");               // inside IHDR
  EXPECT_EQ(decode_error(png.substr(0, png.size() - 40)), "truncated PNG");  // inside IDAT
}

TEST(ImageTest, AcceptsPngMissingOnlyIend) {
  // Every pixel is there, and Pillow (the reference pipeline) accepts such files.
  const Image image = random_image(40, 30, 2);
  const std::string png = encode_png(image);
  EXPECT_EQ(decode_image(png.substr(0, png.size() - 12)).rgb, image.rgb);
}

TEST(ImageTest, ReportsCorruptPng) {
  std::string png = encode_png(random_image(8, 8, 3));
  png[29] = static_cast<char>(png[29] ^ 0x5a);  // IHDR CRC (bytes 29..32)
  const std::string message = decode_error(png);
  EXPECT_EQ(message.rfind("corrupt PNG: ", 0), 0u) << message;
}

// ---- JPEG -----------------------------------------------------------------------------------

TEST(ImageTest, JpegRoundTripIsClose) {
  const Image image = gradient_image(64, 48);
  const std::string jpeg = encode_jpeg(image, 95);
  ASSERT_GT(jpeg.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(jpeg[0]), 0xff);
  EXPECT_EQ(static_cast<unsigned char>(jpeg[1]), 0xd8);
  const Image decoded = decode_image(jpeg);
  ASSERT_EQ(decoded.width, 64);
  ASSERT_EQ(decoded.height, 48);
  ASSERT_EQ(decoded.rgb.size(), image.rgb.size());
  double total = 0;
  int worst = 0;
  for (std::size_t i = 0; i < image.rgb.size(); ++i) {
    const int difference = std::abs(int{decoded.rgb[i]} - int{image.rgb[i]});
    total += difference;
    worst = std::max(worst, difference);
  }
  EXPECT_LT(total / image.rgb.size(), 2.0);
  EXPECT_LT(worst, 24);
  // Lower quality gives a smaller file.
  EXPECT_LT(encode_jpeg(image, 30).size(), jpeg.size());
}

TEST(ImageTest, OddSizedJpegRoundTrip) {
  const Image decoded = decode_image(encode_jpeg(gradient_image(3, 7), 90));
  EXPECT_EQ(decoded.width, 3);
  EXPECT_EQ(decoded.height, 7);
  EXPECT_EQ(decoded.rgb.size(), 3u * 7 * 3);
}

TEST(ImageTest, DecodesGrayscaleJpegToRgb) {
  std::vector<std::uint8_t> gray(32 * 16);
  for (std::size_t i = 0; i < gray.size(); ++i)
    gray[i] = static_cast<std::uint8_t>(40 + (i % 32) * 5);
  tjhandle handle = tjInitCompress();
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  ASSERT_EQ(
      tjCompress2(handle, gray.data(), 32, 0, 16, TJPF_GRAY, &buffer, &size, TJSAMP_GRAY, 100, 0),
      0);
  const std::string jpeg(reinterpret_cast<char*>(buffer), size);
  tjFree(buffer);
  tjDestroy(handle);

  const Image image = decode_image(jpeg);
  ASSERT_EQ(image.width, 32);
  ASSERT_EQ(image.height, 16);
  for (std::size_t i = 0; i < gray.size(); ++i) {
    EXPECT_EQ(image.rgb[i * 3], image.rgb[i * 3 + 1]);
    EXPECT_EQ(image.rgb[i * 3], image.rgb[i * 3 + 2]);
    EXPECT_NEAR(image.rgb[i * 3], gray[i], 3);
  }
}

TEST(ImageTest, DecodesCmykJpegLikePillow) {
  // Stored values are Adobe-inverted CMYK, which Pillow assumes for every 4-component JPEG:
  // C = 255 - stored, and R = (255 - K) * (255 - C) / 255.
  const std::uint8_t stored[4] = {245, 55, 225, 215};  // C=10 M=200 Y=30 K=40
  std::vector<std::uint8_t> cmyk(16 * 16 * 4);
  for (std::size_t i = 0; i < cmyk.size(); ++i)
    cmyk[i] = stored[i % 4];
  tjhandle handle = tjInitCompress();
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  ASSERT_EQ(
      tjCompress2(handle, cmyk.data(), 16, 0, 16, TJPF_CMYK, &buffer, &size, TJSAMP_444, 100, 0),
      0);
  const std::string jpeg(reinterpret_cast<char*>(buffer), size);
  tjFree(buffer);
  tjDestroy(handle);

  const Image image = decode_image(jpeg);
  ASSERT_EQ(image.width, 16);
  ASSERT_EQ(image.height, 16);
  // Pillow gives (207, 46, 190) for CMYK (10, 200, 30, 40).
  for (int i = 0; i < 16 * 16; ++i) {
    EXPECT_NEAR(image.rgb[i * 3 + 0], 207, 2);
    EXPECT_NEAR(image.rgb[i * 3 + 1], 46, 2);
    EXPECT_NEAR(image.rgb[i * 3 + 2], 190, 2);
  }
}

TEST(ImageTest, ReportsTruncatedJpeg) {
  const std::string jpeg = encode_jpeg(random_image(64, 64, 4), 90);
  const std::string half = decode_error(jpeg.substr(0, jpeg.size() / 2));
  EXPECT_EQ(half, "truncated JPEG");
  EXPECT_NE(half.find("truncated"), std::string::npos);
  // Cut inside the headers and just before the end.
  EXPECT_EQ(decode_error(jpeg.substr(0, 40)), "truncated JPEG");
  EXPECT_EQ(decode_error(jpeg.substr(0, 200)), "truncated JPEG");
  EXPECT_EQ(decode_error(jpeg.substr(0, jpeg.size() - 2)), "truncated JPEG");
}

TEST(ImageTest, TreatsJpegWarningsAsCorruption) {
  // Junk between the entropy-coded data and EOI: libjpeg decodes it with a warning.
  std::string jpeg = encode_jpeg(gradient_image(16, 16), 90);
  jpeg.insert(jpeg.size() - 2, std::string(16, '\x01'));
  const std::string message = decode_error(jpeg);
  EXPECT_EQ(message.rfind("corrupt JPEG: ", 0), 0u) << message;
}

TEST(ImageTest, AcceptsBytesAfterJpegEnd) {
  const std::string jpeg = encode_jpeg(gradient_image(16, 8), 90);
  const Image image = decode_image(jpeg + "trailing junk");
  EXPECT_EQ(image.width, 16);
  EXPECT_EQ(image.height, 8);
}

// ---- format detection, probing, arguments -----------------------------------------------------

TEST(ImageTest, RejectsBytesThatAreNeitherFormat) {
  std::mt19937 rng(7);
  std::string noise(1000, '\0');
  for (auto& c : noise)
    c = static_cast<char>(rng() & 0xff);
  noise[0] = 'x';  // make sure the noise does not start with a magic number by chance
  EXPECT_EQ(decode_error(noise), "not a JPEG or PNG image");
  EXPECT_EQ(decode_error(""), "not a JPEG or PNG image");
  EXPECT_EQ(decode_error("GIF89a"), "not a JPEG or PNG image");
  EXPECT_THROW(probe_image(noise), DataError);
  EXPECT_THROW(probe_image(""), DataError);
}

TEST(ImageTest, ProbesBothFormats) {
  const Image image = gradient_image(37, 21);
  const ImageInfo jpeg = probe_image(encode_jpeg(image, 80));
  EXPECT_EQ(jpeg.format, ImageFormat::kJpeg);
  EXPECT_EQ(jpeg.width, 37);
  EXPECT_EQ(jpeg.height, 21);
  const ImageInfo png = probe_image(encode_png(image));
  EXPECT_EQ(png.format, ImageFormat::kPng);
  EXPECT_EQ(png.width, 37);
  EXPECT_EQ(png.height, 21);
  // The header alone is enough.
  const std::string full_png = encode_png(image);
  EXPECT_EQ(probe_image(full_png.substr(0, 33)).width, 37);
  EXPECT_THROW(probe_image(full_png.substr(0, 16)), DataError);
}

TEST(ImageTest, EncodersRejectBadArguments) {
  const Image image = gradient_image(4, 4);
  EXPECT_THROW(encode_jpeg(image, 0), std::invalid_argument);
  EXPECT_THROW(encode_jpeg(image, 101), std::invalid_argument);
  Image inconsistent = image;
  inconsistent.rgb.resize(5);
  EXPECT_THROW(encode_jpeg(inconsistent, 90), std::invalid_argument);
  EXPECT_THROW(encode_png(inconsistent), std::invalid_argument);
  EXPECT_THROW(encode_png(Image{}), std::invalid_argument);
}

// Randomly damaged files must fail with a DataError (or decode to the right size when the damage
// happens to be harmless): never a crash, another exception type, or libpng / libjpeg chatter.
TEST(ImageTest, DamagedFilesFailCleanlyAndQuietly) {
  const Image source = gradient_image(48, 40);
  const std::string originals[] = {encode_jpeg(source, 85), encode_png(source)};
  std::mt19937 rng(11);
  ::testing::internal::CaptureStderr();
  int failures = 0;
  for (const std::string& original : originals) {
    for (int trial = 0; trial < 300; ++trial) {
      std::string damaged = original;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        // Keep the magic bytes so the codec itself is exercised.
        const std::size_t at = 8 + rng() % (damaged.size() - 8);
        damaged[at] = static_cast<char>(rng() & 0xff);
      }
      if (rng() % 4 == 0) damaged.resize(8 + rng() % (damaged.size() - 8));
      try {
        const Image image = decode_image(damaged);
        EXPECT_EQ(image.rgb.size(), static_cast<std::size_t>(image.width) * image.height * 3);
      } catch (const DataError&) {
        ++failures;
      }
    }
  }
  const std::string chatter = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(chatter, "");
  EXPECT_GT(failures, 100);
}

TEST(ImageTest, DecodesFileWrittenToDisk) {
  // The loaders read files into memory first; make sure bytes survive that path unchanged.
  shopclip::test_support::TempDir dir;
  const Image image = random_image(9, 5, 8);
  shopclip::test_support::write_file(dir.file("a.png"), encode_png(image));
  EXPECT_EQ(decode_image(shopclip::test_support::read_file(dir.file("a.png"))).rgb, image.rgb);
}

}  // namespace
}  // namespace shopclip::data
