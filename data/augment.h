#pragma once
// Image augmentations for training, on uint8 RGB pixels before normalisation (the loader's
// ImageAugmentation interface, data/loader.h): random resized crop, horizontal flip, rotation,
// colour jitter, grayscale, and two policies, RandAugment and the AutoAugment ImageNet policy.
// Every random choice comes from the sample's own generator, so a view is regenerated from
// (seed, epoch, step, position) alone.
//
// The operations follow the conventions of PIL and torchvision, which the published recipes run
// on, in what they compute (e.g. PIL's grayscale weights, its contrast and sharpness enhancers,
// its equalize), not bit for bit in how they round.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/rng.h"

namespace shopclip::data {

enum class Interpolation { kBilinear, kBicubic };

using Fill = std::array<std::uint8_t, 3>;  // RGB of pixels that come from outside the image

// Deterministic pixel operations, in place on one image (the building blocks).
namespace pixel_ops {

void horizontal_flip(ImageView image);
// The box (x, y, width, height) of the image, resized back to the image's size.
void crop_resize(ImageView image, int x, int y, int width, int height, Interpolation interpolation);
// Output pixel centre (x, y) takes the input at (a x + b y + c, d x + e y + f) (PIL's AFFINE data,
// an output-to-input map); samples outside the image take `fill`.
void affine(ImageView image, const std::array<double, 6>& map, const Fill& fill,
            Interpolation interpolation);
// Counter-clockwise by `degrees` about the centre, same size (PIL's rotate without expand).
void rotate(ImageView image, double degrees, const Fill& fill, Interpolation interpolation);
void shear_x(ImageView image, double factor, const Fill& fill, Interpolation interpolation);
void shear_y(ImageView image, double factor, const Fill& fill, Interpolation interpolation);
void translate(ImageView image, double dx, double dy, const Fill& fill,
               Interpolation interpolation);  // content moves by (-dx, -dy) as PIL's
// PIL's ImageEnhance: factor 1 leaves the image as it is, 0 gives the degenerate image (black,
// the mean grey, the grayscale image, the smoothed image); other factors interpolate or
// extrapolate, clamped to [0, 255].
void brightness(ImageView image, double factor);
void contrast(ImageView image, double factor);
void saturation(ImageView image, double factor);  // PIL's Color
void sharpness(ImageView image, double factor);
// Hue rotated by `shift` turns (in [-0.5, 0.5]) in HSV, as torchvision's adjust_hue.
void hue(ImageView image, double shift);
// Luma L = 0.299 R + 0.587 G + 0.114 B into all three channels.
void grayscale(ImageView image);
void autocontrast(ImageView image);  // each channel stretched to [0, 255]
void equalize(ImageView image);      // each channel's histogram equalised (PIL's algorithm)
void invert(ImageView image);
void solarize(ImageView image, int threshold);  // values >= threshold inverted
void posterize(ImageView image, int bits);      // keep the top `bits` bits of each value

}  // namespace pixel_ops

// torchvision RandomResizedCrop: a box of area share in [scale_min, scale_max] and aspect ratio
// (log-uniform) in [ratio_min, ratio_max], up to 10 tries, else the centre crop of the nearest
// allowed ratio; resized back to the image size.
class RandomResizedCrop : public ImageAugmentation {
 public:
  RandomResizedCrop(double scale_min, double scale_max, double ratio_min, double ratio_max,
                    Interpolation interpolation);
  void apply(ImageView image, Rng& rng) const override;

 private:
  double scale_min_, scale_max_, ratio_min_, ratio_max_;
  Interpolation interpolation_;
};

class RandomHorizontalFlip : public ImageAugmentation {
 public:
  explicit RandomHorizontalFlip(double probability) : probability_(probability) {}
  void apply(ImageView image, Rng& rng) const override;

 private:
  double probability_;
};

// A rotation by a uniform angle in [-degrees, degrees].
class RandomRotation : public ImageAugmentation {
 public:
  RandomRotation(double degrees, const Fill& fill, Interpolation interpolation)
      : degrees_(degrees), fill_(fill), interpolation_(interpolation) {}
  void apply(ImageView image, Rng& rng) const override;

 private:
  double degrees_;
  Fill fill_;
  Interpolation interpolation_;
};

// torchvision ColorJitter: brightness, contrast and saturation factors uniform in
// [max(0, 1 - x), 1 + x], hue shift uniform in [-hue, hue], applied in a random order; 0 = off.
class ColorJitter : public ImageAugmentation {
 public:
  ColorJitter(double brightness, double contrast, double saturation, double hue);
  void apply(ImageView image, Rng& rng) const override;

 private:
  double brightness_, contrast_, saturation_, hue_;
};

class RandomGrayscale : public ImageAugmentation {
 public:
  explicit RandomGrayscale(double probability) : probability_(probability) {}
  void apply(ImageView image, Rng& rng) const override;

 private:
  double probability_;
};

// One policy operation at a magnitude level in [0, 10], with the ranges of the AutoAugment paper
// (Cubuk et al., 2019): rotate up to 30 degrees, shear up to 0.3, translate up to 150/331 of the
// side, the four enhancers' factors (see PolicyOp), posterize 4 to 8 bits, solarize threshold 0 to
// 256. Signed operations (rotate, shear, translate) take a random sign.
enum class PolicyOp {
  kIdentity,
  kAutoContrast,
  kEqualize,
  kInvert,
  kRotate,
  kPosterize,
  kSolarize,
  kColor,
  kContrast,
  kBrightness,
  kSharpness,
  kShearX,
  kShearY,
  kTranslateX,
  kTranslateY,
};

struct PolicyStep {
  PolicyOp op;
  double probability;
  int level;  // 0..10
};

// The AutoAugment ImageNet policy ("original"): 25 sub-policies of two steps. AutoAugment picks
// one sub-policy per image and applies each step with its probability. Magnitudes as published:
// enhancer factor 0.1 + 1.8 level / 10, posterize 4 + floor(4 level / 10) bits, solarize threshold
// 256 level / 10.
const std::vector<std::array<PolicyStep, 2>>& autoaugment_imagenet_policy();

class AutoAugment : public ImageAugmentation {
 public:
  AutoAugment(const Fill& fill, Interpolation interpolation)
      : fill_(fill), interpolation_(interpolation) {}
  void apply(ImageView image, Rng& rng) const override;

 private:
  Fill fill_;
  Interpolation interpolation_;
};

// RandAugment (Cubuk et al., 2020): `ops` operations drawn uniformly (with replacement) from the
// 15 PolicyOps, each applied at magnitude `magnitude` (0..10): enhancer factor 1 +- 0.9 m / 10
// (random sign), posterize 8 - floor(4 m / 10) bits, solarize threshold 256 - 256 m / 10, the
// geometric ones as in AutoAugment; larger m is always stronger.
class RandAugment : public ImageAugmentation {
 public:
  RandAugment(int ops, int magnitude, const Fill& fill, Interpolation interpolation);
  void apply(ImageView image, Rng& rng) const override;

 private:
  int ops_, magnitude_;
  Fill fill_;
  Interpolation interpolation_;
};

// Applies one policy operation as AutoAugment does (`randaugment` false) or RandAugment does.
void apply_policy_op(ImageView image, PolicyOp op, int level, bool randaugment, const Fill& fill,
                     Interpolation interpolation, Rng& rng);

// What to build (train.image_augment / train.augment in the config).
struct ImageAugmentOptions {
  double crop_scale_min = 0;  // 0 = no random resized crop
  double crop_scale_max = 1;
  double crop_ratio_min = 3.0 / 4.0, crop_ratio_max = 4.0 / 3.0;
  double hflip = 0;  // probability
  double rotate_degrees = 0;
  double brightness = 0, contrast = 0, saturation = 0, hue = 0;
  double grayscale = 0;         // probability
  std::string policy = "none";  // none | randaugment | autoaugment
  int randaugment_ops = 2;
  int randaugment_magnitude = 9;
  Interpolation interpolation = Interpolation::kBicubic;
  Fill fill = {123, 117, 104};  // the CLIP mean x 255, rounded (what timm fills with)
};

// Chinese-CLIP's `--use-augment` transform (timm create_transform, training): random resized
// crop with scale (0.9, 1.0) and the default ratios, bicubic, horizontal flip 0.5, the original
// AutoAugment policy, no colour jitter, no random erasing.
ImageAugmentOptions chinese_clip_augment_options();

// The augmentations in the order torchvision/timm apply them: crop, flip, rotation, policy,
// colour jitter, grayscale. Throws std::invalid_argument naming the bad option.
std::vector<std::shared_ptr<const ImageAugmentation>> make_image_augmentations(
    const ImageAugmentOptions& options);

}  // namespace shopclip::data
