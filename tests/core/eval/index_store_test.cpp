// Tests for saved indexes (core/eval/index_store.h) and the index operations under them
// (core/eval/retrieval.h): a written index reads back searching exactly as before (a plain Flat
// index, two shards, an IVF index with its search parameters), search parameters reach every
// shard and unknown ones are refused, and a missing folder, another format version or another
// model's index are refused naming the file and field.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/config.h"
#include "core/eval/evaluate.h"
#include "core/eval/index_store.h"
#include "core/eval/retrieval.h"
#include "data/error.h"
#include "test_support.h"

namespace shopclip {
namespace {

using test_support::TempDir;

torch::Tensor unit(torch::Tensor x) {
  return (x / x.norm(2, 1, true)).contiguous();
}

struct Results {
  std::vector<std::int64_t> rows;
  std::vector<float> scores;
};

Results search(const EmbeddingIndex& index, const torch::Tensor& queries, int k) {
  Results r;
  index.search(queries.data_ptr<float>(), queries.size(0), k, r.rows, r.scores);
  return r;
}

std::vector<std::int64_t> ids_of(std::int64_t n) {
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < n; ++i)
    ids.push_back(1000 + 3 * i);
  return ids;
}

IndexManifest manifest_for(const std::string& factory, const std::string& params) {
  IndexManifest m;
  m.checkpoint = "runs/x/checkpoints/best.pt";
  m.xxh64 = "0123456789abcdef";
  m.embed_dim = 8;
  m.factory = factory;
  m.search_params = params;
  m.split = "valid";
  return m;
}

TEST(SavedIndex, RoundTripsSearchingAsBefore) {
  torch::manual_seed(1);
  const auto pool = unit(torch::randn({300, 8}));
  const auto queries = unit(torch::randn({20, 8}));
  Config config;
  struct Case {
    std::string factory, params;
    int shards;
  };
  for (const Case& c : {Case{"Flat", "", 1}, Case{"Flat", "", 2}, Case{"IVF8,Flat", "nprobe=3", 1},
                        Case{"IVF8,Flat", "nprobe=3", 2}}) {
    SCOPED_TRACE(c.factory + " " + c.params + " shards " + std::to_string(c.shards));
    config.eval.index = c.factory;
    config.eval.search_params = c.params;
    const EmbeddingIndex index = build_pool_index(config, pool, c.shards);
    const Results before = search(index, queries, 10);
    TempDir dir;
    write_saved_index(dir.path(), index, manifest_for(c.factory, c.params), ids_of(300), pool);
    const SavedIndex saved = read_saved_index(dir.path());
    EXPECT_EQ(saved.manifest.factory, c.factory);
    EXPECT_EQ(saved.manifest.search_params, c.params);
    EXPECT_EQ(saved.manifest.count, 300);
    EXPECT_EQ(saved.manifest.shards.size(), static_cast<std::size_t>(c.shards));
    EXPECT_EQ(saved.index.shards(), c.shards);
    EXPECT_EQ(saved.ids, ids_of(300));
    EXPECT_TRUE(torch::allclose(saved.pool, pool, 0, 1e-3));  // stored in fp16
    const Results after = search(saved.index, queries, 10);
    EXPECT_EQ(after.rows, before.rows);
    EXPECT_EQ(after.scores, before.scores);
  }
}

// nprobe reaches every shard: with all 8 lists probed an IVF index searches exhaustively, so it
// returns the exact top 10; with one list probed it does not (for these random vectors).
TEST(SavedIndex, SearchParametersReachEveryShard) {
  torch::manual_seed(2);
  const auto pool = unit(torch::randn({400, 8}));
  const auto queries = unit(torch::randn({30, 8}));
  Config config;
  config.eval.index = "Flat";
  const Results exact = search(build_pool_index(config, pool, 1), queries, 10);
  config.eval.index = "IVF8,Flat";
  config.eval.search_params = "nprobe=8";
  EXPECT_EQ(search(build_pool_index(config, pool, 2), queries, 10).rows, exact.rows);
  config.eval.search_params = "nprobe=1";
  EXPECT_NE(search(build_pool_index(config, pool, 2), queries, 10).rows, exact.rows);
  config.eval.search_params = "nprobee=8";
  test_support::expect_throw_containing<std::invalid_argument>(
      [&] { build_pool_index(config, pool, 1); }, "nprobee=8");
}

TEST(SavedIndex, RefusesMissingOtherVersionAndOtherModel) {
  TempDir dir;
  test_support::expect_throw_containing<data::DataError>([&] { read_saved_index(dir.path()); },
                                                         dir.path() + "/manifest.json");
  torch::manual_seed(3);
  const auto pool = unit(torch::randn({50, 8}));
  Config config;
  write_saved_index(dir.path(), build_pool_index(config, pool, 1), manifest_for("Flat", ""),
                    ids_of(50), pool);
  const SavedIndex saved = read_saved_index(dir.path());
  EXPECT_NO_THROW(check_index_model(saved.manifest, dir.path(), "0123456789abcdef", 8));
  test_support::expect_throw_containing<data::DataError>(
      [&] { check_index_model(saved.manifest, dir.path(), "fedcba9876543210", 8); }, "model.xxh64");
  test_support::expect_throw_containing<data::DataError>(
      [&] { check_index_model(saved.manifest, dir.path(), "0123456789abcdef", 16); },
      "model.embed_dim");
  std::string manifest = test_support::read_file(dir.file("manifest.json"));
  const auto at = manifest.find("\"format_version\": 1");
  ASSERT_NE(at, std::string::npos);
  manifest.replace(at, 19, "\"format_version\": 2");
  test_support::write_file(dir.file("manifest.json"), manifest);
  test_support::expect_throw_containing<data::DataError>([&] { read_saved_index(dir.path()); },
                                                         "format_version 2");
}

}  // namespace
}  // namespace shopclip
