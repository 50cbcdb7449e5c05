#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>
#include <torch/torch.h>

#include "data/parallel.h"
#include "data/resize.h"

namespace shopclip::data {
namespace {

// Keys of the per-sample generators; a new kind of randomness gets its own key so that adding
// it does not change the draws of the others.
constexpr std::uint64_t kShuffleKey = 0x5348554646ULL;  // "SHUFF"
constexpr std::uint64_t kTextKey = 0x54455854ULL;       // "TEXT"
constexpr std::uint64_t kViewKey = 0x56494557ULL;       // "VIEW": which view a row shows
constexpr std::uint64_t kImageViewKey = 0x494D56ULL;    // "IMV": the pixels of a view

// The step's key: one stream of sample generators per (epoch, step).
std::uint64_t step_key(int epoch, std::int64_t step) {
  return static_cast<std::uint64_t>(epoch) * 1000003ULL + static_cast<std::uint64_t>(step);
}

void shift_image(ImageView image, int dx, int dy, std::vector<std::uint8_t>& scratch) {
  const std::int64_t height = image.height, width = image.width;
  scratch.assign(image.pixels, image.pixels + height * width * 3);
  for (std::int64_t y = 0; y < height; ++y) {
    const std::int64_t sy = std::clamp<std::int64_t>(y - dy, 0, height - 1);
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t sx = std::clamp<std::int64_t>(x - dx, 0, width - 1);
      std::copy_n(&scratch[(sy * width + sx) * 3], 3, &image.pixels[(y * width + x) * 3]);
    }
  }
}

ImageView image_of(torch::Tensor& pixels, std::int64_t b) {
  const auto height = pixels.size(1), width = pixels.size(2);
  return {pixels.data_ptr<std::uint8_t>() + b * height * width * 3, static_cast<int>(height),
          static_cast<int>(width)};
}

}  // namespace

torch::Tensor normalize_pixels(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(3) == 3 && pixels.scalar_type() == torch::kUInt8,
              "normalize_pixels expects uint8 [B, H, W, 3], got ", pixels.sizes(), " ",
              pixels.scalar_type());
  auto mean = torch::tensor({kClipMean[0], kClipMean[1], kClipMean[2]}).view({1, 3, 1, 1});
  auto std = torch::tensor({kClipStd[0], kClipStd[1], kClipStd[2]}).view({1, 3, 1, 1});
  // The permuted view has channels-last strides and the conversion keeps them: one pass, no
  // reordering copy (contiguous() below only copies pixels that came in another layout).
  auto x = pixels.permute({0, 3, 1, 2})
               .to(torch::kFloat32)
               .contiguous(torch::MemoryFormat::ChannelsLast);
  return x.mul_(1.0f / 255.0f).sub_(mean).div_(std);
}

// ---- samplers ---------------------------------------------------------------------------------

ShuffledBatchSampler::ShuffledBatchSampler(std::int64_t num_pairs, std::int64_t global_batch,
                                           std::uint64_t seed)
    : num_pairs_(num_pairs), global_batch_(global_batch), seed_(seed) {
  if (global_batch <= 0) {
    throw std::invalid_argument(fmt::format("ShuffledBatchSampler: batch {}", global_batch));
  }
}

std::int64_t ShuffledBatchSampler::steps_per_epoch() const {
  return num_pairs_ / global_batch_;
}

std::shared_ptr<const std::vector<std::int64_t>> ShuffledBatchSampler::permutation(
    int epoch) const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cached_epoch_ != epoch || !cached_permutation_) {
    auto order = std::make_shared<std::vector<std::int64_t>>(num_pairs_);
    std::iota(order->begin(), order->end(), 0);
    Rng rng = Rng::derive(seed_, kShuffleKey, static_cast<std::uint64_t>(epoch));
    rng.shuffle(*order);
    cached_permutation_ = std::move(order);
    cached_epoch_ = epoch;
  }
  return cached_permutation_;
}

std::vector<std::int64_t> ShuffledBatchSampler::global_batch(int epoch, std::int64_t step) const {
  if (step < 0 || step >= steps_per_epoch()) {
    throw std::out_of_range(
        fmt::format("step {} outside the epoch's {} steps", step, steps_per_epoch()));
  }
  const auto order = permutation(epoch);
  return {order->begin() + step * global_batch_, order->begin() + (step + 1) * global_batch_};
}

HardNegativeBatchSampler::HardNegativeBatchSampler(std::vector<TrainPair> pairs,
                                                   std::int64_t global_batch, std::uint64_t seed,
                                                   double share)
    : pairs_(std::move(pairs)),
      global_batch_(global_batch),
      share_(share),
      shuffle_(static_cast<std::int64_t>(pairs_.size()), global_batch, seed) {
  if (share < 0 || share > 0.5) {
    throw std::invalid_argument(
        fmt::format("HardNegativeBatchSampler: share {} not in [0, 0.5]", share));
  }
  for (std::size_t id = 0; id < pairs_.size(); ++id)
    pairs_of_image_[pairs_[id].image_row].push_back(static_cast<std::int64_t>(id));
}

void HardNegativeBatchSampler::set_negatives(
    std::shared_ptr<const std::vector<std::vector<std::int64_t>>> negatives) {
  std::lock_guard<std::mutex> lock(mutex_);
  negatives_ = std::move(negatives);
  cached_plan_.reset();
  cached_epoch_ = -1;
}

std::shared_ptr<const HardNegativeBatchSampler::Plan> HardNegativeBatchSampler::plan(
    int epoch) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (cached_epoch_ == epoch && cached_plan_) return cached_plan_;
  const auto order = shuffle_.permutation(epoch);
  auto plan = std::make_shared<Plan>();
  const std::int64_t steps = shuffle_.steps_per_epoch();
  plan->batches.reserve(static_cast<std::size_t>(steps * global_batch_));
  std::vector<bool> used(pairs_.size(), false);
  std::size_t cursor = 0;
  const auto take_next =
      [&] {  // the shuffle's next unused pair; steps * B <= pairs: never runs out
        while (used[(*order)[cursor]])
          ++cursor;
        const std::int64_t id = (*order)[cursor++];
        used[id] = true;
        return id;
      };
  // The first unused pair (of another query) whose image is a mined negative of `query`; -1 if
  // none.
  const auto mined_for = [&](std::int64_t query) -> std::int64_t {
    if (!negatives_ || query >= static_cast<std::int64_t>(negatives_->size())) return -1;
    for (const auto image_row : (*negatives_)[query]) {
      const auto found = pairs_of_image_.find(image_row);
      if (found == pairs_of_image_.end()) continue;
      for (const auto id : found->second)
        if (!used[id] && pairs_[id].query != query) return id;
    }
    return -1;
  };
  const auto goal = static_cast<std::int64_t>(std::floor(share_ * global_batch_));
  for (std::int64_t step = 0; step < steps; ++step) {
    std::int64_t placed = 0, mined = 0;
    while (placed < global_batch_) {
      const std::int64_t anchor = take_next();
      plan->batches.push_back(anchor);
      ++placed;
      if (!negatives_ || mined >= goal || placed == global_batch_) continue;
      const std::int64_t negative = mined_for(pairs_[anchor].query);
      if (negative < 0) continue;  // this anchor has none left; the next may
      used[negative] = true;
      plan->batches.push_back(negative);
      ++placed;
      ++mined;
    }
    plan->mined += mined;
  }
  cached_plan_ = plan;
  cached_epoch_ = epoch;
  return cached_plan_;
}

std::vector<std::int64_t> HardNegativeBatchSampler::global_batch(int epoch,
                                                                 std::int64_t step) const {
  if (step < 0 || step >= steps_per_epoch()) {
    throw std::out_of_range(
        fmt::format("step {} outside the epoch's {} steps", step, steps_per_epoch()));
  }
  const auto batches = plan(epoch);
  const auto begin = batches->batches.begin() + step * global_batch_;
  return {begin, begin + global_batch_};
}

std::int64_t HardNegativeBatchSampler::mined_pairs(int epoch) const {
  return plan(epoch)->mined;
}

// ---- augmentation -----------------------------------------------------------------------------

RandomShift::RandomShift(int max_shift) : max_shift_(max_shift) {
  if (max_shift < 0) throw std::invalid_argument("RandomShift: max_shift must be >= 0");
}

void RandomShift::apply(ImageView image, Rng& rng) const {
  const int dx = rng.between(-max_shift_, max_shift_), dy = rng.between(-max_shift_, max_shift_);
  if (dx == 0 && dy == 0) return;
  thread_local std::vector<std::uint8_t> scratch;
  shift_image(image, dx, dy, scratch);
}

void random_shift(torch::Tensor& pixels, int max_shift, const std::vector<std::uint64_t>& seeds) {
  if (max_shift <= 0) return;
  TORCH_CHECK(pixels.is_contiguous() && pixels.scalar_type() == torch::kUInt8 && pixels.dim() == 4,
              "random_shift expects contiguous uint8 [B, H, W, 3]");
  TORCH_CHECK(static_cast<std::int64_t>(seeds.size()) == pixels.size(0),
              "random_shift: one seed per image");
  const RandomShift shift(max_shift);
  for (std::int64_t b = 0; b < pixels.size(0); ++b) {
    Rng rng(seeds[b]);
    shift.apply(image_of(pixels, b), rng);
  }
}

Rng image_view_rng(std::uint64_t seed, std::int64_t image_id, int view) {
  return Rng(Rng::derive(seed ^ kImageViewKey, static_cast<std::uint64_t>(image_id),
                         static_cast<std::uint64_t>(view))
                 .next());
}

torch::Tensor augmented_views(
    const ImageStore& images, const std::vector<std::int64_t>& rows, const std::vector<int>& views,
    std::uint64_t seed, const std::vector<std::shared_ptr<const ImageAugmentation>>& augmentations,
    int threads) {
  if (rows.size() != views.size()) {
    throw std::invalid_argument("augmented_views: one view per row");
  }
  auto pixels = images.read(rows);
  parallel_for(0, rows.size(), threads, [&](std::size_t i) {
    Rng rng = image_view_rng(seed, images.ids()[static_cast<std::size_t>(rows[i])], views[i]);
    for (const auto& augmentation : augmentations)
      augmentation->apply(image_of(pixels, static_cast<std::int64_t>(i)), rng);
  });
  return pixels;
}

// ---- loader -----------------------------------------------------------------------------------

PairLoader::PairLoader(LoaderInputs inputs, LoaderOptions options)
    : inputs_(std::move(inputs)), options_(std::move(options)) {
  if (options_.local_batch <= 0 || options_.world_size <= 0 || options_.rank < 0 ||
      options_.rank >= options_.world_size) {
    throw std::invalid_argument(fmt::format("PairLoader: batch {} rank {} world size {}",
                                            options_.local_batch, options_.rank,
                                            options_.world_size));
  }
  if (inputs_.images == nullptr || inputs_.tokenizer == nullptr || inputs_.context_length < 2) {
    throw std::invalid_argument("PairLoader: images, tokenizer and context_length >= 2 needed");
  }
  const auto queries = static_cast<std::int64_t>(inputs_.query_texts.size());
  for (const auto& pair : inputs_.pairs) {
    if (pair.query < 0 || pair.query >= queries || pair.image_row < 0 ||
        pair.image_row >= inputs_.images->size()) {
      throw std::out_of_range(
          fmt::format("PairLoader: pair ({}, {}) out of range", pair.query, pair.image_row));
    }
  }
  sampler_ = options_.sampler;
  if (!sampler_) {
    sampler_ = std::make_shared<ShuffledBatchSampler>(
        num_pairs(), static_cast<std::int64_t>(options_.local_batch) * options_.world_size,
        options_.seed);
  }
  if (options_.mixgen < 0 || options_.mixgen > 0.5 || options_.mixgen_lambda < 0 ||
      options_.mixgen_lambda > 1) {
    throw std::invalid_argument(
        fmt::format("PairLoader: mixgen {} must be in [0, 0.5] and its "
                    "lambda {} in [0, 1]",
                    options_.mixgen, options_.mixgen_lambda));
  }
  if (options_.image_views < 0 || (options_.image_views > 0 && options_.mixgen > 0)) {
    throw std::invalid_argument(
        fmt::format("PairLoader: image_views {} must be >= 0, and 0 with MixGen (a mixed image is "
                    "no stored view)",
                    options_.image_views));
  }
  // Without text augmentation a query always has the same tokens: tokenize each once.
  if (options_.text_augmentations.empty()) {
    query_tokens_ = inputs_.tokenizer->encode_batch(inputs_.query_texts, inputs_.context_length);
  }
}

std::vector<TrainPair> PairLoader::global_pairs_for(int epoch, std::int64_t step) const {
  std::vector<TrainPair> out;
  for (const auto id : sampler_->global_batch(epoch, step))
    out.push_back(inputs_.pairs[id]);
  return out;
}

std::vector<TrainPair> PairLoader::pairs_for(int epoch, std::int64_t step) const {
  auto global = global_pairs_for(epoch, step);
  const auto begin = static_cast<std::ptrdiff_t>(options_.rank) * options_.local_batch;
  return {global.begin() + begin, global.begin() + begin + options_.local_batch};
}

std::int64_t PairLoader::mixed_rows() const {
  const auto global = static_cast<std::int64_t>(options_.local_batch) * options_.world_size;
  return static_cast<std::int64_t>(std::floor(options_.mixgen * global));
}

std::string PairLoader::text_at(const std::vector<std::int64_t>& global_ids, std::int64_t position,
                                std::uint64_t key) const {
  Rng rng = Rng::derive(options_.seed ^ kTextKey, key, static_cast<std::uint64_t>(position));
  std::string text = inputs_.query_texts[inputs_.pairs[global_ids[position]].query];
  for (const auto& augmentation : options_.text_augmentations)
    text = augmentation->apply(text, rng);
  return text;
}

torch::Tensor PairLoader::tokens_for(const std::vector<std::int64_t>& global_ids,
                                     std::uint64_t key) const {
  const std::int64_t first = static_cast<std::int64_t>(options_.rank) * options_.local_batch;
  const std::int64_t mixed = mixed_rows();
  if (query_tokens_.defined() && first >= mixed) {  // nothing to augment or mix on this rank
    std::vector<std::int64_t> queries;
    for (std::int64_t b = 0; b < options_.local_batch; ++b)
      queries.push_back(inputs_.pairs[global_ids[first + b]].query);
    return query_tokens_.index_select(0, torch::tensor(queries, torch::kLong));
  }
  std::vector<std::string> texts;
  for (std::int64_t p = first; p < first + options_.local_batch; ++p) {
    std::string text = text_at(global_ids, p, key);
    if (p < mixed) text += " " + text_at(global_ids, p + mixed, key);
    texts.push_back(std::move(text));
  }
  return inputs_.tokenizer->encode_batch(texts, inputs_.context_length);
}

torch::Tensor PairLoader::images_for(const std::vector<std::int64_t>& global_ids, std::uint64_t key,
                                     const std::vector<int>& views) const {
  const std::int64_t first = static_cast<std::int64_t>(options_.rank) * options_.local_batch;
  const std::int64_t local = options_.local_batch, mixed = mixed_rows();
  // This rank's positions, then the partners of its mixed rows (read and augmented as the
  // partner's own row is, wherever that row lives).
  std::vector<std::int64_t> positions;
  for (std::int64_t p = first; p < first + local; ++p)
    positions.push_back(p);
  for (std::int64_t p = first; p < std::min(first + local, mixed); ++p)
    positions.push_back(p + mixed);
  std::vector<std::int64_t> rows;
  for (const auto p : positions)
    rows.push_back(inputs_.pairs[global_ids[p]].image_row);
  if (options_.image_views > 0) {  // never with MixGen: positions are this rank's rows
    return resized(augmented_views(*inputs_.images, rows, views, options_.seed,
                                   options_.image_augmentations, options_.threads));
  }
  auto pixels = inputs_.images->read(rows);
  if (!options_.image_augmentations.empty()) {
    parallel_for(0, positions.size(), options_.threads, [&](std::size_t i) {
      Rng rng(Rng::derive(options_.seed, key, static_cast<std::uint64_t>(positions[i])).next());
      for (const auto& augmentation : options_.image_augmentations)
        augmentation->apply(image_of(pixels, static_cast<std::int64_t>(i)), rng);
    });
  }
  if (positions.size() == static_cast<std::size_t>(local)) return resized(pixels);
  auto own = pixels.narrow(0, 0, local).clone();
  const auto partners = static_cast<std::int64_t>(positions.size()) - local;
  // Rows 0 .. partners - 1 of this rank are the mixed ones (mixed rows come first globally).
  auto mixed_pixels =
      own.narrow(0, 0, partners).to(torch::kFloat32) * options_.mixgen_lambda +
      pixels.narrow(0, local, partners).to(torch::kFloat32) * (1.0 - options_.mixgen_lambda);
  own.narrow(0, 0, partners).copy_(mixed_pixels.round_().clamp_(0, 255).to(torch::kUInt8));
  return resized(own);
}

int PairLoader::view_at(std::uint64_t key, std::int64_t position) const {
  Rng rng = Rng::derive(options_.seed ^ kViewKey, key, static_cast<std::uint64_t>(position));
  return static_cast<int>(rng.below(static_cast<std::uint64_t>(options_.image_views)));
}

torch::Tensor PairLoader::resized(const torch::Tensor& pixels) const {
  const int side = options_.output_resolution;
  if (side <= 0 || (pixels.size(1) == side && pixels.size(2) == side)) return pixels;
  const auto count = pixels.size(0), height = pixels.size(1), width = pixels.size(2);
  auto out = torch::empty({count, side, side, 3}, torch::kUInt8);
  const auto contiguous = pixels.contiguous();
  parallel_for(0, static_cast<std::size_t>(count), options_.threads, [&](std::size_t row) {
    const auto b = static_cast<std::int64_t>(row);
    Image image;
    image.width = static_cast<int>(width);
    image.height = static_cast<int>(height);
    const std::uint8_t* from = contiguous.data_ptr<std::uint8_t>() + b * height * width * 3;
    image.rgb.assign(from, from + height * width * 3);
    const Image small = resize_bicubic(image, side, side);
    std::copy(small.rgb.begin(), small.rgb.end(),
              out.data_ptr<std::uint8_t>() + b * side * side * 3);
  });
  return out;
}

torch::Tensor PairLoader::relevance_mask(const std::vector<std::int64_t>& global_ids) const {
  const auto n = static_cast<std::int64_t>(global_ids.size());
  const std::int64_t images = inputs_.images->size();
  auto mask = torch::zeros({n, n}, torch::kBool);
  auto* m = mask.data_ptr<bool>();
  for (std::int64_t i = 0; i < n; ++i) {
    const TrainPair& a = inputs_.pairs[global_ids[i]];
    for (std::int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const TrainPair& b = inputs_.pairs[global_ids[j]];
      m[i * n + j] = a.query == b.query || a.image_row == b.image_row ||
                     inputs_.relevant.count(b.query * images + a.image_row) > 0;
    }
  }
  // MixGen: mixed row p holds both sources p and p + M, so it is relevant wherever either is
  // (rows, then columns: entry (p, p') becomes the union over the four source pairs).
  const std::int64_t mixed = mixed_rows();
  for (std::int64_t p = 0; p < mixed; ++p) {
    for (std::int64_t j = 0; j < n; ++j)
      m[p * n + j] = m[p * n + j] || m[(p + mixed) * n + j];
  }
  for (std::int64_t p = 0; p < mixed; ++p) {
    for (std::int64_t i = 0; i < n; ++i)
      m[i * n + p] = m[i * n + p] || m[i * n + p + mixed];
  }
  for (std::int64_t p = 0; p < mixed; ++p) {
    m[p * n + p] = false;
    m[p * n + p + mixed] = m[(p + mixed) * n + p] = true;
  }
  return mask;
}

Batch PairLoader::load(int epoch, std::int64_t step) const {
  const auto global_ids = sampler_->global_batch(epoch, step);
  const auto begin = static_cast<std::ptrdiff_t>(options_.rank) * options_.local_batch;
  Batch batch;
  batch.pair_ids.assign(global_ids.begin() + begin,
                        global_ids.begin() + begin + options_.local_batch);
  for (const auto id : batch.pair_ids)
    batch.pairs.push_back(inputs_.pairs[id]);
  const std::uint64_t key = step_key(epoch, step);
  if (options_.image_views > 0) {
    for (std::int64_t p = begin; p < begin + options_.local_batch; ++p)
      batch.views.push_back(view_at(key, p));
  }
  batch.images = normalize_pixels(images_for(global_ids, key, batch.views));
  batch.tokens = tokens_for(global_ids, key);
  batch.relevant = relevance_mask(global_ids);
  for (const auto& extension : options_.extensions)
    extension->extend(batch);
  return batch;
}

void Prefetcher::request(int epoch, std::int64_t step) {
  reset();
  pending_ =
      std::async(std::launch::async, [this, epoch, step] { return loader_.load(epoch, step); });
}

Batch Prefetcher::get() {
  if (!pending_.valid()) throw std::logic_error("Prefetcher::get without request");
  return pending_.get();
}

void Prefetcher::reset() {
  if (pending_.valid()) pending_.wait();
  pending_ = {};
}

}  // namespace shopclip::data
