#pragma once
// Image codecs (JPEG through libjpeg-turbo, PNG through libpng) and the in-memory image type.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shopclip::data {

// An 8-bit RGB image in row-major HWC order: pixel (x, y) channel c is rgb[(y * width + x) * 3 +
// c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  // size width * height * 3
};

enum class ImageFormat { kUnknown, kJpeg, kPng };

// Header facts read without decoding the pixels (for checks and statistics).
struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;
  int height = 0;
};

// Reads the format and size from the file header. Throws DataError when the bytes are neither a
// JPEG nor a PNG header or the header is unreadable.
ImageInfo probe_image(std::string_view file_bytes);

// Decodes a JPEG or PNG file (format detected from its magic bytes) to RGB. Grayscale, palette,
// alpha and 16-bit inputs are converted (alpha dropped). Throws DataError with a short reason:
// "not a JPEG or PNG image", "truncated JPEG", "corrupt JPEG: ...", "truncated PNG", ...
// A JPEG that libjpeg-turbo can only decode with a warning (premature end of data, corrupt
// segment) counts as corrupt: silently grey-padded pixels must not reach training.
Image decode_image(std::string_view file_bytes);

// Encodes RGB to a baseline JPEG (4:2:0 chroma subsampling), quality in [1, 100].
std::string encode_jpeg(const Image& image, int quality);

// Encodes RGB to an 8-bit PNG.
std::string encode_png(const Image& image);

}  // namespace shopclip::data
