#pragma once
// Training batches of (image pixels, query tokens) pairs, read from prepared shards.
//
// An epoch is a permutation of all pairs, drawn from (seed, epoch) alone; a global batch of
// local_batch * world_size pairs is cut from it per step and rank r takes the r-th slice, so no
// pair appears twice in an epoch, the last incomplete global batch is dropped, and any step can
// be rebuilt exactly (resume). Augmentation randomness is derived from (seed, epoch, step, position
// in the global batch).

#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include <torch/types.h>

#include "data/shards.h"

namespace shopclip::data {

// Chinese-CLIP / OpenAI CLIP normalisation constants (RGB).
inline constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// uint8 [B, H, W, 3] RGB -> float32 [B, 3, H, W], scaled to [0, 1] then CLIP-normalised.
torch::Tensor normalize_pixels(const torch::Tensor& pixels);

// Shifts image b of uint8 [B, H, W, 3] by a random (dx, dy) in [-max_shift, max_shift] drawn from
// seeds[b], repeating edge pixels; in place. Per-image seeds make the result independent of how
// a global batch is split across ranks.
void random_shift(torch::Tensor& pixels, int max_shift, const std::vector<std::uint64_t>& seeds);

struct TrainPair {
  std::int64_t query = 0;      // row of the query token table
  std::int64_t image_row = 0;  // row of the ImageStore
};

struct Batch {
  torch::Tensor images;  // float32 [B, 3, R, R], normalised
  torch::Tensor tokens;  // int64 [B, L]
  std::vector<TrainPair> pairs;
};

class PairLoader {
 public:
  // store: must outlive the loader. query_tokens: int64 [Q, L] (CPU). pairs: every training
  // pair; local_batch: pairs per rank and step.
  PairLoader(const ImageStore& store, torch::Tensor query_tokens, std::vector<TrainPair> pairs,
             int local_batch, int rank, int world_size, std::uint64_t seed, int max_shift);

  std::int64_t steps_per_epoch() const;
  std::int64_t num_pairs() const { return static_cast<std::int64_t>(pairs_.size()); }
  // This rank's pairs of a step (deterministic).
  std::vector<TrainPair> pairs_for(int epoch, std::int64_t step) const;
  // All ranks' pairs of a step, in rank order (the global batch).
  std::vector<TrainPair> global_pairs_for(int epoch, std::int64_t step) const;
  // Reads, augments and normalises this rank's batch.
  Batch load(int epoch, std::int64_t step) const;

 private:
  std::shared_ptr<const std::vector<std::int64_t>> permutation(int epoch) const;

  const ImageStore& store_;
  torch::Tensor query_tokens_;
  std::vector<TrainPair> pairs_;
  int local_batch_, rank_, world_size_;
  std::uint64_t seed_;
  int max_shift_;
  // The current epoch's shuffle, shared by the trainer and a Prefetcher thread.
  mutable std::mutex cache_mutex_;
  mutable int cached_epoch_ = -1;
  mutable std::shared_ptr<const std::vector<std::int64_t>> cached_permutation_;
};

// Loads the next batch on a background thread while the current step runs. Only one request is
// in flight; get() waits for it. Destroying or reset() drains it, so no read outlives an epoch
// (HDF5's serial build is not thread-safe: evaluation must not overlap a prefetch).
class Prefetcher {
 public:
  explicit Prefetcher(const PairLoader& loader) : loader_(loader) {}
  ~Prefetcher() { reset(); }
  void request(int epoch, std::int64_t step);
  Batch get();
  void reset();

 private:
  const PairLoader& loader_;
  std::future<Batch> pending_;
};

}  // namespace shopclip::data
