#pragma once
// Bicubic resampling matching Pillow's Image.resize(size, Image.BICUBIC), which is what
// Chinese-CLIP's torchvision Resize((r, r), BICUBIC) runs on PIL images: separable cubic
// convolution with a = -0.5, the filter support widened by the scale factor when shrinking
// (antialiasing), pixel centres at +0.5, results rounded and clamped to [0, 255].

#include "data/image.h"

namespace shopclip::data {

// Resizes straight to (out_width, out_height) without preserving aspect ratio (no crop), as
// Chinese-CLIP does. Throws std::invalid_argument for empty input or non-positive sizes.
Image resize_bicubic(const Image& image, int out_width, int out_height);

}  // namespace shopclip::data
