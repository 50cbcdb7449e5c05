#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "data/rng.h"

namespace shopclip::data {

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

void random_shift(torch::Tensor& pixels, int max_shift, const std::vector<std::uint64_t>& seeds) {
  if (max_shift <= 0) return;
  TORCH_CHECK(pixels.is_contiguous() && pixels.scalar_type() == torch::kUInt8 && pixels.dim() == 4,
              "random_shift expects contiguous uint8 [B, H, W, 3]");
  const auto batch = pixels.size(0), height = pixels.size(1), width = pixels.size(2);
  TORCH_CHECK(static_cast<std::int64_t>(seeds.size()) == batch, "random_shift: one seed per image");
  std::vector<std::uint8_t> source(static_cast<std::size_t>(height * width * 3));
  auto* data = pixels.data_ptr<std::uint8_t>();
  for (std::int64_t b = 0; b < batch; ++b) {
    Rng rng(seeds[b]);
    const int dx = rng.between(-max_shift, max_shift), dy = rng.between(-max_shift, max_shift);
    if (dx == 0 && dy == 0) continue;
    std::uint8_t* image = data + b * height * width * 3;
    std::copy_n(image, source.size(), source.data());
    for (std::int64_t y = 0; y < height; ++y) {
      const std::int64_t sy = std::clamp<std::int64_t>(y - dy, 0, height - 1);
      for (std::int64_t x = 0; x < width; ++x) {
        const std::int64_t sx = std::clamp<std::int64_t>(x - dx, 0, width - 1);
        std::copy_n(&source[(sy * width + sx) * 3], 3, &image[(y * width + x) * 3]);
      }
    }
  }
}

PairLoader::PairLoader(const ImageStore& store, torch::Tensor query_tokens,
                       std::vector<TrainPair> pairs, int local_batch, int rank, int world_size,
                       std::uint64_t seed, int max_shift)
    : store_(store),
      query_tokens_(std::move(query_tokens)),
      pairs_(std::move(pairs)),
      local_batch_(local_batch),
      rank_(rank),
      world_size_(world_size),
      seed_(seed),
      max_shift_(max_shift) {
  if (local_batch <= 0 || world_size <= 0 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument(
        fmt::format("PairLoader: batch {} rank {} world size {}", local_batch, rank, world_size));
  }
  for (const auto& pair : pairs_) {
    if (pair.query < 0 || pair.query >= query_tokens_.size(0) || pair.image_row < 0 ||
        pair.image_row >= store_.size()) {
      throw std::out_of_range(
          fmt::format("PairLoader: pair ({}, {}) out of range", pair.query, pair.image_row));
    }
  }
}

std::int64_t PairLoader::steps_per_epoch() const {
  return num_pairs() / (static_cast<std::int64_t>(local_batch_) * world_size_);
}

std::shared_ptr<const std::vector<std::int64_t>> PairLoader::permutation(int epoch) const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cached_epoch_ != epoch || !cached_permutation_) {
    auto order = std::make_shared<std::vector<std::int64_t>>(pairs_.size());
    std::iota(order->begin(), order->end(), 0);
    Rng rng = Rng::derive(seed_, 0x5348554646ULL, static_cast<std::uint64_t>(epoch));
    rng.shuffle(*order);
    cached_permutation_ = std::move(order);
    cached_epoch_ = epoch;
  }
  return cached_permutation_;
}

std::vector<TrainPair> PairLoader::global_pairs_for(int epoch, std::int64_t step) const {
  if (step < 0 || step >= steps_per_epoch()) {
    throw std::out_of_range(
        fmt::format("step {} outside the epoch's {} steps", step, steps_per_epoch()));
  }
  const auto order_holder = permutation(epoch);
  const auto& order = *order_holder;
  const std::int64_t global = static_cast<std::int64_t>(local_batch_) * world_size_;
  std::vector<TrainPair> out;
  out.reserve(global);
  for (std::int64_t i = step * global; i < (step + 1) * global; ++i)
    out.push_back(pairs_[order[i]]);
  return out;
}

std::vector<TrainPair> PairLoader::pairs_for(int epoch, std::int64_t step) const {
  auto global = global_pairs_for(epoch, step);
  return {global.begin() + static_cast<std::ptrdiff_t>(rank_) * local_batch_,
          global.begin() + static_cast<std::ptrdiff_t>(rank_ + 1) * local_batch_};
}

Batch PairLoader::load(int epoch, std::int64_t step) const {
  Batch batch;
  batch.pairs = pairs_for(epoch, step);
  std::vector<std::int64_t> rows, queries;
  for (const auto& pair : batch.pairs) {
    rows.push_back(pair.image_row);
    queries.push_back(pair.query);
  }
  auto pixels = store_.read(rows);
  if (max_shift_ > 0) {
    std::vector<std::uint64_t> seeds;
    const std::uint64_t step_key = static_cast<std::uint64_t>(epoch) * 1000003ULL + step;
    for (std::size_t b = 0; b < rows.size(); ++b) {
      const auto position = static_cast<std::uint64_t>(rank_) * local_batch_ + b;
      seeds.push_back(Rng::derive(seed_, step_key, position).next());
    }
    random_shift(pixels, max_shift_, seeds);
  }
  batch.images = normalize_pixels(pixels);
  batch.tokens = query_tokens_.index_select(0, torch::tensor(queries, torch::kLong));
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
