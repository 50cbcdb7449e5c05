#pragma once
// The built-in dataset: MUGE-format retrieval data made from Debian's dataset-fashion-mnist
// (70,000 real 28x28 product photos in 10 clothing/shoe/bag categories).
//
// Every image is one Fashion-MNIST item rendered in colour at thumbnail size with visible,
// nameable attributes: category (10), main colour (16), pattern (solid, horizontal stripes,
// vertical stripes, plaid, polka dots, colour block) with an accent colour for the non-solid
// ones, and an optional print (8 shapes). Placement, scale, background, mirroring, exposure,
// colour cast and JPEG quality vary as nuisances. A query names the attributes in Chinese with
// synonyms, varying order and the filler words real shop queries carry; an attribute a query does
// not name is the plain one (no pattern word = solid, no print word = no print). A query's relevant
// set is every image of the split's pool with exactly its attributes. Combinations are drawn in
// families of near misses (a base and siblings differing in one attribute: category, a colour, the
// pattern, the print, or main and accent swapped), so a pool holds images that differ from a
// query's answers in one attribute only:
//   - train: each product (attribute combination) has 1-2 images and 1-3 queries;
//   - valid/test: each query names a distinct combination planted 1-11 times in the pool
//     (mean about 6, as MUGE's valid), the pool being the union of those images, as in MUGE.
// Files written to out_dir: {split}_imgs.tsv, {split}_texts.jsonl (test: "image_ids": []),
// answers/test_texts.jsonl (the test ground truth), meta/{split}_image_attributes.jsonl,
// meta/{split}_query_attributes.jsonl, meta/synth.json. Output depends only on scale and seed.

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace shopclip::data {

inline constexpr int kSynthFormatVersion = 1;

struct ProductAttributes {
  int category = 0;  // Fashion-MNIST label 0..9
  int color = 0;     // main colour 0..15
  int pattern = 0;   // 0 = solid, 1..5 = patterns
  int accent = -1;   // accent colour for patterns, -1 for solid
  int print = 0;     // 0 = none, 1..8 = print shapes

  bool operator==(const ProductAttributes& o) const {
    return category == o.category && color == o.color && pattern == o.pattern &&
           accent == o.accent && print == o.print;
  }
  // A dense code of the combination (for hashing and uniqueness).
  std::int64_t code() const;
};

// Names of the attribute values (Chinese, the canonical form queries use).
int synth_num_colors();
int synth_num_patterns();
int synth_num_prints();
std::string synth_category_name(int category);
// Every name a query may use for a category (canonical first).
const std::vector<std::string>& synth_category_synonyms(int category);
std::string synth_color_name(int color);
std::string synth_pattern_name(int pattern);
std::string synth_print_name(int print);

struct SynthScale {
  std::string name;
  int train_products = 0;         // distinct attribute combinations in train
  double train_second_image = 0;  // probability a train product has 2 images
  int train_max_queries = 3;      // 1..max queries per train product (uniform)
  int eval_queries = 0;           // queries in valid and in test
  int max_group = 11;             // valid/test: 1..max_group images per query (uniform)
  int max_family = 4;             // combinations come in families of 1..max_family near misses
  int image_size = 128;           // JPEG width = height
};
// "tiny" (seconds; tests), "demo" (the README's main job), "muge" (MUGE's sizes).
SynthScale synth_scale(const std::string& name);

struct SynthOptions {
  std::string scale = "tiny";
  std::string out_dir;
  std::uint64_t seed = 1;
  int threads = 0;  // 0 = all cores; the output does not depend on it
  std::string fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
  int image_size = 0;  // 0 = the scale's default
};

struct SynthSplitSummary {
  std::string split;
  std::int64_t images = 0;
  std::int64_t queries = 0;
  std::int64_t pairs = 0;  // sum over queries of relevant images
  double mean_relevant = 0;
};

// Writes the dataset; progress(message) is called now and then. Throws DataError when the
// Fashion-MNIST files are missing or malformed, std::invalid_argument for a bad scale.
std::vector<SynthSplitSummary> make_synthetic_dataset(
    const SynthOptions& options, const std::function<void(const std::string&)>& progress = {});

// Reads meta/{split}_image_attributes.jsonl or meta/{split}_query_attributes.jsonl: id ->
// attributes.
std::unordered_map<std::int64_t, ProductAttributes> read_synth_attributes(const std::string& path);

// Renders one product image (exposed for tests). item: 28*28 Fashion-MNIST pixels.
struct RenderOptions {
  int size = 128;
  std::uint64_t seed = 0;  // nuisance variation (placement, background, phase, mirroring)
};
struct Image;
Image render_product(const std::uint8_t* item, const ProductAttributes& attributes,
                     const RenderOptions& options);

// Builds one query text for the attributes (exposed for tests).
std::string synth_query_text(const ProductAttributes& attributes, std::uint64_t seed);

// Rankings that use one ground-truth attribute only: for each query, pool images sharing the
// query's value of `attribute` ("category", "color", "pattern", "accent", "print") come first,
// in a random order (seeded), then the rest. Returns, per query (same order as query_ids), the
// top `k` image ids. Shows that no single attribute solves the task.
std::vector<std::vector<std::int64_t>> single_attribute_ranking(
    const std::string& attribute, const std::vector<std::int64_t>& query_ids,
    const std::unordered_map<std::int64_t, ProductAttributes>& query_attributes,
    const std::vector<std::int64_t>& pool_ids,
    const std::unordered_map<std::int64_t, ProductAttributes>& image_attributes, int k,
    std::uint64_t seed);

}  // namespace shopclip::data
