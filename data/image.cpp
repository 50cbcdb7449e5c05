#include "data/image.h"

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <png.h>
#include <turbojpeg.h>

#include "data/error.h"

namespace shopclip::data {
namespace {

// A corrupt header can claim any size; refuse before allocating gigabytes for it. 2^27 pixels
// (e.g. 11585 x 11585) is far beyond any product photo.
constexpr std::uint64_t kMaxPixels = std::uint64_t{1} << 27;

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

bool is_jpeg(std::string_view bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xff &&
         static_cast<unsigned char>(bytes[1]) == 0xd8 &&
         static_cast<unsigned char>(bytes[2]) == 0xff;
}

bool is_png(std::string_view bytes) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSignature, 8) == 0;
}

const unsigned char* as_bytes(std::string_view bytes) {
  return reinterpret_cast<const unsigned char*>(bytes.data());
}

void check_size(int width, int height) {
  if (width <= 0 || height <= 0 ||
      static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height) > kMaxPixels) {
    throw DataError("image too large or empty: " + std::to_string(width) + "x" +
                    std::to_string(height));
  }
}

void check_image_argument(const Image& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<std::size_t>(image.width) * image.height * 3) {
    throw std::invalid_argument("encode: image must be non-empty with rgb.size() == w * h * 3");
  }
}

// ---- JPEG (TurboJPEG) ------------------------------------------------------------------------

// Creating a TurboJPEG instance allocates the whole libjpeg state; a data loader decodes
// hundreds of thousands of images, so each thread keeps its own pair (handles are not
// thread-safe, so they cannot be shared).
class TurboJpegHandles {
 public:
  TurboJpegHandles() = default;
  ~TurboJpegHandles() {
    if (decompressor_ != nullptr) tjDestroy(decompressor_);
    if (compressor_ != nullptr) tjDestroy(compressor_);
  }
  TurboJpegHandles(const TurboJpegHandles&) = delete;
  TurboJpegHandles& operator=(const TurboJpegHandles&) = delete;

  tjhandle decompressor() {
    if (decompressor_ == nullptr) decompressor_ = tjInitDecompress();
    if (decompressor_ == nullptr) throw std::runtime_error("tjInitDecompress failed");
    return decompressor_;
  }
  // Destroys the decompressor (after a failure left it unusable); decompressor() makes a new one.
  void discard_decompressor() {
    if (decompressor_ != nullptr) tjDestroy(decompressor_);
    decompressor_ = nullptr;
  }
  tjhandle compressor() {
    if (compressor_ == nullptr) compressor_ = tjInitCompress();
    if (compressor_ == nullptr) throw std::runtime_error("tjInitCompress failed");
    return compressor_;
  }

 private:
  tjhandle decompressor_ = nullptr;
  tjhandle compressor_ = nullptr;
};

TurboJpegHandles& jpeg_handles() {
  thread_local TurboJpegHandles handles;
  return handles;
}

// Walks the JPEG marker structure (skipping segment payloads, which may hold an EXIF thumbnail
// with its own EOI, and entropy-coded data) and says whether the stream ends with an EOI marker
// inside the buffer. Used only to label a failure: libjpeg reports a short file as
// "Premature end of JPEG file" only when it runs dry while decoding; a file cut inside the
// headers fails with whatever the next parse step complains about.
bool jpeg_reaches_eoi(std::string_view bytes) {
  const unsigned char* p = as_bytes(bytes);
  const std::size_t n = bytes.size();
  std::size_t i = 2;  // after SOI
  while (true) {
    // Junk between segments is tolerated (as libjpeg does), then any 0xff fill bytes.
    while (i < n && p[i] != 0xff)
      ++i;
    while (i < n && p[i] == 0xff)
      ++i;
    if (i >= n) return false;
    const unsigned char marker = p[i++];
    if (marker == 0xd9) return true;
    // Markers without a payload: TEM, RSTn, SOI, and a stuffed zero met outside a scan.
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) continue;
    if (n - i < 2) return false;
    const std::size_t length = std::size_t{p[i]} << 8 | p[i + 1];
    if (length < 2) return true;  // a broken length is corruption, not truncation
    if (n - i < length) return false;
    i += length;
    if (marker != 0xda) continue;
    // Entropy-coded data after SOS runs to the next marker other than a stuffed 0xff00 or RSTn.
    while (true) {
      const void* found = std::memchr(p + i, 0xff, n - i);
      if (found == nullptr) return false;
      i = static_cast<std::size_t>(static_cast<const unsigned char*>(found) - p);
      if (i + 1 >= n) return false;
      const unsigned char next = p[i + 1];
      if (next == 0x00 || (next >= 0xd0 && next <= 0xd7)) {
        i += 2;
      } else if (next == 0xff) {
        i += 1;
      } else {
        break;
      }
    }
  }
}

// libjpeg's memory source pads a short buffer with a fake EOI and reports the warning
// "Premature end of JPEG file"; a cut inside the headers shows up as other errors instead, so
// the marker structure decides too.
[[noreturn]] void throw_jpeg_failure(std::string_view bytes, const std::string& message) {
  if (message.find("Premature end") != std::string::npos || !jpeg_reaches_eoi(bytes)) {
    throw DataError("truncated JPEG");
  }
  throw DataError("corrupt JPEG: " + message);
}

[[noreturn]] void throw_jpeg_handle_error(std::string_view bytes, tjhandle handle) {
  const std::string message = tjGetErrorStr2(handle);
  // TurboJPEG 2.1 returns from a failed call without aborting its libjpeg decompressor, which
  // stays mid-stream: every later call on the handle then fails, even on valid files ("Bogus
  // Huffman table definition"). So a handle that failed is dropped; the next call makes a new one.
  jpeg_handles().discard_decompressor();
  throw_jpeg_failure(bytes, message);
}

struct JpegHeader {
  int width = 0;
  int height = 0;
  int colorspace = 0;
};

JpegHeader read_jpeg_header(tjhandle handle, std::string_view bytes) {
  JpegHeader header;
  int subsampling = 0;
  if (tjDecompressHeader3(handle, as_bytes(bytes), static_cast<unsigned long>(bytes.size()),
                          &header.width, &header.height, &subsampling, &header.colorspace) != 0) {
    throw_jpeg_handle_error(bytes, handle);
  }
  // A stream holding only tables (or cut before its frame header) "succeeds" with no size.
  if (header.width < 1 || header.height < 1) throw_jpeg_failure(bytes, "no image in the stream");
  return header;
}

// Pillow reads 4-component JPEGs as Adobe-style inverted CMYK and converts with
// R = (255 - K) - (255 - K) * C / 255 (rounded); the same here keeps pixels identical to the
// Python pipeline. Stored (inverted) values c', k' give C = 255 - c' and 255 - K = k'.
void cmyk_to_rgb(const std::vector<std::uint8_t>& cmyk, std::vector<std::uint8_t>& rgb) {
  const std::size_t pixels = cmyk.size() / 4;
  for (std::size_t i = 0; i < pixels; ++i) {
    const int not_k = cmyk[i * 4 + 3];
    for (int c = 0; c < 3; ++c) {
      const int ink = 255 - cmyk[i * 4 + c];
      const int product = ink * not_k + 128;
      const int scaled = ((product >> 8) + product) >> 8;  // round(ink * not_k / 255)
      rgb[i * 3 + c] = static_cast<std::uint8_t>(not_k - scaled);
    }
  }
}

Image decode_jpeg(std::string_view bytes) {
  tjhandle handle = jpeg_handles().decompressor();
  const JpegHeader header = read_jpeg_header(handle, bytes);
  check_size(header.width, header.height);

  Image image;
  image.width = header.width;
  image.height = header.height;
  image.rgb.resize(static_cast<std::size_t>(header.width) * header.height * 3);

  // TurboJPEG fails a call that met a libjpeg warning (tjGetErrorCode == TJERR_WARNING) even
  // though it filled the buffer, grey-padded; STOPONWARNING just stops at the first warning
  // instead of decoding the rest. LIMITSCANS guards against progressive files crafted to take
  // minutes.
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  const bool cmyk = header.colorspace == TJCS_CMYK || header.colorspace == TJCS_YCCK;
  if (cmyk) {
    // libjpeg cannot convert CMYK to RGB itself.
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(header.width) * header.height * 4);
    if (tjDecompress2(handle, as_bytes(bytes), static_cast<unsigned long>(bytes.size()), raw.data(),
                      header.width, 0, header.height, TJPF_CMYK, flags) != 0) {
      throw_jpeg_handle_error(bytes, handle);
    }
    cmyk_to_rgb(raw, image.rgb);
  } else {
    // Grayscale sources are expanded to RGB by libjpeg.
    if (tjDecompress2(handle, as_bytes(bytes), static_cast<unsigned long>(bytes.size()),
                      image.rgb.data(), header.width, 0, header.height, TJPF_RGB, flags) != 0) {
      throw_jpeg_handle_error(bytes, handle);
    }
  }
  return image;
}

// ---- PNG (libpng) ----------------------------------------------------------------------------
// libpng reports errors by longjmp. Everything that must survive the jump (the image buffer,
// the error text) lives in the caller's frame, and no object with a destructor is created
// between setjmp and the libpng calls, so the jump skips no C++ cleanup.

struct PngContext {
  std::string_view input;
  std::size_t position = 0;
  bool truncated = false;
  std::string* output = nullptr;  // encoding only
  char message[256] = {};         // fixed buffer: the error handler must not allocate
};

void png_on_error(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(context->message, sizeof(context->message), "%s", message);
  png_longjmp(png, 1);
}

// Warnings (unknown chunks, bad ancillary CRCs, ...) change no pixels; keep them off stderr.
void png_on_warning(png_structp, png_const_charp) {}

void png_read_from_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* context = static_cast<PngContext*>(png_get_io_ptr(png));
  if (context->input.size() - context->position < length) {
    context->truncated = true;
    png_error(png, "unexpected end of data");
  }
  std::memcpy(out, context->input.data() + context->position, length);
  context->position += length;
}

void png_write_to_string(png_structp png, png_bytep data, png_size_t length) {
  auto* context = static_cast<PngContext*>(png_get_io_ptr(png));
  bool failed = false;
  try {
    context->output->append(reinterpret_cast<const char*>(data), length);
  } catch (...) {
    failed = true;  // exceptions must not unwind through libpng's C frames
  }
  if (failed) png_error(png, "out of memory");
}

void png_flush_nothing(png_structp) {}

// Sets up 8-bit RGB output and reads the header; the size goes to *width / *height.
// Returns false after a libpng error.
bool png_read_header(png_structp png, png_infop info, int* width, int* height) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // Pillow keeps the high byte of 16-bit RGB samples; stripping (not rounding) matches it.
  if (bit_depth == 16) png_set_strip_16(png);
  // Alpha (including palette/tRNS alpha expanded above) is dropped, not composited, as
  // Pillow's convert("RGB") does.
  png_set_strip_alpha(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
    png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *width = static_cast<int>(png_get_image_width(png, info));
  *height = static_cast<int>(png_get_image_height(png, info));
  return true;
}

// Reads all rows (any interlacing). Returns false after a libpng error.
bool png_read_pixels(png_structp png, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  return true;
}

// Reads the chunks after the image data up to IEND. Returns false after a libpng error.
bool png_read_trailer(png_structp png) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_end(png, nullptr);
  return true;
}

class PngReadStruct {
 public:
  explicit PngReadStruct(PngContext* context) {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, context, png_on_error, png_on_warning);
    if (png_ != nullptr) info_ = png_create_info_struct(png_);
    if (png_ == nullptr || info_ == nullptr) {
      png_destroy_read_struct(png_ != nullptr ? &png_ : nullptr, nullptr, nullptr);
      throw std::runtime_error("png_create_read_struct failed");
    }
    png_set_read_fn(png_, context, png_read_from_memory);
  }
  ~PngReadStruct() { png_destroy_read_struct(&png_, &info_, nullptr); }
  PngReadStruct(const PngReadStruct&) = delete;
  PngReadStruct& operator=(const PngReadStruct&) = delete;
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
};

[[noreturn]] void throw_png_error(const PngContext& context) {
  if (context.truncated) throw DataError("truncated PNG");
  throw DataError(std::string("corrupt PNG: ") + context.message);
}

Image decode_png(std::string_view bytes) {
  PngContext context;
  context.input = bytes;
  PngReadStruct reader(&context);
  int width = 0;
  int height = 0;
  if (!png_read_header(reader.png(), reader.info(), &width, &height)) throw_png_error(context);
  check_size(width, height);

  const std::size_t row_bytes = png_get_rowbytes(reader.png(), reader.info());
  const int channels = png_get_channels(reader.png(), reader.info());
  if (png_get_bit_depth(reader.png(), reader.info()) != 8 || (channels != 3 && channels != 4) ||
      row_bytes != static_cast<std::size_t>(width) * channels) {
    throw DataError("corrupt PNG: unsupported pixel layout");
  }

  Image image;
  image.width = width;
  image.height = height;
  // strip_alpha should always leave 3 channels; a 4-channel layout is still handled by dropping
  // the last channel afterwards rather than trusting that.
  std::vector<std::uint8_t> pixels(row_bytes * height);
  std::vector<png_bytep> rows(height);
  for (int y = 0; y < height; ++y)
    rows[y] = pixels.data() + row_bytes * y;
  if (!png_read_pixels(reader.png(), rows.data())) throw_png_error(context);
  // A file cut after the last image row (e.g. missing only IEND) still has every pixel; Pillow
  // accepts it, so it is accepted here too. Damage in the trailing chunks still fails.
  if (!png_read_trailer(reader.png()) && !context.truncated) throw_png_error(context);

  if (channels == 3) {
    image.rgb = std::move(pixels);
  } else {
    image.rgb.resize(static_cast<std::size_t>(width) * height * 3);
    const std::size_t count = static_cast<std::size_t>(width) * height;
    for (std::size_t i = 0; i < count; ++i) {
      std::memcpy(&image.rgb[i * 3], &pixels[i * 4], 3);
    }
  }
  return image;
}

ImageInfo probe_png(std::string_view bytes) {
  // Signature (8), IHDR length (4) and type (4), then width and height, big-endian.
  if (bytes.size() < 24 || std::memcmp(bytes.data() + 12, "IHDR", 4) != 0) {
    throw DataError("corrupt PNG: missing IHDR header");
  }
  auto read_u32 = [&](std::size_t offset) {
    const unsigned char* p = as_bytes(bytes) + offset;
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 |
           std::uint32_t{p[3]};
  };
  const std::uint32_t width = read_u32(16);
  const std::uint32_t height = read_u32(20);
  // The PNG spec limits dimensions to 2^31 - 1 and forbids zero.
  if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) {
    throw DataError("corrupt PNG: invalid size in IHDR");
  }
  ImageInfo info;
  info.format = ImageFormat::kPng;
  info.width = static_cast<int>(width);
  info.height = static_cast<int>(height);
  return info;
}

bool png_write_all(png_structp png, png_infop info, const Image& image, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width),
               static_cast<png_uint_32>(image.height), 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

ImageInfo probe_image(std::string_view file_bytes) {
  if (is_png(file_bytes)) return probe_png(file_bytes);
  if (is_jpeg(file_bytes)) {
    const JpegHeader header = read_jpeg_header(jpeg_handles().decompressor(), file_bytes);
    ImageInfo info;
    info.format = ImageFormat::kJpeg;
    info.width = header.width;
    info.height = header.height;
    return info;
  }
  throw DataError("not a JPEG or PNG image");
}

Image decode_image(std::string_view file_bytes) {
  if (is_jpeg(file_bytes)) return decode_jpeg(file_bytes);
  if (is_png(file_bytes)) return decode_png(file_bytes);
  throw DataError("not a JPEG or PNG image");
}

std::string encode_jpeg(const Image& image, int quality) {
  check_image_argument(image);
  if (quality < 1 || quality > 100) {
    throw std::invalid_argument("encode_jpeg: quality must be in [1, 100]");
  }
  tjhandle handle = jpeg_handles().compressor();
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (tjCompress2(handle, image.rgb.data(), image.width, 0, image.height, TJPF_RGB, &buffer, &size,
                  TJSAMP_420, quality, 0) != 0) {
    tjFree(buffer);
    throw std::runtime_error(std::string("encode_jpeg: ") + tjGetErrorStr2(handle));
  }
  std::string out(reinterpret_cast<const char*>(buffer), size);
  tjFree(buffer);
  return out;
}

std::string encode_png(const Image& image) {
  check_image_argument(image);
  std::string out;
  PngContext context;
  context.output = &out;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &context, png_on_error, png_on_warning);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (info == nullptr) {
    png_destroy_write_struct(png != nullptr ? &png : nullptr, nullptr);
    throw std::runtime_error("encode_png: png_create_write_struct failed");
  }
  png_set_write_fn(png, &context, png_write_to_string, png_flush_nothing);

  std::vector<png_bytep> rows(image.height);
  for (int y = 0; y < image.height; ++y) {
    // libpng's API is not const-correct; it only reads the rows.
    rows[y] =
        const_cast<png_bytep>(image.rgb.data() + static_cast<std::size_t>(y) * image.width * 3);
  }
  const bool ok = png_write_all(png, info, image, rows.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) throw std::runtime_error(std::string("encode_png: ") + context.message);
  return out;
}

}  // namespace shopclip::data
