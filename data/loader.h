#pragma once
// Training batches of (image pixels, query tokens) pairs, read from prepared shards.
//
// A BatchSampler decides which pairs form each global batch of local_batch * world_size pairs
// (today: a shuffle of all pairs per epoch, drawn from (seed, epoch) alone); rank r takes the r-th
// slice, so any step can be rebuilt exactly (resume) and the global batch is the same for any
// number of ranks. For each of its rows the loader then reads the image, applies the image
// augmentations to its uint8 pixels, applies the text augmentations to its query text, tokenizes
// it, and normalises the pixels; it also builds the relevance mask of the global batch and asks
// each BatchExtension for extra tensors. All of it runs on the Prefetcher's thread, off the
// training step.
//
// Every random choice of a row is drawn from a generator keyed by (seed, epoch, step, position
// of the row in the global batch), so a view of a sample can be regenerated and does not depend
// on how the global batch is split across ranks.

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <torch/types.h>

#include "data/rng.h"
#include "data/shards.h"
#include "data/tokenizer.h"

namespace shopclip::data {

// Chinese-CLIP / OpenAI CLIP normalisation constants (RGB).
inline constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// uint8 [B, H, W, 3] RGB -> float32 [B, 3, H, W], scaled to [0, 1] then CLIP-normalised. The
// result is channels-last in memory (strides of [B, H, W, 3], the pixels' own order), the layout
// the CNN tower computes in; .contiguous() gives [B, 3, H, W] order where a caller needs it.
torch::Tensor normalize_pixels(const torch::Tensor& pixels);

struct TrainPair {
  std::int64_t query = 0;      // row of the query table (LoaderInputs::query_texts)
  std::int64_t image_row = 0;  // row of the ImageStore
};

// ---- batch samplers -----------------------------------------------------------------------------

// Chooses the pairs of every global batch. Implementations must be deterministic in (epoch, step)
// and safe to call from two threads at once (the trainer and the prefetch thread).
class BatchSampler {
 public:
  virtual ~BatchSampler() = default;
  virtual std::int64_t steps_per_epoch() const = 0;
  // Indices into the loader's pair list of the global batch of (epoch, step), in global-batch
  // order (rank r takes positions [r * local_batch, (r + 1) * local_batch)). Throws
  // std::out_of_range for a step outside the epoch.
  virtual std::vector<std::int64_t> global_batch(int epoch, std::int64_t step) const = 0;
};

// Every epoch a shuffle of all pairs drawn from (seed, epoch); consecutive global batches are cut
// from it and the last incomplete one is dropped, so no pair appears twice in an epoch.
class ShuffledBatchSampler : public BatchSampler {
 public:
  ShuffledBatchSampler(std::int64_t num_pairs, std::int64_t global_batch, std::uint64_t seed);
  std::int64_t steps_per_epoch() const override;
  std::vector<std::int64_t> global_batch(int epoch, std::int64_t step) const override;
  // The epoch's whole shuffle (every pair once), which the batches are cut from.
  std::shared_ptr<const std::vector<std::int64_t>> permutation(int epoch) const;

 private:
  std::int64_t num_pairs_, global_batch_;
  std::uint64_t seed_;
  // The current epoch's shuffle, shared by the trainer and the prefetch thread.
  mutable std::mutex cache_mutex_;
  mutable int cached_epoch_ = -1;
  mutable std::shared_ptr<const std::vector<std::int64_t>> cached_permutation_;
};

// Hard-negative batches (train.mine_every, core/train/mining.h). The epoch's shuffle as
// ShuffledBatchSampler draws it, but each global batch of B starts by alternating an anchor (the
// shuffle's next unused pair) and a pair whose image is a mined negative of the anchor's query
// (the first unused one of another query, in the anchor's list order, best first) until
// floor(share * B) mined pairs are placed (an anchor with none left adds no mined pair); the
// shuffle's next unused pairs fill the rest. No pair is used twice in an epoch, and an epoch has as
// many steps as the plain shuffle's, so every pair is visited once per epoch except the same-sized
// remainder. Without negatives (before the first mining) the batches are exactly
// ShuffledBatchSampler's.
class HardNegativeBatchSampler : public BatchSampler {
 public:
  // pairs: the loader's pair list (TrainPair::query indexes the negatives' lists).
  HardNegativeBatchSampler(std::vector<TrainPair> pairs, std::int64_t global_batch,
                           std::uint64_t seed, double share);
  // Image rows per query row, best first; null = none. Takes effect for the next epoch asked for:
  // call between epochs (not while a batch of the current one may still be loading).
  void set_negatives(std::shared_ptr<const std::vector<std::vector<std::int64_t>>> negatives);
  std::int64_t steps_per_epoch() const override { return shuffle_.steps_per_epoch(); }
  std::vector<std::int64_t> global_batch(int epoch, std::int64_t step) const override;
  // Pairs of the epoch placed as a mined negative of their batch's anchor.
  std::int64_t mined_pairs(int epoch) const;

 private:
  struct Plan {
    std::vector<std::int64_t> batches;  // steps_per_epoch * B pair ids
    std::int64_t mined = 0;
  };
  std::shared_ptr<const Plan> plan(int epoch) const;

  std::vector<TrainPair> pairs_;
  std::int64_t global_batch_;
  double share_;
  ShuffledBatchSampler shuffle_;
  std::unordered_map<std::int64_t, std::vector<std::int64_t>> pairs_of_image_;
  mutable std::mutex mutex_;
  std::shared_ptr<const std::vector<std::vector<std::int64_t>>> negatives_;
  mutable int cached_epoch_ = -1;
  mutable std::shared_ptr<const Plan> cached_plan_;
};

// ---- per-sample augmentation --------------------------------------------------------------------

// One image of a batch: HWC uint8 RGB pixels, modified in place.
struct ImageView {
  std::uint8_t* pixels = nullptr;  // height * width * 3 bytes, not owned
  int height = 0, width = 0;
};

// An image transform applied to each training image before normalisation. apply() must draw all
// its randomness from `rng` (the sample's own generator) and be callable from any thread.
class ImageAugmentation {
 public:
  virtual ~ImageAugmentation() = default;
  virtual void apply(ImageView image, Rng& rng) const = 0;
};

// A query-text transform applied before tokenization, under the same rules.
class TextAugmentation {
 public:
  virtual ~TextAugmentation() = default;
  virtual std::string apply(std::string_view text, Rng& rng) const = 0;
};

// train.max_shift: translates the image by a random (dx, dy) in [-max_shift, max_shift],
// repeating edge pixels.
class RandomShift : public ImageAugmentation {
 public:
  explicit RandomShift(int max_shift);
  void apply(ImageView image, Rng& rng) const override;

 private:
  int max_shift_;
};

// Shifts image b of uint8 [B, H, W, 3] by RandomShift(max_shift) with generator Rng(seeds[b]);
// in place. max_shift 0 changes nothing.
void random_shift(torch::Tensor& pixels, int max_shift, const std::vector<std::uint64_t>& seeds);

// The generator of view `view` of the image with id `image_id` (LoaderOptions::image_views):
// what the image augmentations draw from for that view, in training and in `distill cache`.
Rng image_view_rng(std::uint64_t seed, std::int64_t image_id, int view);

// Pixels uint8 [n, H, W, 3] of the store's rows `rows`, row i augmented as view views[i] of its
// image (image_view_rng(seed, its id, views[i]), then each augmentation in order), `threads` at
// a time (the same result for any count). Shared by the loader and the teacher cache, so both
// make the same pixels for a view.
torch::Tensor augmented_views(
    const ImageStore& images, const std::vector<std::int64_t>& rows, const std::vector<int>& views,
    std::uint64_t seed, const std::vector<std::shared_ptr<const ImageAugmentation>>& augmentations,
    int threads);

// ---- batches ----------------------------------------------------------------------------------

struct Batch {
  torch::Tensor images;                // float32 [b, 3, R, R], normalised (this rank's rows)
  torch::Tensor tokens;                // int64 [b, L]
  std::vector<TrainPair> pairs;        // this rank's rows
  std::vector<std::int64_t> pair_ids;  // each row's index in the pair list (a stable sample id)
  // bool [B, B] over the global batch: relevant[i][j] = text j is also a right answer for image i
  // (same query, same image, or the ground truth says so); the diagonal is false.
  torch::Tensor relevant;
  // Extra per-row tensors from BatchExtensions (e.g. teacher embeddings), by name; dim 0 = b.
  std::map<std::string, torch::Tensor> extras;
  // Each row's image view (LoaderOptions::image_views); empty when views are off.
  std::vector<int> views;
};

// Adds named tensors to a batch, looked up from its rows (pairs, pair_ids); e.g. stored teacher
// embeddings. Called on the prefetch thread: must be safe to call concurrently with the trainer.
class BatchExtension {
 public:
  virtual ~BatchExtension() = default;
  virtual void extend(Batch& batch) const = 0;
};

// What the training set is.
struct LoaderInputs {
  const ImageStore* images = nullptr;    // must outlive the loader
  std::vector<TrainPair> pairs;          // every training pair
  std::vector<std::string> query_texts;  // row = TrainPair::query
  const Tokenizer* tokenizer = nullptr;  // must outlive the loader
  int context_length = 0;
  // Ground truth beyond the pairs themselves: query * images->size() + image_row for every
  // (query, image) known to be relevant; such pairs are never each other's negatives.
  std::unordered_set<std::int64_t> relevant;
};

struct LoaderOptions {
  int local_batch = 0;  // pairs per rank and step
  int rank = 0, world_size = 1;
  std::uint64_t seed = 0;
  std::shared_ptr<const BatchSampler> sampler;  // null: ShuffledBatchSampler from the seed
  std::vector<std::shared_ptr<const ImageAugmentation>> image_augmentations;  // in order
  std::vector<std::shared_ptr<const TextAugmentation>> text_augmentations;    // in order
  std::vector<std::shared_ptr<const BatchExtension>> extensions;
  // MixGen (Hao et al., WACV 2023): the first floor(mixgen * B) rows of each global batch of B
  // become new pairs, row p mixed with row p + M: its image mixgen_lambda * image(p) +
  // (1 - mixgen_lambda) * image(p + M) (uint8, each source augmented as its own row would be),
  // its text text(p) + " " + text(p + M). The mixed row's relevance is the union of its sources'
  // (neither source's positives are its negatives), and it is relevant to row p + M itself.
  // 0 = off; at most 0.5. Extensions still see the source pairs (Batch::pairs).
  double mixgen = 0;
  double mixgen_lambda = 0.5;
  // The side of the batch's images: each augmented (and mixed) image is resized to it (Pillow's
  // bicubic, antialiased) when the store holds larger ones (prep.resolution); 0 = the store's.
  int output_resolution = 0;
  // Threads that augment and resize the batch's images (each image's result is the same for any
  // count: its generator is its own).
  int threads = 1;
  // Stored views (distill.views; MobileCLIP's dataset reinforcement): 0 = off. With V > 0 each
  // row's image is view v of its image, v in 0..V-1 drawn per (epoch, step, position), and the
  // image augmentations draw from image_view_rng(seed, image id, v) instead of the row's
  // generator: view v of an image is the same pixels whenever it is drawn, so a teacher cache
  // can hold its embedding (augmented_views). Batch::views holds each row's v. Not with MixGen
  // (a mixed image is no stored view): the constructor refuses the pair.
  int image_views = 0;
};

class PairLoader {
 public:
  // Throws std::invalid_argument for a bad batch/rank layout and std::out_of_range for a pair
  // outside the images or queries.
  PairLoader(LoaderInputs inputs, LoaderOptions options);

  std::int64_t steps_per_epoch() const { return sampler_->steps_per_epoch(); }
  std::int64_t num_pairs() const { return static_cast<std::int64_t>(inputs_.pairs.size()); }
  // This rank's pairs of a step (deterministic).
  std::vector<TrainPair> pairs_for(int epoch, std::int64_t step) const;
  // All ranks' pairs of a step, in rank order (the global batch).
  std::vector<TrainPair> global_pairs_for(int epoch, std::int64_t step) const;
  // Reads, augments, tokenizes and normalises this rank's batch, with the global relevance mask
  // and the extensions' tensors.
  Batch load(int epoch, std::int64_t step) const;

 private:
  // Rows of the global batch that MixGen replaces (M; 0 without MixGen).
  std::int64_t mixed_rows() const;
  // This rank's rows' pixels, uint8 [b, H, W, 3], augmented (and mixed); with image_views > 0
  // the stored view `views[i]` of row i (view_at of its position, one per row).
  torch::Tensor images_for(const std::vector<std::int64_t>& global_ids, std::uint64_t key,
                           const std::vector<int>& views) const;
  // The view of global position `position` in the step with this key (image_views > 0).
  int view_at(std::uint64_t key, std::int64_t position) const;
  // pixels uint8 [n, H, W, 3] at options_.output_resolution (unchanged when that is 0 or H).
  torch::Tensor resized(const torch::Tensor& pixels) const;
  torch::Tensor tokens_for(const std::vector<std::int64_t>& global_ids, std::uint64_t key) const;
  // The text of global position `position` after the text augmentations.
  std::string text_at(const std::vector<std::int64_t>& global_ids, std::int64_t position,
                      std::uint64_t key) const;
  torch::Tensor relevance_mask(const std::vector<std::int64_t>& global_ids) const;

  LoaderInputs inputs_;
  LoaderOptions options_;
  std::shared_ptr<const BatchSampler> sampler_;
  torch::Tensor query_tokens_;  // int64 [Q, L], every query tokenized once (no text augmentation)
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
