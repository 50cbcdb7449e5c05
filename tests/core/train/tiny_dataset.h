// The tiny built-in dataset, made and prepared in a test's temporary folder: what the trainer's
// test suites (trainer_test, distill_test) start from.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "data/prep.h"
#include "data/synth.h"

namespace shopclip::test_support {

// Writes the 'tiny' dataset of `seed` to data_dir (one thread: the same files on any machine).
inline void make_tiny_dataset(const std::string& data_dir, std::uint64_t seed) {
  data::SynthOptions synth;
  synth.scale = "tiny";
  synth.out_dir = data_dir;
  synth.seed = seed;
  synth.threads = 1;
  data::make_synthetic_dataset(synth);
}

// Prepares `split` of config.data.root into config.prep_split_dir(split) with the config's
// resolution and shard sizes.
inline void prepare_split(const Config& config, const std::string& split) {
  data::PrepOptions prep;
  prep.images_tsv = config.data.root + "/" + split + "_imgs.tsv";
  prep.out_dir = config.prep_split_dir(split);
  prep.split = split;
  prep.params = data::PrepParams{config.prep_resolution(split), "bicubic", "RGB"};
  prep.images_per_shard = config.prep.images_per_shard;
  prep.chunk_images = config.prep.chunk_images;
  prep.threads = 1;
  data::prepare_shards(prep);
  data::BadRowLog bad_rows;
  data::finalize_prep(prep, bad_rows);
}

}  // namespace shopclip::test_support
