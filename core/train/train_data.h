#pragma once
// What training reads: the training split's prepared images and queries as (query, image) pairs,
// and the validation split for model selection.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/config.h"
#include "core/eval/evaluate.h"
#include "core/log.h"
#include "data/augment.h"
#include "data/loader.h"
#include "data/muge.h"
#include "data/shards.h"
#include "data/text_augment.h"

namespace shopclip {

struct TrainData {
  std::unique_ptr<data::ImageStore> images;  // the training split's prepared images
  data::QuerySet queries;                    // training queries (bad rows skipped)
  std::vector<data::TrainPair> pairs;        // one per (query, relevant image)
  // query * images->size() + image row, for every pair: the ground truth of the training split.
  std::unordered_set<std::int64_t> relevant;
  SplitData valid;           // model selection and the final evaluation
  data::BadRowLog bad_rows;  // of both splits, prep's included

  std::vector<std::string> query_texts() const;  // row = TrainPair::query
};

// Reads the training and validation splits, skipping bad rows (listed, and on the main rank
// written to <run_dir>/bad_rows.jsonl); every rank stops with a DataError naming the file when a
// file has more than data.max_bad_share bad rows, or when the validation split has no ground
// truth. Holds the training images in memory when they fit train.image_cache_gib.
TrainData load_train_data(const Config& config, bool main_rank, const std::string& run_dir,
                          Logger& log);

// The loader's text augmentations from train.text_augment (variants first, then the word ones),
// reading its files (DataError naming file:line for a bad line); empty when it is off. The
// variants belong to data.queries; the default variants file is <data.root>/train_texts.aug.jsonl.
std::vector<std::shared_ptr<const data::TextAugmentation>> make_train_text_augmentations(
    const Config& config, const TrainData& data, Logger& log);

// The loader's image augmentations from train.augment, train.image_augment and train.max_shift
// (the shift last), in the order they run.
std::vector<std::shared_ptr<const data::ImageAugmentation>> make_train_image_augmentations(
    const TrainConfig& config);

// What decides the pixels of a stored view besides the seed (distill.views): train.augment,
// every train.image_augment field and train.max_shift, as readable text. The teacher cache records
// it; training refuses a cache whose views were drawn otherwise.
std::string image_view_recipe(const TrainConfig& config);

}  // namespace shopclip
