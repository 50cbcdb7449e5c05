#include "data/synth.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/rng.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::read_file;
using shopclip::test_support::TempDir;

namespace fs = std::filesystem;

const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";
constexpr std::uint64_t kSeed = 7;

// Every file under dir, as paths relative to it, sorted.
std::vector<std::string> list_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(fs::relative(entry.path(), dir).string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

SynthOptions tiny_options(const std::string& out_dir, std::uint64_t seed, int threads) {
  SynthOptions options;
  options.scale = "tiny";
  options.out_dir = out_dir;
  options.seed = seed;
  options.threads = threads;
  options.fashion_mnist_dir = kFashionMnist;
  return options;
}

// The "tiny" dataset is made once for the suite; the tests only read it.
class SynthDatasetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>();
    summaries_ = make_synthetic_dataset(tiny_options(dir_->path(), kSeed, 2));
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static std::string path(const std::string& name) { return dir_->file(name); }

  static QuerySet queries(const std::string& name, bool require_image_ids = true) {
    BadRowLog log;
    QueryReadOptions options;
    options.require_image_ids = require_image_ids;
    QuerySet set = read_queries(path(name), QuerySchema::kChineseClip, log, options);
    EXPECT_TRUE(log.bad_rows().empty()) << name << ": " << log.summary();
    return set;
  }

  // Image ids of a split's pool, in file order.
  static std::vector<std::int64_t> pool(const std::string& split) {
    BadRowLog log;
    std::vector<std::int64_t> ids;
    for (const auto& row : index_images_tsv(images_file(dir_->path(), split), log))
      ids.push_back(row.id);
    EXPECT_TRUE(log.bad_rows().empty()) << log.summary();
    return ids;
  }

  static std::unique_ptr<TempDir> dir_;
  static std::vector<SynthSplitSummary> summaries_;
};

std::unique_ptr<TempDir> SynthDatasetTest::dir_;
std::vector<SynthSplitSummary> SynthDatasetTest::summaries_;

TEST_F(SynthDatasetTest, SameSeedGivesIdenticalFilesWhateverTheThreadCount) {
  TempDir again;
  make_synthetic_dataset(tiny_options(again.path(), kSeed, 1));
  const auto files = list_files(dir_->path());
  ASSERT_EQ(list_files(again.path()), files);
  for (const std::string name :
       {"train_imgs.tsv", "train_texts.jsonl", "valid_imgs.tsv", "valid_texts.jsonl",
        "test_imgs.tsv", "test_texts.jsonl", "answers/test_texts.jsonl", "meta/synth.json",
        "meta/valid_image_attributes.jsonl", "meta/train_query_attributes.jsonl"}) {
    EXPECT_TRUE(std::find(files.begin(), files.end(), name) != files.end()) << name;
  }
  for (const auto& name : files) {
    EXPECT_TRUE(read_file(path(name)) == read_file(again.file(name))) << name << " differs";
  }
}

TEST_F(SynthDatasetTest, DifferentSeedGivesDifferentData) {
  TempDir other;
  make_synthetic_dataset(tiny_options(other.path(), kSeed + 1, 2));
  for (const std::string name :
       {"train_imgs.tsv", "train_texts.jsonl", "valid_imgs.tsv", "valid_texts.jsonl"}) {
    EXPECT_FALSE(read_file(path(name)) == read_file(other.file(name))) << name;
  }
}

TEST_F(SynthDatasetTest, TrainCountsFollowTheScale) {
  const SynthScale scale = synth_scale("tiny");
  const QuerySet train = queries("train_texts.jsonl");
  const auto train_pool = pool("train");
  // A product is one set of image ids; each has 1-2 images and 1-max queries.
  std::map<std::vector<std::int64_t>, int> queries_per_product;
  for (const auto& query : train.queries) {
    EXPECT_GE(query.image_ids.size(), 1u);
    EXPECT_LE(query.image_ids.size(), 2u);
    queries_per_product[query.image_ids] += 1;
  }
  EXPECT_EQ(static_cast<int>(queries_per_product.size()), scale.train_products);
  std::set<std::int64_t> listed;
  for (const auto& [ids, count] : queries_per_product) {
    EXPECT_GE(count, 1);
    EXPECT_LE(count, scale.train_max_queries);
    for (auto id : ids)
      EXPECT_TRUE(listed.insert(id).second) << "image " << id << " in two products";
  }
  // Every pool image belongs to exactly one product.
  EXPECT_EQ(listed, std::set<std::int64_t>(train_pool.begin(), train_pool.end()));
  EXPECT_EQ(listed.size(), train_pool.size());

  ASSERT_EQ(summaries_.size(), 3u);
  EXPECT_EQ(summaries_[0].split, "train");
  EXPECT_EQ(summaries_[0].images, static_cast<std::int64_t>(train_pool.size()));
  EXPECT_EQ(summaries_[0].queries, static_cast<std::int64_t>(train.queries.size()));
}

TEST_F(SynthDatasetTest, EvalSplitsListOneToMaxGroupImagesPerQuery) {
  const SynthScale scale = synth_scale("tiny");
  for (const std::string split : {"valid", "test"}) {
    const QuerySet set =
        queries(split == "test" ? "answers/test_texts.jsonl" : split + "_texts.jsonl");
    ASSERT_EQ(static_cast<int>(set.queries.size()), scale.eval_queries) << split;
    std::int64_t pairs = 0;
    std::set<std::int64_t> listed;
    for (const auto& query : set.queries) {
      EXPECT_GE(static_cast<int>(query.image_ids.size()), 1) << split;
      EXPECT_LE(static_cast<int>(query.image_ids.size()), scale.max_group) << split;
      pairs += static_cast<std::int64_t>(query.image_ids.size());
      for (auto id : query.image_ids)
        EXPECT_TRUE(listed.insert(id).second) << "image " << id << " in two queries";
    }
    // The pool is the union of the queries' images, as in MUGE.
    const auto ids = pool(split);
    EXPECT_EQ(listed, std::set<std::int64_t>(ids.begin(), ids.end())) << split;
    const double mean = static_cast<double>(pairs) / set.queries.size();
    // Uniform over 1..max_group: mean (1 + max_group) / 2; 40 queries keep it well inside.
    EXPECT_GT(mean, 0.6 * (1 + scale.max_group) / 2.0) << split;
    EXPECT_LT(mean, 1.4 * (1 + scale.max_group) / 2.0) << split;
    const SynthSplitSummary& summary = summaries_[split == "valid" ? 1 : 2];
    EXPECT_EQ(summary.split, split);
    EXPECT_EQ(summary.pairs, pairs);
    EXPECT_EQ(summary.images, static_cast<std::int64_t>(ids.size()));
    EXPECT_DOUBLE_EQ(summary.mean_relevant, mean);
  }
}

TEST_F(SynthDatasetTest, TestTextsAreBlindAndAnswersHoldTheGroundTruth) {
  const QuerySet blind = queries("test_texts.jsonl", /*require_image_ids=*/false);
  const QuerySet answers = queries("answers/test_texts.jsonl");
  ASSERT_EQ(blind.queries.size(), answers.queries.size());
  ASSERT_FALSE(blind.queries.empty());
  for (std::size_t i = 0; i < blind.queries.size(); ++i) {
    EXPECT_TRUE(blind.queries[i].image_ids.empty());
    EXPECT_EQ(blind.queries[i].id, answers.queries[i].id);
    EXPECT_EQ(blind.queries[i].text, answers.queries[i].text);
    EXPECT_FALSE(answers.queries[i].image_ids.empty());
  }
  EXPECT_TRUE(Contains(read_file(path("test_texts.jsonl")), "\"image_ids\":[]"));
}

TEST_F(SynthDatasetTest, SplitsUseDistinctIds) {
  std::set<std::int64_t> images, texts;
  for (const std::string split : {"train", "valid", "test"}) {
    for (auto id : pool(split))
      EXPECT_TRUE(images.insert(id).second) << "image id " << id << " reused in " << split;
    const QuerySet set = queries(split + "_texts.jsonl", split != "test");
    for (const auto& query : set.queries)
      EXPECT_TRUE(texts.insert(query.id).second) << "text id " << query.id << " reused";
  }
}

TEST_F(SynthDatasetTest, RelevantSetIsExactlyThePoolImagesWithTheSameAttributes) {
  for (const std::string split : {"train", "valid", "test"}) {
    const auto image_attributes =
        read_synth_attributes(path("meta/" + split + "_image_attributes.jsonl"));
    const auto query_attributes =
        read_synth_attributes(path("meta/" + split + "_query_attributes.jsonl"));
    const auto ids = pool(split);
    ASSERT_EQ(image_attributes.size(), ids.size()) << split;
    const QuerySet set =
        queries(split == "test" ? "answers/test_texts.jsonl" : split + "_texts.jsonl");
    ASSERT_EQ(query_attributes.size(), set.queries.size()) << split;
    for (const auto& query : set.queries) {
      const ProductAttributes& wanted = query_attributes.at(query.id);
      std::set<std::int64_t> same;
      for (auto id : ids) {
        if (image_attributes.at(id) == wanted) same.insert(id);
      }
      EXPECT_EQ(same, std::set<std::int64_t>(query.image_ids.begin(), query.image_ids.end()))
          << split << " query " << query.id;
      // Attributes are in range and consistent (an accent only with a pattern, and not the
      // main colour).
      EXPECT_GE(wanted.category, 0);
      EXPECT_LT(wanted.category, 10);
      EXPECT_LT(wanted.color, synth_num_colors());
      EXPECT_LT(wanted.pattern, synth_num_patterns());
      EXPECT_LT(wanted.print, synth_num_prints());
      EXPECT_EQ(wanted.pattern == 0, wanted.accent == -1);
      EXPECT_NE(wanted.accent, wanted.color);
    }
  }
}

TEST_F(SynthDatasetTest, EveryJpegDecodesAtTheScaleImageSize) {
  const int size = synth_scale("tiny").image_size;
  for (const std::string split : {"train", "valid", "test"}) {
    const std::string tsv = images_file(dir_->path(), split);
    BadRowLog log;
    const auto rows = index_images_tsv(tsv, log);
    ASSERT_FALSE(rows.empty());
    read_image_fields(tsv, rows, 0, rows.size(), [&](const ImageRow& row, std::string_view field) {
      const std::string bytes = decode_base64(field);
      EXPECT_EQ(probe_image(bytes).format, ImageFormat::kJpeg) << split << " " << row.id;
      const Image image = decode_image(bytes);
      EXPECT_EQ(image.width, size) << split << " " << row.id;
      EXPECT_EQ(image.height, size) << split << " " << row.id;
    });
  }
}

TEST_F(SynthDatasetTest, MetaFileDescribesTheRun) {
  const auto meta = nlohmann::json::parse(read_file(path("meta/synth.json")));
  EXPECT_EQ(meta.at("format"), "shopclip-synth");
  EXPECT_EQ(meta.at("format_version"), kSynthFormatVersion);
  EXPECT_EQ(meta.at("scale"), "tiny");
  EXPECT_EQ(meta.at("seed"), kSeed);
  EXPECT_EQ(meta.at("image_size"), synth_scale("tiny").image_size);
  ASSERT_EQ(meta.at("splits").size(), 3u);
  EXPECT_EQ(meta.at("splits")[1].at("queries"), summaries_[1].queries);
}

TEST(SynthImageSizeTest, OptionOverridesTheScaleDefault) {
  TempDir dir;
  SynthOptions options = tiny_options(dir.path(), 3, 2);
  options.image_size = 32;
  make_synthetic_dataset(options);
  BadRowLog log;
  const std::string tsv = images_file(dir.path(), "valid");
  const auto rows = index_images_tsv(tsv, log);
  ASSERT_FALSE(rows.empty());
  read_image_fields(tsv, rows, 0, 1, [](const ImageRow&, std::string_view field) {
    const Image image = decode_image(decode_base64(field));
    EXPECT_EQ(image.width, 32);
    EXPECT_EQ(image.height, 32);
  });
  options.image_size = 20;  // smaller than a Fashion-MNIST item
  EXPECT_THROW(make_synthetic_dataset(options), std::invalid_argument);
}

// ---- errors ---------------------------------------------------------------------------------

TEST(SynthErrorsTest, UnknownScaleThrowsInvalidArgument) {
  EXPECT_THROW(synth_scale("huge"), std::invalid_argument);
  TempDir dir;
  SynthOptions options = tiny_options(dir.path(), 1, 1);
  options.scale = "huge";
  try {
    make_synthetic_dataset(options);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(Contains(e.what(), "huge"));
  }
  EXPECT_EQ(synth_scale("tiny").name, "tiny");
  EXPECT_NO_THROW(synth_scale("demo"));
  EXPECT_NO_THROW(synth_scale("muge"));
}

TEST(SynthErrorsTest, MissingFashionMnistThrowsDataErrorNamingThePath) {
  TempDir dir;
  SynthOptions options = tiny_options(dir.file("out"), 1, 1);
  options.fashion_mnist_dir = dir.file("no-such-dir");
  try {
    make_synthetic_dataset(options);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), dir.file("no-such-dir")));
  }
}

TEST(SynthErrorsTest, MalformedAttributesFileNamesLine) {
  TempDir dir;
  shopclip::test_support::write_file(
      dir.file("a.jsonl"),
      "{\"image_id\": 1, \"category\": 2, \"color\": 3, \"pattern\": 0, \"accent\": -1, "
      "\"print\": 0}\n{\"image_id\": 2, \"category\": 2}\n");
  try {
    read_synth_attributes(dir.file("a.jsonl"));
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), dir.file("a.jsonl") + ":2: "));
  }
}

// ---- query texts and rendering ------------------------------------------------------------

ProductAttributes attributes_from(Rng& rng) {
  ProductAttributes a;
  a.category = rng.between(0, 9);
  a.color = rng.between(0, synth_num_colors() - 1);
  a.pattern = rng.between(0, synth_num_patterns() - 1);
  if (a.pattern > 0) {
    a.accent = (a.color + rng.between(1, synth_num_colors() - 1)) % synth_num_colors();
  }
  a.print = rng.between(0, synth_num_prints() - 1);
  return a;
}

TEST(SynthQueryTextTest, AlwaysNamesACategorySynonym) {
  for (int c = 0; c < 10; ++c)
    EXPECT_EQ(synth_category_name(c), synth_category_synonyms(c).front());
  Rng rng(11);
  for (int i = 0; i < 2000; ++i) {
    const ProductAttributes a = attributes_from(rng);
    const std::string text = synth_query_text(a, rng.next());
    const auto& names = synth_category_synonyms(a.category);
    EXPECT_TRUE(std::any_of(names.begin(), names.end(),
                            [&](const std::string& name) { return Contains(text, name); }))
        << text << " names no synonym of category " << a.category;
    EXPECT_TRUE(is_valid_utf8(text)) << text;
  }
}

TEST(SynthQueryTextTest, DeterministicPerSeedAndVaried) {
  ProductAttributes a;
  a.category = 3;
  a.color = 0;
  a.pattern = 1;
  a.accent = 9;
  a.print = 2;
  std::set<std::string> texts;
  for (std::uint64_t seed = 0; seed < 30; ++seed) {
    EXPECT_EQ(synth_query_text(a, seed), synth_query_text(a, seed));
    texts.insert(synth_query_text(a, seed));
  }
  EXPECT_GT(texts.size(), 10u);  // synonyms, order and fillers vary
}

// A 28x28 item: a filled, shaded blob, so the renderer has a silhouette to colour.
std::vector<std::uint8_t> test_item() {
  std::vector<std::uint8_t> item(28 * 28, 0);
  for (int y = 4; y < 24; ++y) {
    for (int x = 6; x < 22; ++x)
      item[y * 28 + x] = static_cast<std::uint8_t>(150 + 4 * (x - 6));
  }
  return item;
}

TEST(RenderProductTest, DeterministicPerSeed) {
  const auto item = test_item();
  ProductAttributes a;
  a.category = 0;
  a.color = 5;
  const Image first = render_product(item.data(), a, {48, 123});
  const Image second = render_product(item.data(), a, {48, 123});
  EXPECT_EQ(first.width, 48);
  EXPECT_EQ(first.height, 48);
  ASSERT_EQ(first.rgb.size(), 48u * 48u * 3u);
  EXPECT_EQ(first.rgb, second.rgb);
  EXPECT_NE(render_product(item.data(), a, {48, 124}).rgb, first.rgb);  // nuisances vary
}

TEST(RenderProductTest, AttributesChangeThePicture) {
  const auto item = test_item();
  ProductAttributes solid;
  solid.color = 0;  // red
  const RenderOptions options{64, 5};
  const Image base = render_product(item.data(), solid, options);
  ProductAttributes other_color = solid;
  other_color.color = 5;
  ProductAttributes striped = solid;
  striped.pattern = 1;
  striped.accent = 9;
  ProductAttributes printed = solid;
  printed.print = 1;
  EXPECT_NE(render_product(item.data(), other_color, options).rgb, base.rgb);
  EXPECT_NE(render_product(item.data(), striped, options).rgb, base.rgb);
  EXPECT_NE(render_product(item.data(), printed, options).rgb, base.rgb);
  // The main colour dominates the product: many pixels are reddish (R well above G and B).
  int red = 0;
  for (std::size_t i = 0; i < base.rgb.size(); i += 3) {
    if (base.rgb[i] > 120 && base.rgb[i + 1] < 80 && base.rgb[i + 2] < 80) ++red;
  }
  EXPECT_GT(red, 64 * 64 / 10);
}

// ---- single-attribute rankings --------------------------------------------------------------

// A MUGE-like eval split built in memory: distinct attribute combinations, each planted 1-11
// times in the pool, the pool shuffled.
struct EvalSplit {
  std::vector<std::int64_t> query_ids, pool_ids;
  std::unordered_map<std::int64_t, ProductAttributes> query_attributes, image_attributes;
  std::map<std::int64_t, std::set<std::int64_t>> relevant;
};

EvalSplit make_eval_split(int queries, std::uint64_t seed) {
  EvalSplit split;
  Rng rng(seed);
  std::set<std::int64_t> used;
  std::int64_t next_image = 5000;
  for (int q = 0; q < queries; ++q) {
    ProductAttributes a = attributes_from(rng);
    while (!used.insert(a.code()).second)
      a = attributes_from(rng);
    const std::int64_t query_id = 100 + q;
    split.query_ids.push_back(query_id);
    split.query_attributes[query_id] = a;
    const int group = rng.between(1, 11);
    for (int g = 0; g < group; ++g) {
      split.image_attributes[next_image] = a;
      split.pool_ids.push_back(next_image);
      split.relevant[query_id].insert(next_image++);
    }
  }
  rng.shuffle(split.pool_ids);
  return split;
}

// MeanRecall x 100 of rankings, as the official scorer computes it.
double mean_recall(const EvalSplit& split, const std::vector<std::vector<std::int64_t>>& ranks) {
  double sum = 0;
  for (int k : {1, 5, 10}) {
    int hits = 0;
    for (std::size_t q = 0; q < split.query_ids.size(); ++q) {
      const auto& relevant = split.relevant.at(split.query_ids[q]);
      const auto end = ranks[q].begin() + std::min<std::size_t>(k, ranks[q].size());
      hits += std::any_of(ranks[q].begin(), end, [&](auto id) { return relevant.count(id); });
    }
    sum += 100.0 * hits / split.query_ids.size();
  }
  return sum / 3;
}

int ProductAttributes::*field_of(const std::string& attribute) {
  if (attribute == "category") return &ProductAttributes::category;
  if (attribute == "color") return &ProductAttributes::color;
  if (attribute == "pattern") return &ProductAttributes::pattern;
  if (attribute == "accent") return &ProductAttributes::accent;
  return &ProductAttributes::print;
}

TEST(SingleAttributeRankingTest, MatchingImagesComeFirstAndNoAttributeSolvesTheTask) {
  const EvalSplit split = make_eval_split(1000, 21);
  for (const std::string attribute : {"category", "color", "pattern", "accent", "print"}) {
    const auto ranks = single_attribute_ranking(attribute, split.query_ids, split.query_attributes,
                                                split.pool_ids, split.image_attributes, 10, 3);
    ASSERT_EQ(ranks.size(), split.query_ids.size());
    const auto field = field_of(attribute);
    for (std::size_t q = 0; q < ranks.size(); ++q) {
      ASSERT_EQ(ranks[q].size(), 10u);
      EXPECT_EQ(std::set<std::int64_t>(ranks[q].begin(), ranks[q].end()).size(), 10u);
      const int wanted = split.query_attributes.at(split.query_ids[q]).*field;
      std::int64_t matching = 0;
      for (auto id : split.pool_ids)
        matching += split.image_attributes.at(id).*field == wanted;
      for (std::size_t r = 0; r < ranks[q].size(); ++r) {
        const bool matches = split.image_attributes.at(ranks[q][r]).*field == wanted;
        EXPECT_EQ(matches, static_cast<std::int64_t>(r) < matching)
            << attribute << " query " << split.query_ids[q] << " rank " << r;
      }
    }
    // The oracle (all attributes) would score 100; one attribute is far from it.
    const double score = mean_recall(split, ranks);
    EXPECT_LT(score, 50.0) << attribute;
    EXPECT_GT(score, 0.0) << attribute;  // but its matching images do include hits
  }
}

TEST(SingleAttributeRankingTest, FewMatchesAreFollowedByTheRestAndSeedIsDeterministic) {
  // Two queries, a pool where only one image shares query 1's colour.
  std::unordered_map<std::int64_t, ProductAttributes> query_attributes, image_attributes;
  ProductAttributes red, blue;
  red.color = 0;
  blue.color = 5;
  query_attributes[1] = red;
  query_attributes[2] = blue;
  std::vector<std::int64_t> pool;
  for (std::int64_t id = 10; id < 20; ++id) {
    image_attributes[id] = id == 13 ? red : blue;
    pool.push_back(id);
  }
  const auto ranks =
      single_attribute_ranking("color", {1, 2}, query_attributes, pool, image_attributes, 5, 9);
  ASSERT_EQ(ranks.size(), 2u);
  ASSERT_EQ(ranks[0].size(), 5u);
  EXPECT_EQ(ranks[0][0], 13);
  EXPECT_EQ(std::count(ranks[1].begin(), ranks[1].end(), 13), 0);
  EXPECT_EQ(ranks, single_attribute_ranking("color", {1, 2}, query_attributes, pool,
                                            image_attributes, 5, 9));
  // k larger than the pool returns the whole pool.
  EXPECT_EQ(single_attribute_ranking("color", {1}, query_attributes, pool, image_attributes, 50, 9)
                .at(0)
                .size(),
            pool.size());
  EXPECT_THROW(
      single_attribute_ranking("size", {1}, query_attributes, pool, image_attributes, 5, 9),
      std::invalid_argument);
}

}  // namespace
}  // namespace shopclip::data
