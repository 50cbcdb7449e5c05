// Tests for serve's batching engine (core/serve/query_service.h) on a real tiny dual encoder and a
// FAISS index of its image embeddings: answers equal eval's search path (search_predictions) for
// exact and approximate indexes whatever the batch and k mix, concurrent queries share forwards,
// the queue refuses beyond its capacity, shutdown answers everything accepted, and a failing
// forward fails its batch only.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/config.h"
#include "core/eval/evaluate.h"
#include "core/eval/index_store.h"
#include "core/eval/predictions.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "core/serve/metrics.h"
#include "core/serve/query_service.h"
#include "test_support.h"

namespace shopclip {
namespace {

const std::vector<std::string> kTexts = {
    "红色 连衣裙", "白色 条纹 衬衫", "黑色 皮鞋", "蓝色 牛仔裤", "运动鞋 男", "包包 女",
    "红色 皮鞋",   "白色 连衣裙",    "条纹 裙",   "黑色 包包",   "男 衬衫",   "蓝色 运动鞋"};

// Counts the text forwards (and their sizes) of the encoder it wraps; throws on demand.
class CountingEncoder final : public Encoder {
 public:
  explicit CountingEncoder(Encoder& inner) : inner_(inner) {}
  torch::Tensor encode_images(const torch::Tensor& images) override {
    return inner_.encode_images(images);
  }
  torch::Tensor encode_texts(const torch::Tensor& tokens) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      forwards_.push_back(tokens.size(0));
    }
    if (fail_next.exchange(false)) throw std::runtime_error("forward failed on purpose");
    return inner_.encode_texts(tokens);
  }
  std::int64_t dim() const override { return inner_.dim(); }
  bool normalized() const override { return inner_.normalized(); }
  int image_resolution() const override { return inner_.image_resolution(); }
  int context_length() const override { return inner_.context_length(); }
  const data::Tokenizer& tokenizer() const override { return inner_.tokenizer(); }

  std::vector<std::int64_t> forwards() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return forwards_;
  }
  std::atomic<bool> fail_next{false};

 private:
  Encoder& inner_;
  mutable std::mutex mutex_;
  std::vector<std::int64_t> forwards_;
};

// A tiny model, 300 pool images' embeddings and their ids, and index builders over them.
class QueryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(3);
    config_.model = test_support::tiny_model_config(ImageTowerType::kCnn);
    data::Tokenizer tokenizer(data::Vocab::build(kTexts));
    DualEncoder model(config_.model, tokenizer.vocab().size(), tokenizer.vocab().pad_id());
    adapter_ =
        std::make_unique<DualEncoderAdapter>(model, tokenizer, config_.model.text.context_length);
    const int r = config_.model.image.resolution;
    pool_ = adapter_->encode_images(torch::randn({300, 3, r, r}));
    for (std::int64_t i = 0; i < 300; ++i)
      ids_.push_back(5000 + 7 * i);
  }

  SavedIndex saved(const std::string& factory, const std::string& params) {
    config_.eval.index = factory;
    config_.eval.search_params = params;
    SavedIndex s{IndexManifest{}, build_pool_index(config_, pool_, 1), ids_, pool_};
    s.manifest.embed_dim = pool_.size(1);
    s.manifest.factory = factory;
    s.manifest.search_params = params;
    return s;
  }

  // What eval predicts for `texts` with this index: one forward, search_predictions.
  std::vector<data::Prediction> eval_predictions(const SavedIndex& s,
                                                 const std::vector<std::string>& texts, int k) {
    const auto queries = adapter_->encode_texts(tokenize(*adapter_, texts));
    std::vector<std::int64_t> query_ids(texts.size(), 0);
    return search_predictions(s.index, k, queries, s.pool, query_ids, s.ids);
  }

  Config config_;
  std::unique_ptr<DualEncoderAdapter> adapter_;
  torch::Tensor pool_;
  std::vector<std::int64_t> ids_;
};

TEST_F(QueryServiceTest, AnswersEqualEvalsSearchWhateverTheBatchAndK) {
  // Flat: exact. IVF16 probing one list: short lists completed. HNSW8 at efSearch 8: a larger k
  // searches more candidates, so queries of different k must not share a search.
  for (const auto& [factory, params] : std::vector<std::pair<std::string, std::string>>{
           {"Flat", ""}, {"IVF16,Flat", "nprobe=1"}, {"HNSW8", "efSearch=8"}}) {
    SCOPED_TRACE(factory);
    ServeMetrics metrics({"search"});
    QueryService service(*adapter_, saved(factory, params), {8, 50.0, 1024}, metrics);
    const SavedIndex reference = saved(factory, params);
    // Concurrent submissions of mixed k, so batches mix them.
    std::vector<std::future<SearchAnswer>> answers;
    std::vector<int> ks;
    for (std::size_t t = 0; t < kTexts.size(); ++t) {
      ks.push_back(t % 3 == 0 ? 40 : 10);
      answers.push_back(service.submit({kTexts[t]}, ks.back()));
    }
    for (std::size_t t = 0; t < kTexts.size(); ++t) {
      const SearchAnswer answer = answers[t].get();
      ASSERT_EQ(answer.hits.size(), 1u);
      const SearchHit& hit = answer.hits[0];
      const auto expected = eval_predictions(reference, {kTexts[t]}, ks[t]);
      EXPECT_EQ(hit.image_ids, expected[0].image_ids) << kTexts[t] << " k " << ks[t];
      ASSERT_EQ(hit.scores.size(), static_cast<std::size_t>(ks[t]));
      if (factory == "Flat") {
        for (std::size_t j = 1; j < hit.scores.size(); ++j) {
          EXPECT_GE(hit.scores[j - 1], hit.scores[j] - 1e-6f);
        }
      }
      // Scores are the inner products with the pool rows named.
      const auto query = adapter_->encode_texts(tokenize(*adapter_, {kTexts[t]}))[0];
      const auto row = (hit.image_ids[0] - 5000) / 7;
      EXPECT_NEAR(hit.scores[0], query.dot(pool_[row]).item<float>(), 1e-5);
    }
    // A batch request answers each of its queries as eval does over the whole list.
    const auto batch = service.submit(kTexts, 10).get();
    const auto expected = eval_predictions(reference, kTexts, 10);
    ASSERT_EQ(batch.hits.size(), kTexts.size());
    for (std::size_t t = 0; t < kTexts.size(); ++t) {
      EXPECT_EQ(batch.hits[t].image_ids, expected[t].image_ids) << kTexts[t];
    }
  }
}

TEST_F(QueryServiceTest, ConcurrentQueriesShareForwards) {
  CountingEncoder counting(*adapter_);
  ServeMetrics metrics({"search"});
  // Waits up to 2 s for a batch of 6: the six submissions below fill one batch long before.
  QueryService service(counting, saved("Flat", ""), {6, 2000.0, 1024}, metrics);
  std::vector<std::future<SearchAnswer>> answers;
  for (int i = 0; i < 6; ++i)
    answers.push_back(service.submit({kTexts[i]}, 10));
  for (auto& a : answers)
    EXPECT_EQ(a.get().hits[0].image_ids.size(), 10u);
  EXPECT_EQ(counting.forwards(), std::vector<std::int64_t>{6});
  // A batch request larger than max_batch is one forward of its own.
  EXPECT_EQ(service.submit(kTexts, 5).get().hits.size(), kTexts.size());
  EXPECT_EQ(counting.forwards().back(), static_cast<std::int64_t>(kTexts.size()));
  EXPECT_TRUE(
      test_support::Contains(metrics.prometheus_text(), "shopclip_serve_batch_queries_count 2\n"));
}

TEST_F(QueryServiceTest, RefusesBeyondItsQueueAndValidatesArguments) {
  ServeMetrics metrics({"search"});
  // Capacity 4; a long batch window keeps the first queries waiting.
  QueryService service(*adapter_, saved("Flat", ""), {64, 1000.0, 4}, metrics);
  auto a = service.submit({kTexts[0], kTexts[1]}, 10);
  // The worker takes the first request into its batch and waits for more: still counted.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(service.queue_depth(), 2);
  auto b = service.submit({kTexts[2], kTexts[3]}, 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(service.queue_depth(), 4);
  test_support::expect_throw_containing<QueueFull>([&] { service.submit({kTexts[4]}, 10); },
                                                   "the queue holds 4");
  EXPECT_EQ(a.get().hits.size(), 2u);
  EXPECT_EQ(b.get().hits.size(), 2u);
  EXPECT_EQ(service.queue_depth(), 0);
  // With nothing waiting, a request larger than the queue is still served.
  EXPECT_EQ(service.submit(kTexts, 10).get().hits.size(), kTexts.size());
  EXPECT_THROW(service.submit({kTexts[0]}, 0), std::invalid_argument);
  EXPECT_THROW(service.submit({kTexts[0]}, 301), std::invalid_argument);
  EXPECT_THROW(service.submit({}, 10), std::invalid_argument);
}

TEST_F(QueryServiceTest, ShutdownAnswersEverythingAccepted) {
  ServeMetrics metrics({"search"});
  auto service = std::make_unique<QueryService>(*adapter_, saved("Flat", ""),
                                                QueryServiceOptions{5, 5000.0, 1024}, metrics);
  std::vector<std::future<SearchAnswer>> answers;
  for (std::size_t i = 0; i < kTexts.size(); ++i)
    answers.push_back(service->submit({kTexts[i]}, 10));
  const auto start = std::chrono::steady_clock::now();
  service->shutdown();  // does not wait out the 5 s batch window
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  for (auto& a : answers) {
    ASSERT_EQ(a.wait_for(std::chrono::seconds(0)), std::future_status::ready);
    EXPECT_EQ(a.get().hits[0].image_ids.size(), 10u);
  }
  EXPECT_THROW(service->submit({kTexts[0]}, 10), ShuttingDown);
  service->shutdown();  // idempotent
}

TEST_F(QueryServiceTest, AFailedForwardFailsItsBatchOnly) {
  CountingEncoder counting(*adapter_);
  ServeMetrics metrics({"search"});
  QueryService service(counting, saved("Flat", ""), {8, 0.0, 1024}, metrics);
  counting.fail_next = true;
  auto failed = service.submit({kTexts[0]}, 10);
  test_support::expect_throw_containing<std::runtime_error>([&] { failed.get(); },
                                                            "forward failed on purpose");
  EXPECT_EQ(service.submit({kTexts[1]}, 10).get().hits[0].image_ids.size(), 10u);
  EXPECT_EQ(service.queue_depth(), 0);
}

TEST_F(QueryServiceTest, RefusesAnIndexOfAnotherWidthAndBadOptions) {
  ServeMetrics metrics({"search"});
  SavedIndex other = saved("Flat", "");
  other.manifest.embed_dim = 7;
  EXPECT_THROW(QueryService(*adapter_, std::move(other), {}, metrics), std::invalid_argument);
  EXPECT_THROW(QueryService(*adapter_, saved("Flat", ""), {0, 1.0, 8}, metrics),
               std::invalid_argument);
  EXPECT_THROW(QueryService(*adapter_, saved("Flat", ""), {8, -1.0, 8}, metrics),
               std::invalid_argument);
  EXPECT_THROW(QueryService(*adapter_, saved("Flat", ""), {8, 1.0, 0}, metrics),
               std::invalid_argument);
}

}  // namespace
}  // namespace shopclip
