#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>
#include <torch/torch.h>

namespace shopclip::data {
namespace {

// Keys of the per-sample generators; a new kind of randomness gets its own key so that adding
// it does not change the draws of the others.
constexpr std::uint64_t kShuffleKey = 0x5348554646ULL;  // "SHUFF"
constexpr std::uint64_t kTextKey = 0x54455854ULL;       // "TEXT"

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
  auto x = pixels.permute({0, 3, 1, 2}).to(torch::kFloat32).contiguous();
  // (x / 255 - mean) / std, folded into one multiply-add per element.
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

torch::Tensor PairLoader::tokens_for(const std::vector<std::int64_t>& pair_ids,
                                     std::uint64_t key) const {
  std::vector<std::int64_t> queries;
  for (const auto id : pair_ids)
    queries.push_back(inputs_.pairs[id].query);
  if (query_tokens_.defined()) {
    return query_tokens_.index_select(0, torch::tensor(queries, torch::kLong));
  }
  std::vector<std::string> texts;
  for (std::size_t b = 0; b < queries.size(); ++b) {
    const auto position = static_cast<std::uint64_t>(options_.rank) * options_.local_batch + b;
    Rng rng = Rng::derive(options_.seed ^ kTextKey, key, position);
    std::string text = inputs_.query_texts[queries[b]];
    for (const auto& augmentation : options_.text_augmentations)
      text = augmentation->apply(text, rng);
    texts.push_back(std::move(text));
  }
  return inputs_.tokenizer->encode_batch(texts, inputs_.context_length);
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
  return mask;
}

Batch PairLoader::load(int epoch, std::int64_t step) const {
  const auto global_ids = sampler_->global_batch(epoch, step);
  const auto begin = static_cast<std::ptrdiff_t>(options_.rank) * options_.local_batch;
  Batch batch;
  batch.pair_ids.assign(global_ids.begin() + begin,
                        global_ids.begin() + begin + options_.local_batch);
  std::vector<std::int64_t> rows;
  for (const auto id : batch.pair_ids) {
    batch.pairs.push_back(inputs_.pairs[id]);
    rows.push_back(inputs_.pairs[id].image_row);
  }
  const std::uint64_t key = step_key(epoch, step);
  auto pixels = inputs_.images->read(rows);
  if (!options_.image_augmentations.empty()) {
    for (std::size_t b = 0; b < rows.size(); ++b) {
      const auto position = static_cast<std::uint64_t>(options_.rank) * options_.local_batch + b;
      Rng rng(Rng::derive(options_.seed, key, position).next());
      for (const auto& augmentation : options_.image_augmentations)
        augmentation->apply(image_of(pixels, static_cast<std::int64_t>(b)), rng);
    }
  }
  batch.images = normalize_pixels(pixels);
  batch.tokens = tokens_for(batch.pair_ids, key);
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
