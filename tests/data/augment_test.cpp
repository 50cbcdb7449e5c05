// Image augmentations: each pixel operation against values worked out by hand (PIL's formulas),
// the geometric ones against exact permutations, and the random transforms and policies for
// determinism by seed, their parameters and their refusals.

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "data/augment.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

// An owned HWC image for the tests.
struct Pixels {
  int width, height;
  std::vector<std::uint8_t> rgb;
  Pixels(int w, int h) : width(w), height(h), rgb(static_cast<std::size_t>(w) * h * 3) {}
  ImageView view() { return {rgb.data(), height, width}; }
  std::uint8_t& at(int x, int y, int c) {
    return rgb[(static_cast<std::size_t>(y) * width + x) * 3 + c];
  }
};

// Every pixel different: value = (x * 31 + y * 7 + c * 50) mod 256.
Pixels pattern(int w, int h) {
  Pixels p(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        p.at(x, y, c) = static_cast<std::uint8_t>((x * 31 + y * 7 + c * 50) % 256);
  return p;
}

Pixels solid(int w, int h, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  Pixels p(w, h);
  for (int i = 0; i < w * h; ++i) {
    p.rgb[i * 3] = r;
    p.rgb[i * 3 + 1] = g;
    p.rgb[i * 3 + 2] = b;
  }
  return p;
}

const Fill kFill = {123, 117, 104};

TEST(PixelOps, HorizontalFlipMirrorsEachRow) {
  Pixels image = pattern(5, 3);
  Pixels original = image;
  pixel_ops::horizontal_flip(image.view());
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(image.at(x, y, c), original.at(4 - x, y, c));
}

TEST(PixelOps, RotationByZeroIsIdentityAndByNinetyPermutesPixels) {
  for (const auto interpolation : {Interpolation::kBilinear, Interpolation::kBicubic}) {
    Pixels image = pattern(7, 7);
    Pixels original = image;
    pixel_ops::rotate(image.view(), 0, kFill, interpolation);
    EXPECT_EQ(image.rgb, original.rgb);
    // Counter-clockwise on screen: the output's top row is the input's right column.
    pixel_ops::rotate(image.view(), 90, kFill, interpolation);
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 7; ++x)
        for (int c = 0; c < 3; ++c)
          ASSERT_EQ(image.at(x, y, c), original.at(6 - y, x, c)) << x << "," << y << "," << c;
  }
}

TEST(PixelOps, TranslationMovesContentAndFillsTheGap) {
  Pixels image = pattern(6, 4);
  Pixels original = image;
  pixel_ops::translate(image.view(), 2, 0, kFill, Interpolation::kBilinear);  // content moves left
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 6; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int expected = x + 2 < 6 ? original.at(x + 2, y, c) : kFill[c];
        ASSERT_EQ(image.at(x, y, c), expected) << x << "," << y;
      }
    }
  }
}

TEST(PixelOps, ShearKeepsTheTopRowAndShiftsLowerRows) {
  Pixels image = pattern(8, 4);
  Pixels original = image;
  // Output centre (x + 0.5, y + 0.5) reads input x + 0.5 + (y + 0.5): row y shifts by y + 0.5,
  // so with a factor of 2 every row reads whole pixels: x + 2y + 1.
  pixel_ops::shear_x(image.view(), 2.0, kFill, Interpolation::kBilinear);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x)
      for (int c = 0; c < 3; ++c) {
        const int from = x + 2 * y + 1;
        ASSERT_EQ(image.at(x, y, c), from < 8 ? original.at(from, y, c) : kFill[c]);
      }
}

TEST(PixelOps, CropResizeOfTheWholeImageOrOfAFlatBoxIsExact) {
  for (const auto interpolation : {Interpolation::kBilinear, Interpolation::kBicubic}) {
    Pixels image = pattern(6, 6);
    const Pixels original = image;
    pixel_ops::crop_resize(image.view(), 0, 0, 6, 6, interpolation);
    EXPECT_EQ(image.rgb, original.rgb);
    Pixels flat = solid(8, 8, 10, 20, 30);
    flat.at(0, 0, 0) = 255;  // outside the box below
    pixel_ops::crop_resize(flat.view(), 2, 2, 4, 4, interpolation);
    for (int i = 0; i < 64; ++i) {
      ASSERT_EQ(flat.rgb[i * 3], 10);
      ASSERT_EQ(flat.rgb[i * 3 + 2], 30);
    }
    EXPECT_THROW(pixel_ops::crop_resize(flat.view(), 5, 0, 4, 4, interpolation),
                 std::invalid_argument);
  }
}

TEST(PixelOps, GrayscaleUsesPilLuma) {
  Pixels image = solid(2, 1, 255, 0, 0);
  image.at(1, 0, 0) = 10;
  image.at(1, 0, 1) = 200;
  image.at(1, 0, 2) = 30;
  pixel_ops::grayscale(image.view());
  // (19595 R + 38470 G + 7471 B + 32768) >> 16
  EXPECT_EQ(image.at(0, 0, 0), 76);
  EXPECT_EQ(image.at(0, 0, 2), 76);
  EXPECT_EQ(image.at(1, 0, 1), (19595 * 10 + 38470 * 200 + 7471 * 30 + 32768) >> 16);
}

TEST(PixelOps, EnhancersInterpolateTowardsTheirDegenerateImage) {
  Pixels image = solid(2, 2, 100, 50, 200);
  pixel_ops::brightness(image.view(), 1.0);
  EXPECT_EQ(image.at(0, 0, 0), 100);
  pixel_ops::brightness(image.view(), 1.5);
  EXPECT_EQ(image.at(1, 1, 0), 150);
  EXPECT_EQ(image.at(1, 1, 2), 255);  // 300, clamped
  pixel_ops::brightness(image.view(), 0.0);
  EXPECT_EQ(image.at(1, 0, 1), 0);

  // Contrast 0: every value becomes the rounded mean luma; saturation 0: each pixel's luma.
  Pixels two = solid(2, 1, 0, 0, 0);
  two.at(1, 0, 0) = two.at(1, 0, 1) = two.at(1, 0, 2) = 200;  // lumas 0 and 200: mean 100
  pixel_ops::contrast(two.view(), 0.0);
  for (const auto value : two.rgb)
    EXPECT_EQ(value, 100);
  Pixels red = solid(1, 1, 255, 0, 0);
  pixel_ops::saturation(red.view(), 0.0);
  EXPECT_EQ(red.rgb, (std::vector<std::uint8_t>{76, 76, 76}));
  // Sharpness 0 on a one-pixel spike: the interior is the 3x3 smoothing (centre 5, over 13).
  Pixels spike = solid(3, 3, 0, 0, 0);
  spike.at(1, 1, 0) = 130;
  pixel_ops::sharpness(spike.view(), 0.0);
  EXPECT_EQ(spike.at(1, 1, 0), 50);  // 130 * 5 / 13
  EXPECT_EQ(spike.at(0, 0, 0), 0);   // the border keeps its value
}

TEST(PixelOps, HueTurnsColoursAroundTheWheel) {
  Pixels red = solid(1, 1, 255, 0, 0);
  pixel_ops::hue(red.view(), 0.5);
  EXPECT_EQ(red.rgb, (std::vector<std::uint8_t>{0, 255, 255}));
  Pixels other = solid(1, 1, 255, 0, 0);
  pixel_ops::hue(other.view(), 1.0 / 3.0);
  EXPECT_EQ(other.rgb, (std::vector<std::uint8_t>{0, 255, 0}));
  Pixels gray = solid(1, 1, 90, 90, 90);
  pixel_ops::hue(gray.view(), 0.25);
  EXPECT_EQ(gray.rgb, (std::vector<std::uint8_t>{90, 90, 90}));
  EXPECT_THROW(pixel_ops::hue(gray.view(), 0.6), std::invalid_argument);
}

TEST(PixelOps, LookupOperationsFollowTheirDefinitions) {
  Pixels image = solid(1, 1, 200, 100, 0xAB);
  pixel_ops::solarize(image.view(), 128);
  EXPECT_EQ(image.rgb, (std::vector<std::uint8_t>{55, 100, 255 - 0xAB}));
  Pixels bits = solid(1, 1, 0xAB, 0xFF, 0x0F);
  pixel_ops::posterize(bits.view(), 4);
  EXPECT_EQ(bits.rgb, (std::vector<std::uint8_t>{0xA0, 0xF0, 0x00}));
  pixel_ops::invert(bits.view());
  EXPECT_EQ(bits.rgb, (std::vector<std::uint8_t>{0x5F, 0x0F, 0xFF}));

  Pixels range = solid(3, 1, 50, 50, 50);
  range.at(1, 0, 0) = 100;
  range.at(2, 0, 0) = 150;
  pixel_ops::autocontrast(range.view());
  EXPECT_EQ(range.at(0, 0, 0), 0);
  EXPECT_EQ(range.at(1, 0, 0), 127);  // 50 * 2.55, truncated
  EXPECT_EQ(range.at(2, 0, 0), 255);
  EXPECT_EQ(range.at(0, 0, 1), 50) << "a flat channel is left alone";

  // Equalize: half the pixels 10, half 20. step = (512 - 256) / 255 = 1; 10 -> 0, 20 -> 255.
  Pixels halves = solid(16, 32, 10, 10, 10);
  for (int i = 0; i < 256; ++i)
    halves.rgb[i * 3] = 20;
  pixel_ops::equalize(halves.view());
  EXPECT_EQ(halves.rgb[0], 255);
  EXPECT_EQ(halves.rgb[256 * 3], 0);
  EXPECT_EQ(halves.rgb[1], 10) << "a channel with one value is left alone";
}

// ---- random transforms --------------------------------------------------------------------------

// Applies `augmentation` to a copy of the pattern with generator seed `seed`.
std::vector<std::uint8_t> augmented(const ImageAugmentation& augmentation, std::uint64_t seed) {
  Pixels image = pattern(32, 32);
  Rng rng(seed);
  augmentation.apply(image.view(), rng);
  return image.rgb;
}

TEST(RandomTransforms, EachIsDeterministicInItsSeedAndVariesAcrossSeeds) {
  const std::vector<std::shared_ptr<const ImageAugmentation>> all = {
      std::make_shared<RandomResizedCrop>(0.3, 1.0, 0.75, 4.0 / 3.0, Interpolation::kBicubic),
      std::make_shared<RandomHorizontalFlip>(0.5),
      std::make_shared<RandomRotation>(30, kFill, Interpolation::kBilinear),
      std::make_shared<ColorJitter>(0.4, 0.4, 0.4, 0.1),
      std::make_shared<RandomGrayscale>(0.5),
      std::make_shared<AutoAugment>(kFill, Interpolation::kBicubic),
      std::make_shared<RandAugment>(2, 9, kFill, Interpolation::kBicubic)};
  const auto original = pattern(32, 32).rgb;
  for (std::size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(augmented(*all[i], 7), augmented(*all[i], 7));
    int changed = 0, distinct = 0;
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
      const auto view = augmented(*all[i], seed);
      changed += view != original;
      distinct += view != augmented(*all[i], seed + 100);
    }
    EXPECT_GT(changed, 0) << "never changed the image";
    EXPECT_GT(distinct, 0) << "the same view for every seed";
  }
}

TEST(RandomTransforms, FlipAndGrayscaleHappenAtTheirProbability) {
  const RandomHorizontalFlip flip(0.3);
  const RandomGrayscale gray(0.3);
  const auto original = pattern(32, 32).rgb;
  int flips = 0, grays = 0;
  for (std::uint64_t seed = 0; seed < 1000; ++seed) {
    flips += augmented(flip, seed) != original;
    grays += augmented(gray, seed) != original;
  }
  EXPECT_NEAR(flips, 300, 50);
  EXPECT_NEAR(grays, 300, 50);
  EXPECT_EQ(augmented(RandomHorizontalFlip(0.0), 1), original);
}

TEST(RandomTransforms, FullScaleSquareCropKeepsTheImage) {
  const RandomResizedCrop whole(1.0, 1.0, 1.0, 1.0, Interpolation::kBicubic);
  EXPECT_EQ(augmented(whole, 3), pattern(32, 32).rgb);
  EXPECT_THROW(RandomResizedCrop(0.0, 1.0, 0.75, 1.3, Interpolation::kBicubic),
               std::invalid_argument);
  EXPECT_THROW(RandomResizedCrop(0.5, 0.4, 0.75, 1.3, Interpolation::kBicubic),
               std::invalid_argument);
}

TEST(Policies, TheAutoAugmentTableIsTheImageNetPolicy) {
  const auto& policy = autoaugment_imagenet_policy();
  ASSERT_EQ(policy.size(), 25u);
  for (const auto& sub_policy : policy) {
    for (const PolicyStep& step : sub_policy) {
      EXPECT_GE(step.probability, 0.0);
      EXPECT_LE(step.probability, 1.0);
      EXPECT_GE(step.level, 0);
      EXPECT_LE(step.level, 10);
    }
  }
  EXPECT_EQ(policy[0][0].op, PolicyOp::kPosterize);  // (Posterize 0.4 8, Rotate 0.6 9)
  EXPECT_EQ(policy[0][1].op, PolicyOp::kRotate);
  EXPECT_EQ(policy[0][1].level, 9);
}

TEST(Policies, MagnitudesFollowTheirRanges) {
  Rng rng(1);
  // AutoAugment posterize at level 10 keeps 8 bits (nothing changes); RandAugment at 10 keeps 4.
  Pixels a = solid(1, 1, 0xAB, 0xAB, 0xAB);
  apply_policy_op(a.view(), PolicyOp::kPosterize, 10, false, kFill, Interpolation::kBicubic, rng);
  EXPECT_EQ(a.rgb[0], 0xAB);
  apply_policy_op(a.view(), PolicyOp::kPosterize, 10, true, kFill, Interpolation::kBicubic, rng);
  EXPECT_EQ(a.rgb[0], 0xA0);
  // Solarize: AutoAugment level 5 = threshold 128; RandAugment level 0 = threshold 256 (none).
  Pixels s = solid(1, 1, 130, 120, 0);
  apply_policy_op(s.view(), PolicyOp::kSolarize, 0, true, kFill, Interpolation::kBicubic, rng);
  EXPECT_EQ(s.rgb[0], 130);
  apply_policy_op(s.view(), PolicyOp::kSolarize, 5, false, kFill, Interpolation::kBicubic, rng);
  EXPECT_EQ(s.rgb, (std::vector<std::uint8_t>{125, 120, 0}));
  // AutoAugment's enhancers: factor 0.1 + 1.8 level / 10, level 5 = 1.0 leaves the image.
  Pixels e = pattern(8, 8);
  const auto before = e.rgb;
  apply_policy_op(e.view(), PolicyOp::kBrightness, 5, false, kFill, Interpolation::kBicubic, rng);
  EXPECT_EQ(e.rgb, before);
  EXPECT_THROW(RandAugment(0, 5, kFill, Interpolation::kBicubic), std::invalid_argument);
  EXPECT_THROW(RandAugment(2, 11, kFill, Interpolation::kBicubic), std::invalid_argument);
}

TEST(Recipes, ChineseClipIsCropFlipAndAutoAugment) {
  const auto options = chinese_clip_augment_options();
  EXPECT_DOUBLE_EQ(options.crop_scale_min, 0.9);
  EXPECT_DOUBLE_EQ(options.crop_scale_max, 1.0);
  EXPECT_DOUBLE_EQ(options.hflip, 0.5);
  EXPECT_EQ(options.policy, "autoaugment");
  EXPECT_EQ(options.interpolation, Interpolation::kBicubic);
  const auto chain = make_image_augmentations(options);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_NE(dynamic_cast<const RandomResizedCrop*>(chain[0].get()), nullptr);
  EXPECT_NE(dynamic_cast<const RandomHorizontalFlip*>(chain[1].get()), nullptr);
  EXPECT_NE(dynamic_cast<const AutoAugment*>(chain[2].get()), nullptr);
  EXPECT_TRUE(make_image_augmentations(ImageAugmentOptions{}).empty());

  ImageAugmentOptions bad;
  bad.policy = "trivialaugment";
  try {
    make_image_augmentations(bad);
    ADD_FAILURE() << "an unknown policy was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(test_support::Contains(e.what(), "trivialaugment")) << e.what();
  }
}

}  // namespace
}  // namespace shopclip::data
