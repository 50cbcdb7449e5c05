// Distillation on the tiny built-in dataset: a teacher run, its embedding cache (equal to direct
// encoding, resumable, refused when stale) and students trained from it.

#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/eval/embeddings.h"
#include "core/eval/retrieval.h"
#include "core/log.h"
#include "core/model/chinese_clip.h"
#include "core/model/chinese_clip_config.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "core/train/teacher_cache.h"
#include "core/train/train_data.h"
#include "core/train/trainer.h"
#include "data/embedding_file.h"
#include "data/error.h"
#include "data/files.h"
#include "data/loader.h"
#include "data/muge.h"
#include "data/prep.h"
#include "data/safetensors.h"
#include "data/shards.h"
#include "data/synth.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "test_paths.h"
#include "test_support.h"
#include "tiny_dataset.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;

// The tiny dataset, prepared, and a teacher trained on it once for the suite: a wider model
// (64 dims) than configs/tiny.yaml's 32-dim student.
class Distillation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test_support::TempDir();
    test_support::make_tiny_dataset(dir_->file("data"), 5);
    const Config config = student_config("unused");
    for (const std::string split : {"train", "valid"})
      test_support::prepare_split(config, split);
    dist::SingleProcessCommunicator comm;
    Logger log;
    Trainer(teacher_config(), comm, TrainOptions{}, log).run();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static Config student_config(const std::string& run, std::vector<std::string> overrides = {}) {
    overrides.insert(overrides.begin(),
                     {"data.root=" + dir_->file("data"), "run.dir=" + dir_->file(run),
                      "train.batch_size=64", "train.epochs=2"});
    return Config::load(SHOPCLIP_SOURCE_DIR "/configs/tiny.yaml", overrides);
  }
  static Config teacher_config() {
    return student_config("teacher", {"model.embed_dim=64", "model.text.width=64",
                                      "model.text.mlp=128", "train.epochs=3"});
  }
  static std::string teacher_checkpoint() { return dir_->file("teacher/checkpoints/best.pt"); }

  // Writes a cache of the teacher in `folder` (one process); with `config` distill.views > 0,
  // its augmented views as `distill cache` draws them for that student config.
  static TeacherCacheManifest write_cache(const std::string& folder, std::int64_t chunk_rows,
                                          const Config& config = student_config("unused")) {
    LoadedModel teacher = load_model(teacher_checkpoint());
    DualEncoderAdapter encoder(teacher.model, data::Tokenizer(teacher.vocab),
                               teacher.config.model.text.context_length);
    const std::string prep_dir = config.prep_split_dir("train");
    data::ImageStore images(prep_dir, data::prep_params(32));
    const data::QuerySet queries = training_queries(config);
    TeacherCacheInputs inputs;
    inputs.teacher = &encoder;
    inputs.identity.checkpoint = teacher_checkpoint();
    inputs.identity.xxh64 = "0123456789abcdef";
    inputs.identity.kind = "shopclip";
    inputs.identity.logit_scale = teacher.model->logit_scale().item<double>();
    inputs.identity.image_resolution = 32;
    inputs.identity.context_length = encoder.context_length();
    inputs.images = &images;
    inputs.images_prep_dir = prep_dir;
    inputs.queries = &queries;
    inputs.batch_size = 50;
    inputs.chunk_rows = chunk_rows;
    if (config.distill.views > 0) {
      inputs.views = config.distill.views;
      inputs.view_seed = static_cast<std::uint64_t>(config.run.seed);
      inputs.view_recipe = image_view_recipe(config.train);
      inputs.view_augmentations = make_train_image_augmentations(config.train);
      inputs.threads = 2;
    }
    dist::SingleProcessCommunicator comm;
    Logger log;
    return write_teacher_cache(inputs, folder, comm, log);
  }
  static data::QuerySet training_queries(const Config& config) {
    data::QuerySchema schema;
    const std::string path = data::find_queries_file(config.data.root, "train", &schema);
    data::BadRowLog bad_rows;
    data::QueryReadOptions options;
    options.require_image_ids = false;
    return data::read_queries(path, schema, bad_rows, options);
  }

  // `key` of the first train row of a run's metrics.jsonl.
  static double first_train_value(const std::string& run_dir, const std::string& key) {
    data::LineReader reader(run_dir + "/metrics.jsonl");
    data::Line line;
    while (reader.next(&line)) {
      const auto row = nlohmann::json::parse(line.text);
      if (row["type"] == "train") return row[key].get<double>();
    }
    ADD_FAILURE() << "no train row in " << run_dir;
    return -1.0;
  }

  // Trains a student `name`-cached from a cache (settings `common` + `cached`) and one
  // `name`-online with an online teacher (`common` + `online`), one epoch each, and checks that
  // their first step's feature-distillation losses agree up to the cache's float16 rounding
  // (same seed, batches and initial weights) and that both map into `teacher_dim` dimensions.
  void expect_online_equals_cached(const std::string& name, std::vector<std::string> common,
                                   const std::vector<std::string>& cached,
                                   const std::vector<std::string>& online, int teacher_dim) {
    common.insert(common.end(),
                  {"distill.feature_weight=1", "train.log_every=1", "train.epochs=1"});
    auto with = [&](std::vector<std::string> extra) {
      extra.insert(extra.end(), common.begin(), common.end());
      return extra;
    };
    Trainer(student_config(name + "-cached", with(cached)), comm_, TrainOptions{}, log_).run();
    Trainer(student_config(name + "-online", with(online)), comm_, TrainOptions{}, log_).run();
    const double cached_loss = first_train_value(dir_->file(name + "-cached"), "distill_feature");
    const double online_loss = first_train_value(dir_->file(name + "-online"), "distill_feature");
    EXPECT_GT(cached_loss, 0.01);
    EXPECT_NEAR(online_loss, cached_loss, 2e-3 * cached_loss);
    for (const std::string& run : {name + "-cached", name + "-online"}) {
      EXPECT_EQ(Config::load(dir_->file(run + "/config.yaml")).model.distill_dim, teacher_dim)
          << run;
    }
  }

  static test_support::TempDir* dir_;
  dist::SingleProcessCommunicator comm_;
  Logger log_;
};
test_support::TempDir* Distillation::dir_ = nullptr;

TEST_F(Distillation, TheCacheHoldsTheTeachersEmbeddingsOfEveryRow) {
  const std::string folder = dir_->file("cache-equal");
  const auto manifest = write_cache(folder, 100);
  EXPECT_EQ(manifest.teacher.dim, 64);
  EXPECT_GT(manifest.parts.size(), 2u);  // the tiny split in chunks of 100 rows

  const Config config = student_config("unused");
  data::ImageStore images(config.prep_split_dir("train"), data::prep_params(32));
  const data::QuerySet queries = training_queries(config);
  const TeacherEmbeddings cached(folder, images, config.prep_split_dir("train"), queries);

  LoadedModel teacher = load_model(teacher_checkpoint());
  DualEncoderAdapter encoder(teacher.model, data::Tokenizer(teacher.vocab),
                             teacher.config.model.text.context_length);
  const auto direct_images = encode_images(encoder, images, 64);
  std::vector<std::int64_t> rows(static_cast<std::size_t>(images.size()));
  for (std::size_t r = 0; r < rows.size(); ++r)
    rows[r] = static_cast<std::int64_t>(r);
  // float16 storage: about 3 significant digits of a unit vector's entries.
  EXPECT_TRUE(torch::allclose(cached.images(rows), direct_images, 0, 2e-3));
  std::vector<std::string> texts;
  std::vector<std::int64_t> query_rows;
  for (std::size_t q = 0; q < queries.queries.size(); ++q) {
    texts.push_back(queries.queries[q].text);
    query_rows.push_back(static_cast<std::int64_t>(q));
  }
  EXPECT_TRUE(
      torch::allclose(cached.queries(query_rows), encode_texts(encoder, texts, 64), 0, 2e-3));

  // The saved index of the teacher's images searches as an exact search over the rows training
  // reads (the same scores at every rank; the tiny data's duplicate images tie, in either
  // order); a run whose store lists the images in another order does not get it.
  const auto saved = read_teacher_index(folder, cached.manifest(), images.ids());
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(saved->manifest.count, images.size());
  const auto all_images = cached.all_images().contiguous();
  const auto all_queries = cached.all_queries().contiguous();
  std::vector<std::int64_t> saved_rows, exact_rows;
  std::vector<float> saved_scores, exact_scores;
  saved->index.search(all_queries.data_ptr<float>(), all_queries.size(0), 10, saved_rows,
                      saved_scores);
  exact_top_k(all_queries.data_ptr<float>(), all_queries.size(0), all_images.data_ptr<float>(),
              all_images.size(0), static_cast<int>(all_images.size(1)), 10, exact_rows,
              exact_scores);
  EXPECT_EQ(saved_scores, exact_scores);
  auto reversed = images.ids();
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_FALSE(read_teacher_index(folder, cached.manifest(), reversed).has_value());
}

TEST_F(Distillation, AnInterruptedCacheResumesKeepingFinishedParts) {
  const std::string folder = dir_->file("cache-resume");
  const auto manifest = write_cache(folder, 100);
  ASSERT_GE(manifest.parts.size(), 3u);
  const std::string kept = folder + "/" + manifest.parts[0].file;
  const std::string lost = folder + "/" + manifest.parts[1].file;
  const auto kept_time = fs::last_write_time(kept);
  fs::remove(lost);
  fs::remove(folder + "/manifest.json");
  std::ofstream(lost + ".tmp") << "half-written";  // an interrupted write leaves its .tmp
  write_cache(folder, 100);
  EXPECT_EQ(fs::last_write_time(kept), kept_time);  // not written again
  EXPECT_TRUE(fs::exists(lost));
  EXPECT_TRUE(fs::exists(folder + "/manifest.json"));
  // A part file of other rows (another chunk size) is not taken for a finished one.
  const auto rechunked = write_cache(folder, 150);
  EXPECT_EQ(rechunked.parts[0].rows, 150);
  EXPECT_EQ(data::read_embedding_file(folder + "/" + rechunked.parts[0].file).ids.size(0), 150);
}

TEST_F(Distillation, AStaleCacheIsRefusedNamingTheField) {
  const std::string folder = dir_->file("cache-stale");
  write_cache(folder, 1000);
  const Config config = student_config("unused");
  data::ImageStore images(config.prep_split_dir("train"), data::prep_params(32));
  data::QuerySet queries = training_queries(config);
  // The queries file changed since caching.
  const std::string copy = dir_->file("changed_train_texts.jsonl");
  fs::copy_file(queries.file, copy);
  std::ofstream(copy, std::ios::app) << "\n";
  data::QuerySet changed = queries;
  changed.file = copy;
  test_support::expect_throw_containing<data::DataError>(
      [&] { TeacherEmbeddings(folder, images, config.prep_split_dir("train"), changed); },
      "queries.xxh64");
  // A training query the cache has never seen.
  data::QuerySet extra = queries;
  extra.queries.push_back({987654321, "一件新的衣服", {}, 0});
  test_support::expect_throw_containing<data::DataError>(
      [&] { TeacherEmbeddings(folder, images, config.prep_split_dir("train"), extra); },
      "query id 987654321");
  // A run naming another teacher than the one that made the cache (write_cache records a
  // made-up hash).
  Config student = student_config("stale-student",
                                  {"distill.teacher=" + dir_->file("teacher"),
                                   "distill.teacher_cache=" + folder, "distill.feature_weight=1"});
  test_support::expect_throw_containing<data::DataError>(
      [&] { Trainer(student, comm_, TrainOptions{}, log_).run(); }, "teacher.xxh64");
}

TEST_F(Distillation, ZeroWeightsTrainExactlyAsWithoutATeacher) {
  const std::string folder = dir_->file("cache-zero");
  write_cache(folder, 1000);
  Trainer(student_config("plain"), comm_, TrainOptions{}, log_).run();
  Trainer(student_config("zero", {"distill.teacher_cache=" + folder}), comm_, TrainOptions{}, log_)
      .run();
  const auto difference = weight_difference(dir_->file("plain/checkpoints/last.pt"),
                                            dir_->file("zero/checkpoints/last.pt"));
  EXPECT_EQ(difference.absolute, 0.0) << difference.worst_absolute;
}

TEST_F(Distillation, AStudentLearnsFromEveryTerm) {
  const std::string folder = dir_->file("cache-student");
  const auto manifest = write_cache(folder, 1000);
  const Config config = student_config(
      "student", {"distill.teacher_cache=" + folder, "distill.feature_weight=1",
                  "distill.contrastive_weight=0.5", "distill.relational_weight=0.5",
                  "distill.teacher_negatives=true", "train.epochs=3", "train.log_every=1"});
  Trainer(config, comm_, TrainOptions{}, log_).run();

  // The run records what it resolved from the cache: the projection's width (the teacher has 64
  // dimensions, the student 32) and the teacher's temperature.
  const Config resolved = Config::load(dir_->file("student/config.yaml"));
  EXPECT_EQ(resolved.model.distill_dim, 64);
  EXPECT_NEAR(resolved.distill.teacher_temperature, 1.0 / manifest.teacher.logit_scale, 1e-12);

  // Every term is logged, and feature distillation falls as the student trains.
  std::vector<double> feature;
  data::LineReader reader(dir_->file("student/metrics.jsonl"));
  data::Line line;
  while (reader.next(&line)) {
    const auto row = nlohmann::json::parse(line.text);
    if (row["type"] != "train") continue;
    ASSERT_TRUE(row.contains("distill_contrastive")) << row.dump();
    ASSERT_TRUE(row.contains("distill_relational")) << row.dump();
    feature.push_back(row["distill_feature"].get<double>());
  }
  ASSERT_GE(feature.size(), 4u);
  EXPECT_LT(feature.back(), 0.8 * feature.front());

  // The teacher's negatives, found in the cache's saved index, were placed in every epoch's
  // batches.
  const std::string log_text = test_support::read_file(dir_->file("student/log.txt"));
  EXPECT_TRUE(test_support::Contains(log_text, "the teacher's hard negatives"));
  EXPECT_TRUE(test_support::Contains(log_text, "searched the cache's saved index"));
  for (int epoch = 1; epoch <= 3; ++epoch) {
    const std::string line = "distill: epoch " + std::to_string(epoch) + " places ";
    const auto at = log_text.find(line);
    ASSERT_NE(at, std::string::npos) << line;
    EXPECT_GT(std::stoll(log_text.substr(at + line.size())), 0) << line;
  }

  // The student's checkpoint holds its projections and loads as any other model.
  LoadedModel student = load_model(dir_->file("student/checkpoints/best.pt"));
  EXPECT_EQ(student.config.model.distill_dim, 64);
  const auto embeddings = student.model->encode_text(torch::ones({2, 24}, torch::kLong));
  EXPECT_EQ(embeddings.size(1), 32);
}

// distill.online: the teacher runs in the step on the student's batch. With every augmentation
// off that batch is the stored one, so its rows are the cache's (up to the cache's float16
// rounding): the first step's feature-distillation loss of an online student equals a cached
// student's (same seed, same batches, same initial weights). It needs no cache folder, and the
// projection width comes from the teacher checkpoint. (e2e.distill runs one on 2 ranks.)
TEST_F(Distillation, AnOnlineTeacherGivesTheCachedRowsWithoutACache) {
  const std::string folder = dir_->file("cache-online");
  write_cache(folder, 1000);
  expect_online_equals_cached("student", {}, {"distill.teacher_cache=" + folder},
                              {"distill.teacher=" + dir_->file("teacher"), "distill.online=true"},
                              64);
}

// An imported Chinese-CLIP model (the test fixture's shapes, 32-pixel images, 24 dimensions,
// random weights saved as a converted checkpoint is) as the teacher of a 32-dimension student.
TEST_F(Distillation, AnImportedChineseClipModelTeaches) {
  const std::string fixture = SHOPCLIP_SOURCE_DIR "/tests/fixtures/chinese_clip_tiny";
  torch::manual_seed(8);
  ChineseClip clip(
      ChineseClipConfig::from_json_files(fixture + "/vision.json", fixture + "/text.json"));
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : clip->named_parameters(true))
    state[item.key()] = item.value().detach().clone();
  for (const auto& item : clip->named_buffers(true))
    state[item.key()] = item.value().detach().clone();
  const std::string weights = dir_->file("cnclip.safetensors");
  data::write_safetensors(weights, state);
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  while (tokens.size() < 21128)
    tokens.push_back("tok" + std::to_string(tokens.size()));
  const std::string vocab = dir_->file("cnclip_vocab.txt");
  data::Vocab::from_tokens(tokens).save(vocab);

  ImportedChineseClip imported =
      load_imported_chinese_clip(fixture + "/vision.json", fixture + "/text.json", weights, vocab);
  ChineseClipEncoder encoder(imported.model, data::Tokenizer(imported.vocab), 24,
                             /*normalize=*/true);
  const Config config = student_config("unused");
  const std::string prep_dir = config.prep_split_dir("train");
  data::ImageStore images(prep_dir, data::prep_params(32));
  const data::QuerySet queries = training_queries(config);
  TeacherCacheInputs inputs;
  inputs.teacher = &encoder;
  inputs.identity.checkpoint = weights;
  inputs.identity.xxh64 = fmt::format("{:016x}", data::xxh64_file(weights));
  inputs.identity.kind = "chinese_clip";
  inputs.identity.logit_scale = imported.model->log_logit_scale().exp().item<double>();
  inputs.identity.image_resolution = 32;
  inputs.identity.context_length = 24;
  inputs.images = &images;
  inputs.images_prep_dir = prep_dir;
  inputs.queries = &queries;
  const std::string folder = dir_->file("cache-cnclip");
  const auto manifest = write_teacher_cache(inputs, folder, comm_, log_);
  EXPECT_EQ(manifest.teacher.dim, 24);

  // Students of the cache and of the same model as an online teacher (its files in distill.*):
  // its rows are the cache's (no augmentation, the same 32-pixel images and 24 tokens).
  expect_online_equals_cached(
      "cnclip", {"distill.teacher=" + weights}, {"distill.teacher_cache=" + folder},
      {"distill.online=true", "distill.teacher_vision_config=" + fixture + "/vision.json",
       "distill.teacher_text_config=" + fixture + "/text.json", "distill.teacher_vocab=" + vocab,
       "distill.teacher_context_length=24"},
      24);
}

// Stored augmented views (distill.views): the cache holds the teacher's embedding of each view
// as the student's loader draws it, training reads the row of the view each batch row shows, and
// a cache of other views (count, seed, augmentations) is refused naming the field.
TEST_F(Distillation, AugmentedViewsAreCachedAndReadForTheViewEachRowShows) {
  const std::vector<std::string> augment = {"distill.views=3", "train.image_augment.hflip=0.5",
                                            "train.image_augment.brightness=0.4",
                                            "train.max_shift=3"};
  const Config config = student_config("unused", augment);
  const std::string folder = dir_->file("cache-views");
  const auto manifest = write_cache(folder, 150, config);
  EXPECT_EQ(manifest.views, 3);
  EXPECT_EQ(manifest.view_recipe, image_view_recipe(config.train));
  EXPECT_TRUE(test_support::Contains(manifest.view_recipe, "hflip=0.5"));
  EXPECT_TRUE(fs::exists(folder + "/images-v02-00000.h5"));
  EXPECT_EQ(read_teacher_cache_manifest(folder).view_seed, 7u);  // configs/tiny.yaml's run.seed

  data::ImageStore images(config.prep_split_dir("train"), data::prep_params(32));
  const data::QuerySet queries = training_queries(config);
  const TeacherEmbeddings cached(folder, images, config.prep_split_dir("train"), queries);
  LoadedModel teacher = load_model(teacher_checkpoint());
  DualEncoderAdapter encoder(teacher.model, data::Tokenizer(teacher.vocab),
                             teacher.config.model.text.context_length);
  const auto chain = make_train_image_augmentations(config.train);
  const std::vector<std::int64_t> rows = {0, 5, 77, images.size() - 1};
  double largest_view_gap = 0;
  for (int view = 0; view < 3; ++view) {
    const std::vector<int> views(rows.size(), view);
    const auto direct = unit_rows(encoder.encode_images(
        data::normalize_pixels(data::augmented_views(images, rows, views, 7, chain, 1))));
    EXPECT_TRUE(torch::allclose(cached.image_views(rows, views), direct, 0, 2e-3)) << view;
    largest_view_gap = std::max(
        largest_view_gap, (cached.image_views(rows, views) - cached.image_views(rows, {0, 0, 0, 0}))
                              .abs()
                              .max()
                              .item<double>());
  }
  EXPECT_GT(largest_view_gap, 1e-2);  // the views are different images to the teacher
  // An image's row is the direction of its views' mean.
  const auto mean =
      unit_rows(cached.image_views(rows, {0, 0, 0, 0}) + cached.image_views(rows, {1, 1, 1, 1}) +
                cached.image_views(rows, {2, 2, 2, 2}));
  EXPECT_TRUE(torch::allclose(cached.images(rows), mean, 0, 1e-5));

  // A loader drawing these views, with the cache's rows as its extension: each row's teacher
  // embedding is the teacher's encoding of exactly the pixels the row shows.
  data::LoaderInputs inputs;
  inputs.images = &images;
  for (std::size_t q = 0; q < queries.queries.size(); ++q) {
    for (const auto id : queries.queries[q].image_ids) {
      if (const auto row = images.row_of(id)) inputs.pairs.push_back({std::int64_t(q), *row});
    }
  }
  for (const auto& query : queries.queries)
    inputs.query_texts.push_back(query.text);
  inputs.tokenizer = &encoder.tokenizer();
  inputs.context_length = encoder.context_length();
  data::LoaderOptions options;
  options.local_batch = 16;
  options.seed = 7;
  options.image_augmentations = chain;
  options.image_views = 3;
  auto shared = std::make_shared<const TeacherEmbeddings>(folder, images,
                                                          config.prep_split_dir("train"), queries);
  options.extensions.push_back(std::make_shared<TeacherRows>(shared));
  const data::PairLoader loader(std::move(inputs), options);
  const data::Batch batch = loader.load(1, 2);
  ASSERT_EQ(batch.views.size(), 16u);
  EXPECT_TRUE(torch::allclose(batch.extras.at(kTeacherImagesExtra),
                              unit_rows(encoder.encode_images(batch.images)), 0, 2e-3));

  // Refusals, each naming the manifest field.
  const std::uint64_t seed = 7;
  const std::string recipe = image_view_recipe(config.train);
  EXPECT_NO_THROW(cached.check_views(3, seed, recipe));
  test_support::expect_throw_containing<data::DataError>(
      [&] { cached.check_views(2, seed, recipe); }, "views is 3 augmented views");
  test_support::expect_throw_containing<data::DataError>(
      [&] { cached.check_views(0, seed, recipe); }, "views");
  test_support::expect_throw_containing<data::DataError>(
      [&] { cached.check_views(3, seed + 1, recipe); }, "view_recipe.seed");
  test_support::expect_throw_containing<data::DataError>(
      [&] { cached.check_views(3, seed, recipe + "x"); }, "view_recipe.augmentations");
  write_cache(dir_->file("cache-stored"), 1000);
  const TeacherEmbeddings stored(dir_->file("cache-stored"), images, config.prep_split_dir("train"),
                                 queries);
  test_support::expect_throw_containing<data::DataError>(
      [&] { stored.check_views(3, seed, recipe); }, "holds the stored images");

  // A student trains from the views; one that augments otherwise is refused before training.
  std::vector<std::string> student = augment;
  for (const std::string& s :
       {"distill.teacher_cache=" + folder, std::string("distill.feature_weight=1"),
        std::string("train.epochs=1")})
    student.push_back(s);
  Trainer(student_config("views-student", student), comm_, TrainOptions{}, log_).run();
  EXPECT_TRUE(fs::exists(dir_->file("views-student/checkpoints/best.pt")));
  student.push_back("train.image_augment.hflip=0.25");
  test_support::expect_throw_containing<data::DataError>(
      [&] { Trainer(student_config("views-other", student), comm_, TrainOptions{}, log_).run(); },
      "view_recipe.augmentations");
  // Not with an online teacher, which sees every augmented image anyway.
  test_support::expect_throw_containing<ConfigError>(
      [&] {
        Trainer(student_config("views-online", {"distill.views=2", "distill.online=true",
                                                "distill.teacher=" + teacher_checkpoint(),
                                                "distill.feature_weight=1"}),
                comm_, TrainOptions{}, log_)
            .run();
      },
      "distill.views");
}

TEST_F(Distillation, MixGenIsRefusedBesideACachedTeacher) {
  const Config config = student_config("mixgen", {"distill.teacher_cache=" + dir_->file("none"),
                                                  "distill.feature_weight=1", "train.mixgen=0.25"});
  test_support::expect_throw_containing<ConfigError>(
      [&] { Trainer(config, comm_, TrainOptions{}, log_).run(); }, "train.mixgen");
}

}  // namespace
}  // namespace shopclip
