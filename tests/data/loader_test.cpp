#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "data/augment.h"
#include "data/resize.h"
#include "data/shards.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::TempDir;

constexpr int kRes = 8;
constexpr int kImages = 20;
constexpr int kPairs = 30;
constexpr int kTokens = 4;

// Pixel values that depend on the image id and position, so images are told apart and a shift
// is visible.
std::uint8_t pixel_value(std::int64_t id, int y, int x, int c) {
  return static_cast<std::uint8_t>((id * 41 + y * 13 + x * 5 + c * 71) % 256);
}

// A prepared split of kImages images (ids 500.., two shards) written with ShardWriter.
struct Store {
  TempDir dir;
  PrepParams params;
  std::unique_ptr<ImageStore> store;

  Store() {
    params.resolution = kRes;
    Manifest manifest;
    manifest.split = "train";
    manifest.params = params;
    manifest.source_file = "train_imgs.tsv";
    for (int shard = 0; shard < 2; ++shard) {
      const std::string name = shard == 0 ? "shard-00000.h5" : "shard-00001.h5";
      const int first = shard == 0 ? 0 : 12, end = shard == 0 ? 12 : kImages;
      ShardWriter writer(dir.file(name), params, 4);
      std::vector<std::int64_t> ids;
      std::vector<std::uint8_t> pixels;
      for (int i = first; i < end; ++i) {
        ids.push_back(500 + i);
        for (int y = 0; y < kRes; ++y)
          for (int x = 0; x < kRes; ++x)
            for (int c = 0; c < 3; ++c)
              pixels.push_back(pixel_value(500 + i, y, x, c));
      }
      writer.append(ids, pixels.data());
      manifest.shards.push_back({name, writer.finish()});
      manifest.num_images += end - first;
    }
    write_manifest(dir.path(), manifest);
    store = std::make_unique<ImageStore>(dir.path(), params);
  }
};

// Query q's text is "wq", a word of its own in the vocabulary (id kFirstWord + q), so a token row
// [CLS] id [SEP] [PAD] names its query.
constexpr std::int64_t kFirstWord = 5;

const Tokenizer& test_tokenizer() {
  static const Tokenizer tokenizer = [] {
    std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int q = 0; q < kPairs; ++q)
      tokens.push_back("w" + std::to_string(q));
    return Tokenizer(Vocab::from_tokens(tokens));
  }();
  return tokenizer;
}

std::vector<std::string> query_texts() {
  std::vector<std::string> texts;
  for (int q = 0; q < kPairs; ++q)
    texts.push_back("w" + std::to_string(q));
  return texts;
}

// The tokens the loader must produce for query q.
torch::Tensor expected_tokens(std::int64_t q) {
  return torch::tensor({std::int64_t{2}, kFirstWord + q, std::int64_t{3}, std::int64_t{0}});
}

// Every query has one image; the images repeat, the (query, image) pairs do not.
std::vector<TrainPair> all_pairs() {
  std::vector<TrainPair> pairs;
  for (int q = 0; q < kPairs; ++q)
    pairs.push_back({q, (q * 7) % kImages});
  return pairs;
}

LoaderInputs inputs_for(const ImageStore& store, std::vector<TrainPair> pairs = all_pairs()) {
  LoaderInputs inputs;
  inputs.images = &store;
  inputs.pairs = std::move(pairs);
  inputs.query_texts = query_texts();
  inputs.tokenizer = &test_tokenizer();
  inputs.context_length = kTokens;
  return inputs;
}

LoaderOptions options_for(int local_batch, int rank, int world_size, std::uint64_t seed,
                          int max_shift) {
  LoaderOptions options;
  options.local_batch = local_batch;
  options.rank = rank;
  options.world_size = world_size;
  options.seed = seed;
  if (max_shift > 0)
    options.image_augmentations.push_back(std::make_shared<RandomShift>(max_shift));
  return options;
}

// The loader of most tests: every pair, one random shift of up to max_shift pixels.
PairLoader make_loader(const ImageStore& store, int local_batch, int rank, int world_size,
                       std::uint64_t seed, int max_shift) {
  return PairLoader(inputs_for(store), options_for(local_batch, rank, world_size, seed, max_shift));
}

std::vector<std::pair<std::int64_t, std::int64_t>> as_pairs(const std::vector<TrainPair>& pairs) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& p : pairs)
    out.emplace_back(p.query, p.image_row);
  return out;
}

// ---- normalize_pixels -------------------------------------------------------------------------

TEST(NormalizePixelsTest, MatchesClipMeanAndStdByHand) {
  auto pixels = torch::zeros({2, 2, 3, 3}, torch::kUInt8);
  for (int b = 0; b < 2; ++b)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < 3; ++c)
          pixels[b][y][x][c] = (b * 97 + y * 51 + x * 29 + c * 83) % 256;
  pixels[0][0][0] = 0;
  pixels[0][0][1] = 255;
  const auto out = normalize_pixels(pixels);
  ASSERT_EQ(out.scalar_type(), torch::kFloat32);
  ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 3, 2, 3}));
  const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
  const double std[3] = {0.26862954, 0.26130258, 0.27577711};
  for (int b = 0; b < 2; ++b) {
    for (int y = 0; y < 2; ++y) {
      for (int x = 0; x < 3; ++x) {
        for (int c = 0; c < 3; ++c) {
          const double v = pixels[b][y][x][c].item<int>();
          const double expected = (v / 255.0 - mean[c]) / std[c];
          EXPECT_NEAR(out[b][c][y][x].item<float>(), expected, 1e-5)
              << b << " " << y << " " << x << " " << c;
        }
      }
    }
  }
  // Black and white ends of the red channel.
  EXPECT_NEAR(out[0][0][0][0].item<float>(), -0.48145466 / 0.26862954, 1e-5);
  EXPECT_NEAR(out[0][0][0][1].item<float>(), (1 - 0.48145466) / 0.26862954, 1e-5);
  // Channels-last in memory: the pixels' own order, as the CNN tower computes.
  EXPECT_TRUE(out.is_contiguous(torch::MemoryFormat::ChannelsLast));
}

TEST(NormalizePixelsTest, RejectsOtherLayouts) {
  EXPECT_THROW(normalize_pixels(torch::zeros({1, 2, 2, 3}, torch::kFloat32)), c10::Error);
  EXPECT_THROW(normalize_pixels(torch::zeros({1, 3, 2, 2}, torch::kUInt8)), c10::Error);
  EXPECT_THROW(normalize_pixels(torch::zeros({2, 2, 3}, torch::kUInt8)), c10::Error);
}

// ---- random_shift -----------------------------------------------------------------------------

constexpr int kSide = 16;

// Channel 0 is unique per pixel (y * 16 + x), so a shift can be read off any pixel.
torch::Tensor unique_image(int batch = 1) {
  auto image = torch::empty({batch, kSide, kSide, 3}, torch::kUInt8);
  auto* p = image.data_ptr<std::uint8_t>();
  for (int b = 0; b < batch; ++b)
    for (int y = 0; y < kSide; ++y)
      for (int x = 0; x < kSide; ++x) {
        p[((b * kSide + y) * kSide + x) * 3 + 0] = static_cast<std::uint8_t>(y * kSide + x);
        p[((b * kSide + y) * kSide + x) * 3 + 1] = static_cast<std::uint8_t>(y + b);
        p[((b * kSide + y) * kSide + x) * 3 + 2] = static_cast<std::uint8_t>(x);
      }
  return image;
}

// Reads (dx, dy) from the centre pixel and checks the whole image is the source moved by it,
// with edge pixels repeated where the shift uncovers the border.
std::pair<int, int> check_shift(const torch::Tensor& source, const torch::Tensor& shifted, int b,
                                int max_shift) {
  const auto* src = source.data_ptr<std::uint8_t>() + b * kSide * kSide * 3;
  const auto* out = shifted.data_ptr<std::uint8_t>() + b * kSide * kSide * 3;
  const int centre = kSide / 2;
  const int value = out[(centre * kSide + centre) * 3];
  const int dx = centre - value % kSide, dy = centre - value / kSide;
  EXPECT_LE(std::abs(dx), max_shift);
  EXPECT_LE(std::abs(dy), max_shift);
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const int sy = std::clamp(y - dy, 0, kSide - 1), sx = std::clamp(x - dx, 0, kSide - 1);
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(out[(y * kSide + x) * 3 + c], src[(sy * kSide + sx) * 3 + c])
            << "b " << b << " y " << y << " x " << x << " c " << c;
      }
    }
  }
  return {dx, dy};
}

TEST(RandomShiftTest, MaxShiftZeroIsIdentity) {
  const auto source = unique_image(2);
  auto pixels = source.clone();
  random_shift(pixels, 0, {1, 2});
  EXPECT_TRUE(torch::equal(pixels, source));
}

TEST(RandomShiftTest, SeededShiftIsDeterministicAndMovesContentWithEdgeReplication) {
  const auto source = unique_image();
  std::set<std::pair<int, int>> shifts;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    auto a = source.clone(), b = source.clone();
    random_shift(a, 3, {seed});
    random_shift(b, 3, {seed});
    EXPECT_TRUE(torch::equal(a, b)) << "seed " << seed;
    shifts.insert(check_shift(source, a, 0, 3));
  }
  // 40 seeds over 49 possible shifts: content really moves, in both directions and axes.
  EXPECT_GT(shifts.size(), 10u);
  bool left = false, right = false, up = false, down = false;
  for (auto [dx, dy] : shifts) {
    left |= dx<0, right |= dx> 0, up |= dy<0, down |= dy> 0;
  }
  EXPECT_TRUE(left && right && up && down);
}

TEST(RandomShiftTest, EachImageFollowsOnlyItsOwnSeed) {
  // Per-image seeds: an image's shift does not depend on its batch neighbours, which is what
  // makes a split global batch equal to the unsplit one.
  const auto source = unique_image(3);
  auto batch = source.clone();
  random_shift(batch, 2, {5, 6, 7});
  for (int b = 0; b < 3; ++b) {
    auto alone = source.narrow(0, b, 1).clone();
    random_shift(alone, 2, {static_cast<std::uint64_t>(5 + b)});
    EXPECT_TRUE(torch::equal(alone, batch.narrow(0, b, 1))) << b;
    check_shift(source, batch, b, 2);
  }
  auto wrong = source.clone();
  EXPECT_THROW(random_shift(wrong, 2, {1, 2}), c10::Error);  // one seed per image
}

// ---- PairLoader -------------------------------------------------------------------------------

TEST(PairLoaderTest, AnEpochCoversDistinctPairsAndDropsThePartialBatch) {
  Store s;
  PairLoader loader = make_loader(*s.store, 4, 0, 1, 17, 0);
  EXPECT_EQ(loader.num_pairs(), kPairs);
  ASSERT_EQ(loader.steps_per_epoch(), kPairs / 4);  // 7 full batches; 2 pairs left over
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::set<std::pair<std::int64_t, std::int64_t>> seen;
    for (std::int64_t step = 0; step < loader.steps_per_epoch(); ++step) {
      const auto pairs = loader.pairs_for(epoch, step);
      ASSERT_EQ(pairs.size(), 4u);
      for (const auto& pair : as_pairs(pairs)) {
        EXPECT_TRUE(seen.insert(pair).second)
            << "epoch " << epoch << " repeats pair (" << pair.first << ", " << pair.second << ")";
      }
    }
    EXPECT_EQ(seen.size(), 28u);
    // Every seen pair is a real training pair.
    for (const auto& [query, row] : seen)
      EXPECT_EQ(row, (query * 7) % kImages);
  }
  EXPECT_THROW(loader.pairs_for(0, loader.steps_per_epoch()), std::out_of_range);
  EXPECT_THROW(loader.pairs_for(0, -1), std::out_of_range);
}

TEST(PairLoaderTest, SameEpochAndStepGiveTheSameBatchAndEpochsDiffer) {
  Store s;
  PairLoader loader = make_loader(*s.store, 4, 0, 1, 17, 2);
  const Batch first = loader.load(2, 3);
  const auto epoch0 = as_pairs(loader.pairs_for(0, 0));
  const auto epoch1 = as_pairs(loader.pairs_for(1, 0));
  EXPECT_NE(epoch0, epoch1);
  // Back to (2, 3) after other epochs, and from a fresh loader (a resumed run).
  const Batch again = loader.load(2, 3);
  PairLoader resumed = make_loader(*s.store, 4, 0, 1, 17, 2);
  const Batch fresh = resumed.load(2, 3);
  for (const Batch* other : {&again, &fresh}) {
    EXPECT_EQ(as_pairs(other->pairs), as_pairs(first.pairs));
    EXPECT_TRUE(torch::equal(other->images, first.images));
    EXPECT_TRUE(torch::equal(other->tokens, first.tokens));
  }
  EXPECT_EQ(as_pairs(resumed.pairs_for(0, 0)), epoch0);
  // Another seed shuffles differently.
  PairLoader reseeded = make_loader(*s.store, 4, 0, 1, 18, 2);
  EXPECT_NE(as_pairs(reseeded.pairs_for(0, 0)), epoch0);
}

TEST(PairLoaderTest, BatchHoldsThePairsImagesAndTokens) {
  Store s;
  PairLoader loader = make_loader(*s.store, 4, 0, 1, 3, 0);
  const Batch batch = loader.load(0, 1);
  ASSERT_EQ(batch.images.sizes(), (std::vector<std::int64_t>{4, 3, kRes, kRes}));
  ASSERT_EQ(batch.tokens.sizes(), (std::vector<std::int64_t>{4, kTokens}));
  std::vector<std::int64_t> rows;
  for (std::size_t b = 0; b < batch.pairs.size(); ++b) {
    rows.push_back(batch.pairs[b].image_row);
    EXPECT_TRUE(torch::equal(batch.tokens[b], expected_tokens(batch.pairs[b].query)));
  }
  // Without augmentation the images are exactly the store's rows, normalised.
  EXPECT_TRUE(torch::equal(batch.images, normalize_pixels(s.store->read(rows))));
  // The store row holds the image written for it.
  const auto raw = s.store->read({rows[0]});
  EXPECT_EQ(raw[0][2][3][1].item<int>(), pixel_value(s.store->ids()[rows[0]], 2, 3, 1));
}

TEST(PairLoaderTest, TwoRanksConcatenateToTheGlobalAndSingleRankBatch) {
  Store s;
  const int local = 4;
  PairLoader rank0 = make_loader(*s.store, local, 0, 2, 99, 2);
  PairLoader rank1 = make_loader(*s.store, local, 1, 2, 99, 2);
  PairLoader single = make_loader(*s.store, 2 * local, 0, 1, 99, 2);
  ASSERT_EQ(rank0.steps_per_epoch(), kPairs / 8);
  ASSERT_EQ(rank1.steps_per_epoch(), single.steps_per_epoch());
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<std::pair<std::int64_t, std::int64_t>> seen;
    for (std::int64_t step = 0; step < rank0.steps_per_epoch(); ++step) {
      auto joined = as_pairs(rank0.pairs_for(epoch, step));
      const auto second = as_pairs(rank1.pairs_for(epoch, step));
      joined.insert(joined.end(), second.begin(), second.end());
      EXPECT_EQ(joined, as_pairs(rank0.global_pairs_for(epoch, step)));
      EXPECT_EQ(joined, as_pairs(rank1.global_pairs_for(epoch, step)));
      EXPECT_EQ(joined, as_pairs(single.pairs_for(epoch, step)));
      for (const auto& pair : joined)
        EXPECT_TRUE(seen.insert(pair).second);  // the ranks never share a pair

      // Augmented batches too: the shift of a pair depends on its place in the global batch.
      const Batch b0 = rank0.load(epoch, step), b1 = rank1.load(epoch, step);
      const Batch whole = single.load(epoch, step);
      EXPECT_TRUE(torch::equal(torch::cat({b0.images, b1.images}), whole.images));
      EXPECT_TRUE(torch::equal(torch::cat({b0.tokens, b1.tokens}), whole.tokens));
    }
  }
}

TEST(PairLoaderTest, AugmentationChangesPixelsButNotPairs) {
  Store s;
  PairLoader plain = make_loader(*s.store, 8, 0, 1, 5, 0);
  PairLoader shifted = make_loader(*s.store, 8, 0, 1, 5, 3);
  const Batch a = plain.load(0, 0), b = shifted.load(0, 0);
  EXPECT_EQ(as_pairs(a.pairs), as_pairs(b.pairs));
  EXPECT_FALSE(torch::equal(a.images, b.images));
}

// A chain of random transforms (Chinese-CLIP's recipe) keeps every view a function of the seed and
// the row's place in the global batch: two ranks see what one process sees, a reload regenerates
// it, and another epoch draws other views.
TEST(PairLoaderTest, AugmentationChainsAreSplitInvariantAndRegenerable) {
  Store s;
  const auto chain = make_image_augmentations(chinese_clip_augment_options());
  auto make = [&](int local, int rank, int world) {
    LoaderOptions options = options_for(local, rank, world, 21, 0);
    options.image_augmentations = chain;
    return PairLoader(inputs_for(*s.store), options);
  };
  PairLoader rank0 = make(4, 0, 2), rank1 = make(4, 1, 2), single = make(8, 0, 1);
  PairLoader plain = make_loader(*s.store, 8, 0, 1, 21, 0);
  const Batch whole = single.load(0, 1);
  EXPECT_TRUE(
      torch::equal(torch::cat({rank0.load(0, 1).images, rank1.load(0, 1).images}), whole.images));
  EXPECT_TRUE(torch::equal(single.load(0, 1).images, whole.images));
  EXPECT_FALSE(torch::equal(plain.load(0, 1).images, whole.images));
  // The same pairs in another epoch's order get other views: compare a pair's image across epochs.
  const Batch later = single.load(1, 1);
  EXPECT_FALSE(torch::equal(later.images, whole.images));
  // Three loader threads give the same views as one.
  LoaderOptions threaded = options_for(8, 0, 1, 21, 0);
  threaded.image_augmentations = chain;
  threaded.threads = 3;
  EXPECT_TRUE(
      torch::equal(PairLoader(inputs_for(*s.store), threaded).load(0, 1).images, whole.images));
}

// Stored views (distill.views): each row shows view v of its image, v drawn per position; the
// pixels are augmented_views' for (image, v) whatever the epoch, step or rank, so a teacher cache
// can hold them; the views are used, and MixGen is refused beside them.
TEST(PairLoaderTest, StoredViewsAreTheSamePixelsWheneverDrawn) {
  Store s;
  const auto chain = make_image_augmentations(chinese_clip_augment_options());
  auto make = [&](int local, int rank, int world) {
    LoaderOptions options = options_for(local, rank, world, 21, 0);
    options.image_augmentations = chain;
    options.image_views = 3;
    return PairLoader(inputs_for(*s.store), options);
  };
  PairLoader single = make(8, 0, 1), rank1 = make(4, 1, 2);
  std::set<int> seen;
  int checked = 0;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (std::int64_t step = 0; step < single.steps_per_epoch(); ++step) {
      const Batch batch = single.load(epoch, step);
      ASSERT_EQ(batch.views.size(), 8u);
      for (std::size_t i = 0; i < batch.pairs.size(); ++i) {
        const int view = batch.views[i];
        ASSERT_GE(view, 0);
        ASSERT_LT(view, 3);
        seen.insert(view);
        const auto expected = normalize_pixels(
            augmented_views(*s.store, {batch.pairs[i].image_row}, {view}, 21, chain, 1));
        EXPECT_TRUE(torch::equal(batch.images[static_cast<std::int64_t>(i)], expected[0]))
            << "epoch " << epoch << " step " << step << " row " << i;
        ++checked;
      }
    }
  }
  EXPECT_EQ(seen.size(), 3u);  // every view is drawn
  EXPECT_GT(checked, 40);
  // Rank 1 of two holds the second half of the single process's batch, views included.
  const Batch whole = single.load(1, 2), half = rank1.load(1, 2);
  EXPECT_TRUE(torch::equal(half.images, whole.images.narrow(0, 4, 4)));
  EXPECT_EQ(half.views, std::vector<int>(whole.views.begin() + 4, whole.views.end()));
  // Views of one image differ from each other (the augmentation is drawn per view).
  const auto views = augmented_views(*s.store, {3, 3, 3}, {0, 1, 2}, 21, chain, 1);
  EXPECT_FALSE(torch::equal(views[0], views[1]) && torch::equal(views[1], views[2]));
  // Without views the batch carries none.
  EXPECT_TRUE(make_loader(*s.store, 8, 0, 1, 21, 0).load(0, 0).views.empty());
  LoaderOptions mixed = options_for(8, 0, 1, 21, 0);
  mixed.image_views = 2;
  mixed.mixgen = 0.25;
  EXPECT_THROW(PairLoader(inputs_for(*s.store), mixed), std::invalid_argument);
}

TEST(PairLoaderTest, RejectsBadArguments) {
  Store s;
  auto expect_throw = [&](LoaderInputs inputs, LoaderOptions options, auto exception_type) {
    try {
      PairLoader loader(std::move(inputs), std::move(options));
      ADD_FAILURE() << "no exception";
    } catch (const decltype(exception_type)&) {
    }
  };
  expect_throw(inputs_for(*s.store), options_for(0, 0, 1, 1, 0), std::invalid_argument(""));
  expect_throw(inputs_for(*s.store), options_for(4, 2, 2, 1, 0), std::invalid_argument(""));
  expect_throw(inputs_for(*s.store, {{0, kImages}}), options_for(4, 0, 1, 1, 0),
               std::out_of_range(""));
  expect_throw(inputs_for(*s.store, {{kPairs, 0}}), options_for(4, 0, 1, 1, 0),
               std::out_of_range(""));
  auto no_tokenizer = inputs_for(*s.store);
  no_tokenizer.tokenizer = nullptr;
  expect_throw(std::move(no_tokenizer), options_for(4, 0, 1, 1, 0), std::invalid_argument(""));
}

// A sampler with one step that keeps pairs 0..7 in order, so positions are known.
struct InOrder : BatchSampler {
  std::int64_t steps_per_epoch() const override { return 1; }
  std::vector<std::int64_t> global_batch(int, std::int64_t) const override {
    return {0, 1, 2, 3, 4, 5, 6, 7};
  }
};

// The relevance mask of the global batch, built by the loader: pairs that share a query or an
// image, or that the ground truth marks relevant, are never each other's negatives.
TEST(PairLoaderTest, RelevanceMaskCoversSharedIdsAndGroundTruthOnEveryRank) {
  Store s;
  // Rows 0 and 1 share image row 0, rows 2 and 3 image row 1, rows 0 and 7 query 0.
  std::vector<TrainPair> pairs = {{0, 0}, {1, 0}, {2, 1}, {3, 1}, {4, 2}, {5, 3}, {6, 4}, {0, 5}};
  auto inputs = inputs_for(*s.store, pairs);
  inputs.relevant.insert(4 * s.store->size() + 3);  // query 4 is also right for image row 3
  auto options = options_for(4, 0, 2, 1, 0);
  options.sampler = std::make_shared<InOrder>();
  auto options1 = options;
  options1.rank = 1;
  PairLoader rank0(inputs, options), rank1(inputs, options1);
  const Batch b0 = rank0.load(0, 0), b1 = rank1.load(0, 0);
  ASSERT_EQ(b0.relevant.sizes(), (std::vector<std::int64_t>{8, 8}));
  EXPECT_TRUE(torch::equal(b0.relevant, b1.relevant));
  auto expected = torch::zeros({8, 8}, torch::kBool);
  for (auto [i, j] :
       std::vector<std::pair<int, int>>{{0, 1},
                                        {1, 0},
                                        {2, 3},
                                        {3, 2},  // same image
                                        {0, 7},
                                        {7, 0},     // same query
                                        {5, 4}}) {  // image of row 5 (row 3) is relevant to query 4
    expected[i][j] = true;
  }
  EXPECT_TRUE(torch::equal(b0.relevant, expected)) << b0.relevant;
  EXPECT_EQ(b1.pair_ids, (std::vector<std::int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(as_pairs(b1.pairs), as_pairs({pairs[4], pairs[5], pairs[6], pairs[7]}));
}

// MixGen on the relevance test's in-order batch (B = 8, mixgen 0.25: M = 2): rows 0 and 1 become
// mixes with rows 2 and 3. Pixels are the rounded mean of the sources, the text is both queries,
// relevance is the union of the sources' plus the partner; 4 ranks of 2 rows (row 0's partner on
// rank 1) give what one process gives.
TEST(PairLoaderTest, MixGenMixesTheFirstRowsWithTheirPartnersOnAnyRank) {
  Store s;
  std::vector<TrainPair> pairs = {{0, 0}, {1, 0}, {2, 1}, {3, 1}, {4, 2}, {5, 3}, {6, 4}, {0, 5}};
  auto options = options_for(8, 0, 1, 1, 0);
  options.sampler = std::make_shared<InOrder>();
  const Batch plain = PairLoader(inputs_for(*s.store, pairs), options).load(0, 0);
  options.mixgen = 0.25;
  const Batch mixed = PairLoader(inputs_for(*s.store, pairs), options).load(0, 0);

  const auto raw = s.store->read({0, 0, 1, 1, 4});  // image rows of positions 0..3 and 6
  for (int p = 0; p < 2; ++p) {
    const auto mean = ((raw[p].to(torch::kFloat32) + raw[p + 2].to(torch::kFloat32)) / 2)
                          .round()
                          .to(torch::kUInt8)
                          .unsqueeze(0);
    EXPECT_TRUE(torch::allclose(mixed.images[p], normalize_pixels(mean)[0])) << p;
    // Tokens: [CLS] w_p w_{p+2} [SEP]: the text is both queries (context 4 keeps both words).
    EXPECT_EQ(mixed.tokens[p][1].item<std::int64_t>(), kFirstWord + pairs[p].query);
    EXPECT_EQ(mixed.tokens[p][2].item<std::int64_t>(), kFirstWord + pairs[p + 2].query);
  }
  EXPECT_TRUE(torch::equal(mixed.images.narrow(0, 2, 6), plain.images.narrow(0, 2, 6)));
  EXPECT_TRUE(torch::equal(mixed.tokens.narrow(0, 2, 6), plain.tokens.narrow(0, 2, 6)));

  // Row 0 = sources 0 and 2: relevant to 1 (0's image), 3 (2's image), 7 (0's query) and 2.
  auto expected = plain.relevant.clone();
  for (int p = 0; p < 2; ++p) {
    expected[p] = expected[p] | plain.relevant[p + 2];
    expected.select(1, p) |= expected.select(1, p + 2);
  }
  for (int p = 0; p < 2; ++p) {
    expected[p][p] = false;
    expected[p][p + 2] = true;
    expected[p + 2][p] = true;
  }
  EXPECT_TRUE(torch::equal(mixed.relevant, expected)) << mixed.relevant;
  EXPECT_TRUE(mixed.relevant[0][1].item<bool>() && mixed.relevant[0][3].item<bool>() &&
              mixed.relevant[0][7].item<bool>() && mixed.relevant[1][0].item<bool>());
  EXPECT_FALSE(mixed.relevant[0][4].item<bool>());

  std::vector<torch::Tensor> images, tokens;
  for (int rank = 0; rank < 4; ++rank) {
    auto ranked = options_for(2, rank, 4, 1, 0);
    ranked.sampler = options.sampler;
    ranked.mixgen = 0.25;
    const Batch part = PairLoader(inputs_for(*s.store, pairs), ranked).load(0, 0);
    images.push_back(part.images);
    tokens.push_back(part.tokens);
    EXPECT_TRUE(torch::equal(part.relevant, mixed.relevant)) << rank;
  }
  EXPECT_TRUE(torch::equal(torch::cat(images), mixed.images));
  EXPECT_TRUE(torch::equal(torch::cat(tokens), mixed.tokens));

  options.mixgen = 0.6;
  EXPECT_THROW(PairLoader(inputs_for(*s.store, pairs), options), std::invalid_argument);
}

// prep.resolution > model resolution: the loader resizes each (augmented) stored image to
// output_resolution with Pillow's bicubic, so the batch has the model's side.
TEST(PairLoaderTest, LargerStoredImagesAreResizedToTheOutputSide) {
  Store s;
  auto options = options_for(4, 0, 1, 3, 0);
  const Batch stored = PairLoader(inputs_for(*s.store), options).load(0, 0);
  options.output_resolution = kRes / 2;
  const Batch small = PairLoader(inputs_for(*s.store), options).load(0, 0);
  ASSERT_EQ(small.images.sizes(), (std::vector<std::int64_t>{4, 3, kRes / 2, kRes / 2}));
  std::vector<std::int64_t> rows;
  for (const auto& pair : small.pairs)
    rows.push_back(pair.image_row);
  const auto raw = s.store->read(rows);
  for (int b = 0; b < 4; ++b) {
    Image image;
    image.width = image.height = kRes;
    const auto* from = raw[b].contiguous().data_ptr<std::uint8_t>();
    image.rgb.assign(from, from + kRes * kRes * 3);
    const Image expected = resize_bicubic(image, kRes / 2, kRes / 2);
    const auto expected_pixels = torch::from_blob(const_cast<std::uint8_t*>(expected.rgb.data()),
                                                  {1, kRes / 2, kRes / 2, 3}, torch::kUInt8)
                                     .clone();
    EXPECT_TRUE(torch::equal(small.images[b], normalize_pixels(expected_pixels)[0])) << b;
  }
  options.output_resolution = kRes;  // the store's own side: nothing to do
  EXPECT_TRUE(
      torch::equal(PairLoader(inputs_for(*s.store), options).load(0, 0).images, stored.images));
}

// A text augmentation runs per sample before tokenization, deterministically and independently
// of how the global batch is split; with none, tokens are the plain queries'.
TEST(PairLoaderTest, TextAugmentationIsPerSampleDeterministicAndSplitInvariant) {
  Store s;
  // Replaces the query by a random other query's word: visible in the tokens.
  struct RandomWord : TextAugmentation {
    std::string apply(std::string_view, Rng& rng) const override {
      return "w" + std::to_string(rng.below(kPairs));
    }
  };
  auto with_text = [&](int local, int rank, int world) {
    auto options = options_for(local, rank, world, 21, 0);
    options.text_augmentations.push_back(std::make_shared<RandomWord>());
    return PairLoader(inputs_for(*s.store), options);
  };
  PairLoader single = with_text(8, 0, 1), rank0 = with_text(4, 0, 2), rank1 = with_text(4, 1, 2);
  PairLoader plain = make_loader(*s.store, 8, 0, 1, 21, 0);
  const Batch whole = single.load(1, 2), a = rank0.load(1, 2), b = rank1.load(1, 2);
  EXPECT_TRUE(torch::equal(torch::cat({a.tokens, b.tokens}), whole.tokens));
  EXPECT_TRUE(torch::equal(whole.tokens, single.load(1, 2).tokens));
  const Batch untouched = plain.load(1, 2);
  EXPECT_EQ(as_pairs(untouched.pairs), as_pairs(whole.pairs));
  EXPECT_FALSE(torch::equal(untouched.tokens, whole.tokens));
  for (std::size_t row = 0; row < untouched.pairs.size(); ++row)
    EXPECT_TRUE(torch::equal(untouched.tokens[row], expected_tokens(untouched.pairs[row].query)));
  // Every augmented row is still a well-formed query of the vocabulary.
  EXPECT_TRUE(whole.tokens.select(1, 1).ge(kFirstWord).all().item<bool>());
}

TEST(PairLoaderTest, ExtensionsAddPerRowTensors) {
  Store s;
  struct QueryIds : BatchExtension {
    void extend(Batch& batch) const override {
      std::vector<std::int64_t> ids;
      for (const auto& pair : batch.pairs)
        ids.push_back(pair.query);
      batch.extras["query_ids"] = torch::tensor(ids);
    }
  };
  auto options = options_for(4, 0, 1, 3, 0);
  options.extensions.push_back(std::make_shared<QueryIds>());
  PairLoader loader(inputs_for(*s.store), options);
  const Batch batch = loader.load(0, 2);
  ASSERT_EQ(batch.extras.count("query_ids"), 1u);
  for (std::size_t row = 0; row < batch.pairs.size(); ++row)
    EXPECT_EQ(batch.extras.at("query_ids")[row].item<std::int64_t>(), batch.pairs[row].query);
}

// ---- Prefetcher -------------------------------------------------------------------------------

TEST(PrefetcherTest, ReturnsTheSameBatchAsLoad) {
  Store s;
  PairLoader loader = make_loader(*s.store, 4, 0, 1, 8, 2);
  Prefetcher prefetcher(loader);
  EXPECT_THROW(prefetcher.get(), std::logic_error);
  for (std::int64_t step = 0; step < loader.steps_per_epoch(); ++step) {
    prefetcher.request(1, step);
    const Batch fetched = prefetcher.get();
    const Batch direct = loader.load(1, step);
    EXPECT_EQ(as_pairs(fetched.pairs), as_pairs(direct.pairs));
    EXPECT_TRUE(torch::equal(fetched.images, direct.images));
    EXPECT_TRUE(torch::equal(fetched.tokens, direct.tokens));
  }
  // A new request replaces one not yet taken.
  prefetcher.request(0, 0);
  prefetcher.request(0, 5);
  EXPECT_EQ(as_pairs(prefetcher.get().pairs), as_pairs(loader.pairs_for(0, 5)));
  EXPECT_THROW(prefetcher.get(), std::logic_error);  // taken already
  prefetcher.request(0, 2);
  prefetcher.reset();
  EXPECT_THROW(prefetcher.get(), std::logic_error);
}

}  // namespace
}  // namespace shopclip::data
