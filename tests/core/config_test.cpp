// Tests for the typed configuration: YAML parsing of every field type, the errors a user sees for
// typos, wrong types, syntax errors and bad overrides (each must name the key path so the user can
// find it), validation ranges, the resolved-config dump round trip and describe_config().
//
// Several tests walk the config with visitors of their own (key paths, value strings), so a field
// added to a struct's visit() is covered without editing this file.

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/config.h"
#include "test_paths.h"
#include "test_support.h"

namespace shopclip {
namespace {

std::string join_key(const std::string& prefix, const char* key) {
  return prefix.empty() ? std::string(key) : prefix + "." + key;
}

// Collects every leaf key path ("model.image.widths") in declaration order.
struct KeyCollector {
  std::string prefix;
  std::vector<std::string>* keys;

  template <class T>
  void operator()(const char* key, T&, const char*) {
    keys->push_back(join_key(prefix, key));
  }
  template <class S>
  void section(const char* key, S& section, const char*) {
    KeyCollector child{join_key(prefix, key), keys};
    section.visit(child);
  }
};

std::string value_text(const std::string& v) {
  return "'" + v + "'";
}
std::string value_text(int v) {
  return std::to_string(v);
}
std::string value_text(std::int64_t v) {
  return std::to_string(v);
}
std::string value_text(double v) {
  std::ostringstream out;
  out.precision(17);  // exact: the round trip must not lose a bit
  out << v;
  return out.str();
}
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string value_text(E v) {
  return enum_name(v);
}
std::string value_text(const std::vector<int>& v) {
  std::string out = "[";
  for (int x : v)
    out += std::to_string(x) + ",";
  return out + "]";
}

// key path -> exact textual value, for comparing two configs field by field.
struct ValueCollector {
  std::string prefix;
  std::map<std::string, std::string>* values;

  template <class T>
  void operator()(const char* key, T& value, const char*) {
    (*values)[join_key(prefix, key)] = value_text(value);
  }
  template <class S>
  void section(const char* key, S& section, const char*) {
    ValueCollector child{join_key(prefix, key), values};
    section.visit(child);
  }
};

std::vector<std::string> all_keys() {
  Config config;
  std::vector<std::string> keys;
  KeyCollector collector{"", &keys};
  config.visit(collector);
  return keys;
}

std::map<std::string, std::string> all_values(Config config) {
  std::map<std::string, std::string> values;
  ValueCollector collector{"", &values};
  config.visit(collector);
  return values;
}

// The message of the ConfigError that fn throws; fails the test when it throws nothing.
template <class Fn>
std::string config_error(Fn&& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text)

// ---- defaults and parsing --------------------------------------------------------------------

TEST(Config, DefaultsValidate) {
  Config config;
  EXPECT_NO_THROW(config.validate());
  // An empty document and the empty path both give the defaults.
  EXPECT_EQ(all_values(Config::from_yaml("", "<empty>")), all_values(config));
  EXPECT_EQ(all_values(Config::load("")), all_values(config));
}

TEST(Config, ParsesEveryFieldType) {
  const std::string yaml = R"(
run:
  dir: "runs/with: colon"
  seed: 1099511627776
  threads: 3
data:
  root: /data/muge
  prep_dir:
  max_bad_share: 0.25
model:
  embed_dim: 128
  init_logit_scale: 10
  image:
    widths: [8, 16, 24]
    resolution: 32
  text:
    context_length: 24
train:
  lr: 5.0e-5
  warmup_steps: 7
eval:
  index: IVF16,Flat
)";
  const Config config = Config::from_yaml(yaml, "test.yaml");
  EXPECT_EQ(config.run.dir, "runs/with: colon");          // string
  EXPECT_EQ(config.run.seed, std::int64_t{1} << 40);      // int64 beyond int range
  EXPECT_EQ(config.run.threads, 3);                       // int
  EXPECT_EQ(config.data.root, "/data/muge");              // plain scalar string
  EXPECT_EQ(config.data.prep_dir, "");                    // null string = empty
  EXPECT_DOUBLE_EQ(config.data.max_bad_share, 0.25);      // float
  EXPECT_DOUBLE_EQ(config.model.init_logit_scale, 10.0);  // integer literal into a float
  EXPECT_EQ(config.model.embed_dim, 128);
  EXPECT_EQ(config.model.image.widths, (std::vector<int>{8, 16, 24}));  // list of int
  EXPECT_EQ(config.model.image.resolution, 32);                         // nested section
  EXPECT_EQ(config.model.text.context_length, 24);
  EXPECT_DOUBLE_EQ(config.train.lr, 5e-5);
  EXPECT_EQ(config.train.warmup_steps, 7);
  EXPECT_EQ(config.eval.index, "IVF16,Flat");
  // Keys not in the file keep their defaults.
  EXPECT_EQ(config.train.batch_size, Config{}.train.batch_size);
  EXPECT_EQ(config.model.text.width, Config{}.model.text.width);
}

TEST(Config, LoadReadsFileAndNamesMissingFile) {
  test_support::TempDir dir;
  test_support::write_file(dir.file("c.yaml"), "train:\n  epochs: 3\n");
  EXPECT_EQ(Config::load(dir.file("c.yaml")).train.epochs, 3);
  const auto message = config_error([&] { Config::load(dir.file("absent.yaml")); });
  EXPECT_CONTAINS(message, dir.file("absent.yaml"));
}

// ---- errors a user sees -----------------------------------------------------------------------

TEST(Config, UnknownKeyNamesFullPathAndSuggestsCloseKey) {
  auto message =
      config_error([] { Config::from_yaml("model:\n  image:\n    widht: 64\n", "typo.yaml"); });
  EXPECT_CONTAINS(message, "typo.yaml");
  EXPECT_CONTAINS(message, "'model.image.widht'");
  // A swap of two letters is the most common typo: "widht" means "width", not "widths".
  EXPECT_CONTAINS(message, "did you mean 'model.image.width'?");

  message = config_error([] { Config::from_yaml("trian:\n  lr: 0.1\n", "s.yaml"); });
  EXPECT_CONTAINS(message, "'trian'");
  EXPECT_CONTAINS(message, "did you mean 'train'?");

  message = config_error([] { Config::from_yaml("train:\n  batchsize: 8\n", "s.yaml"); });
  EXPECT_CONTAINS(message, "'train.batchsize'");
  EXPECT_CONTAINS(message, "did you mean 'train.batch_size'?");

  // Nothing close: list what is allowed at that level instead of guessing.
  message = config_error([] { Config::from_yaml("eval:\n  zzzzzzzz: 1\n", "s.yaml"); });
  EXPECT_CONTAINS(message, "'eval.zzzzzzzz'");
  EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;
  EXPECT_CONTAINS(message, "index, search_params, batch_size, top_k");
}

TEST(Config, WrongTypeNamesKey) {
  auto message = config_error([] { Config::from_yaml("train:\n  lr: fast\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "t.yaml");
  EXPECT_CONTAINS(message, "'train.lr'");
  EXPECT_CONTAINS(message, "'fast' is not a valid float");

  message = config_error([] { Config::from_yaml("train:\n  epochs: 2.5\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "'train.epochs'");
  EXPECT_CONTAINS(message, "int");

  // A map where a scalar belongs.
  message = config_error([] { Config::from_yaml("train:\n  lr: {a: 1}\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "'train.lr'");
  EXPECT_CONTAINS(message, "found a map");

  // A list where a scalar belongs.
  message = config_error([] { Config::from_yaml("run:\n  seed: [1, 2]\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "'run.seed'");
  EXPECT_CONTAINS(message, "found a list");

  // A scalar where a list belongs.
  message = config_error([] { Config::from_yaml("model:\n  image:\n    widths: 32\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "'model.image.widths'");
  EXPECT_CONTAINS(message, "list");

  // A bad list element is named with its index.
  message =
      config_error([] { Config::from_yaml("model:\n  image:\n    widths: [16, x]\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "'model.image.widths[1]'");

  // A scalar where a section belongs.
  message = config_error([] { Config::from_yaml("train: 5\n", "t.yaml"); });
  EXPECT_CONTAINS(message, "'train'");
  EXPECT_CONTAINS(message, "expected a map");

  // The document itself must be a map.
  message = config_error([] { Config::from_yaml("- 1\n- 2\n", "list.yaml"); });
  EXPECT_CONTAINS(message, "list.yaml");
}

TEST(Config, SyntaxErrorNamesSourceAndLine) {
  // The flow sequence opened on line 4 is never closed; yaml-cpp reports where it gave up.
  auto message = config_error([] {
    Config::from_yaml("run:\n  seed: 1\ntrain:\n  lr: [1, 2\n  epochs: 3\n", "broken.yaml");
  });
  EXPECT_CONTAINS(message, "broken.yaml");
  EXPECT_CONTAINS(message, "YAML syntax error");

  // A second ": " inside a plain value on line 3.
  message = config_error([] { Config::from_yaml("run:\n  seed: 1\n  dir: x: y\n", "colon.yaml"); });
  EXPECT_CONTAINS(message, "colon.yaml: line 3");

  // A tab used for indentation on line 2 of a file read through load().
  test_support::TempDir dir;
  test_support::write_file(dir.file("tab.yaml"), "run:\n\tseed: 1\n");
  message = config_error([&] { Config::load(dir.file("tab.yaml")); });
  EXPECT_CONTAINS(message, dir.file("tab.yaml") + ": line 2");
}

// ---- --set overrides --------------------------------------------------------------------------

TEST(Config, OverrideScalarWinsOverFile) {
  const Config config =
      Config::from_yaml("train:\n  lr: 0.1\n  epochs: 4\n", "o.yaml", {"train.lr=0.25"});
  EXPECT_DOUBLE_EQ(config.train.lr, 0.25);
  EXPECT_EQ(config.train.epochs, 4);  // untouched keys of the same section stay
}

TEST(Config, OverrideCreatesNestedPath) {
  // Neither "model" nor "model.image" is in the file.
  const Config config =
      Config::from_yaml("run:\n  seed: 3\n", "o.yaml",
                        {"model.image.type=vit", "model.image.patch_size=16", "data.root=/x/y"});
  EXPECT_EQ(config.model.image.type, ImageTowerType::kVit);
  EXPECT_EQ(config.model.image.patch_size, 16);
  EXPECT_EQ(config.data.root, "/x/y");
  EXPECT_EQ(config.run.seed, 3);
  // Also into a section that is present but empty (null).
  EXPECT_EQ(Config::from_yaml("model:\n", "o.yaml", {"model.embed_dim=64"}).model.embed_dim, 64);
}

TEST(Config, OverrideListValue) {
  const Config config = Config::from_yaml("", "o", {"model.image.widths=[16,32]"});
  EXPECT_EQ(config.model.image.widths, (std::vector<int>{16, 32}));
  // Replaces a list given in the file rather than merging with it.
  const Config replaced = Config::from_yaml("model:\n  image:\n    widths: [1, 2, 3]\n", "o",
                                            {"model.image.widths=[8]"});
  EXPECT_EQ(replaced.model.image.widths, (std::vector<int>{8}));
}

TEST(Config, MalformedOverrideErrors) {
  auto message = config_error([] { Config::from_yaml("", "o", {"train.lr"}); });
  EXPECT_CONTAINS(message, "'train.lr'");
  EXPECT_CONTAINS(message, "key.path=value");
  message = config_error([] { Config::from_yaml("", "o", {"=0.1"}); });
  EXPECT_CONTAINS(message, "'=0.1'");
  message = config_error([] { Config::from_yaml("", "o", {"train..lr=0.1"}); });
  EXPECT_CONTAINS(message, "train..lr=0.1");
  message = config_error([] { Config::from_yaml("", "o", {"model.image.widths=[1,"}); });
  EXPECT_CONTAINS(message, "model.image.widths=[1,");
  // Descending into a scalar the file sets.
  message =
      config_error([] { Config::from_yaml("train:\n  lr: 0.1\n", "o", {"train.lr.value=1"}); });
  EXPECT_CONTAINS(message, "train.lr.value=1");
  EXPECT_CONTAINS(message, "'lr' is not a section");
  // Descending into a scalar the file leaves at its default makes a map there: a wrong type.
  message = config_error([] { Config::from_yaml("", "o", {"train.lr.value=1"}); });
  EXPECT_CONTAINS(message, "'train.lr'");
}

TEST(Config, OverrideOfUnknownKeyErrors) {
  auto message = config_error([] { Config::from_yaml("", "cli", {"train.lrr=0.1"}); });
  EXPECT_CONTAINS(message, "'train.lrr'");
  EXPECT_CONTAINS(message, "did you mean 'train.lr'?");
  message = config_error([] { Config::from_yaml("", "cli", {"nosuch.key=1"}); });
  EXPECT_CONTAINS(message, "'nosuch'");
  // A wrongly typed override names the key like a wrongly typed file entry.
  message = config_error([] { Config::from_yaml("", "cli", {"train.lr=fast"}); });
  EXPECT_CONTAINS(message, "'train.lr'");
}

// ---- validation -------------------------------------------------------------------------------

std::string validate_error(Config config) {
  return config_error([&] { config.validate(); });
}

// Enum fields accept only their names; the error names the key, the value and every choice.
TEST(Config, EnumFieldsRejectUnknownNames) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.image.type=rnn", "'model.image.type': 'rnn' is not one of: cnn, vit"},
      {"train.loss_mode=half", "'train.loss_mode': 'half' is not one of: local, full"},
      {"train.freeze=all", "'train.freeze': 'all' is not one of: none, image, text, both"}};
  for (const auto& [assignment, expected] : cases) {
    try {
      Config::from_yaml("", "cli", {assignment});
      ADD_FAILURE() << assignment << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(e.what(), expected);
    }
  }
  const Config config = Config::from_yaml("", "cli", {"train.loss_mode=full", "train.freeze=text"});
  EXPECT_EQ(config.train.loss_mode, LossMode::kFull);
  EXPECT_EQ(config.train.freeze, FrozenTower::kText);
  EXPECT_CONTAINS(config.to_yaml(), "loss_mode: \"full\"");
  EXPECT_CONTAINS(describe_config(), "none|image|text|both");
}

TEST(Config, ValidateNamesOutOfRangeKey) {
  Config config;
  config.train.batch_size = 1;
  EXPECT_CONTAINS(validate_error(config), "'train.batch_size'");

  config = Config{};
  config.model.image.type = ImageTowerType::kVit;
  config.model.image.resolution = 64;
  config.model.image.patch_size = 7;
  EXPECT_CONTAINS(validate_error(config), "'model.image.patch_size'");
  config.model.image.patch_size = 16;
  EXPECT_NO_THROW(config.validate());
  config.model.image.heads = 3;  // 256 is not a multiple of 3
  EXPECT_CONTAINS(validate_error(config), "'model.image.heads'");

  config = Config{};
  config.model.image.widths = {};
  EXPECT_CONTAINS(validate_error(config), "'model.image.widths'");
  config.model.image.widths = {16, 0};
  EXPECT_CONTAINS(validate_error(config), "'model.image.widths'");

  config = Config{};
  config.model.text.heads = 5;
  EXPECT_CONTAINS(validate_error(config), "'model.text.heads'");

  config = Config{};
  config.model.max_logit_scale = 5;  // below the initial 1/0.07
  EXPECT_CONTAINS(validate_error(config), "'model.max_logit_scale'");

  config = Config{};
  config.train.min_lr_ratio = 1.5;
  EXPECT_CONTAINS(validate_error(config), "'train.min_lr_ratio'");

  config = Config{};
  config.train.beta2 = 1.0;
  EXPECT_CONTAINS(validate_error(config), "'train.beta2'");

  config = Config{};
  config.train.profile_steps = -1;
  EXPECT_CONTAINS(validate_error(config), "'train.profile_steps'");

  config = Config{};
  config.train.max_shift = config.model.image.resolution / 2;
  EXPECT_CONTAINS(validate_error(config), "'train.max_shift'");

  config = Config{};
  config.data.max_bad_share = -0.1;
  EXPECT_CONTAINS(validate_error(config), "'data.max_bad_share'");

  config = Config{};
  config.eval.top_k = 0;
  EXPECT_CONTAINS(validate_error(config), "'eval.top_k'");

  config = Config{};
  config.dist.timeout_s = 0;
  EXPECT_CONTAINS(validate_error(config), "'dist.timeout_s'");

  config = Config{};
  config.distill.relational_weight = 1;  // a term without a cache to read
  EXPECT_CONTAINS(validate_error(config), "'distill.teacher_cache'");

  config = Config{};
  config.distill.feature_weight = -1;
  EXPECT_CONTAINS(validate_error(config), "'distill.feature_weight'");

  config = Config{};
  config.model.distill_dim = -1;
  EXPECT_CONTAINS(validate_error(config), "'model.distill_dim'");
}

TEST(Config, FromYamlValidatesAndNamesSource) {
  auto message = config_error([] { Config::from_yaml("train:\n  batch_size: 1\n", "v.yaml"); });
  EXPECT_CONTAINS(message, "v.yaml");
  EXPECT_CONTAINS(message, "'train.batch_size'");
  message = config_error([] {
    Config::from_yaml("", "cli", {"model.image.type=vit", "model.image.patch_size=7"});
  });
  EXPECT_CONTAINS(message, "'model.image.patch_size'");
}

// ---- dump, describe, derived paths ------------------------------------------------------------

// Every field set away from its default (and valid), with strings that need YAML quoting.
Config non_default_config() {
  Config c;
  c.run.dir = "runs/a \"quoted\" name: with\\backslash\tand tab";
  c.run.seed = 1234567890123;
  c.run.threads = 3;
  c.run.device = "cuda";
  c.data.root = "/data/MUGE #1";
  c.data.train_split = "train2";
  c.data.valid_split = "valid2";
  c.data.test_split = "";
  c.data.prep_dir = "/fast/prep";
  c.data.max_bad_share = 0.125;
  c.prep.images_per_shard = 100;
  c.prep.chunk_images = 7;
  c.prep.threads = 2;
  c.prep.resolution = 512;  // at least model.image.resolution
  c.model.embed_dim = 96;
  c.model.max_logit_scale = 123.456;
  c.model.image.type = ImageTowerType::kVit;
  c.model.image.resolution = 48;
  c.model.image.widths = {5, 10, 20};
  c.model.image.patch_size = 12;
  c.model.image.width = 120;
  c.model.image.layers = 3;
  c.model.image.heads = 6;
  c.model.image.mlp = 480;
  c.model.image.channels_last = false;
  c.model.text.vocab = "vocab.txt";
  c.model.text.min_count = 2;
  c.model.text.context_length = 40;
  c.model.text.width = 192;
  c.model.text.layers = 5;
  c.model.text.heads = 3;
  c.model.text.mlp = 777;
  c.model.chinese_clip.vision_config = "V.json";
  c.model.chinese_clip.text_config = "T.json";
  c.model.chinese_clip.weights = "w.safetensors";
  c.model.chinese_clip.grad_checkpointing = true;
  c.train.batch_size = 64;
  c.train.epochs = 3;
  c.train.lr = 5e-5;
  c.train.weight_decay = 0.001;
  c.train.beta1 = 0.85;
  c.train.beta2 = 0.999;
  c.train.eps = 1e-8;
  c.train.warmup_steps = 123;
  c.train.min_lr_ratio = 0.1;
  c.train.grad_clip = 0.0;
  c.train.max_minutes = 2.5;
  c.train.checkpoint_every_minutes = 7.5;
  c.train.warmup_fraction = 0.05;
  c.train.patience = 4;
  c.train.eval_every = 2;
  c.train.log_every = 50;
  c.train.max_shift = 3;
  c.train.image_cache_gib = 0.5;
  c.train.loss_mode = LossMode::kFull;
  c.train.freeze = FrozenTower::kImage;
  c.train.amp = true;
  c.train.infonce_weight = 0.5;
  c.train.triplet_weight = 2.0;
  c.train.triplet_margin = 0.3;
  c.train.triplet_start_step = 50;
  c.train.bucket_mb = 8;
  c.train.check_every = 7;
  c.train.profile_steps = 4;
  c.train.micro_batch = 16;
  c.train.ema_decay = 0.99;
  // train.augment stays custom here (a recipe refuses changed image_augment fields); the recipe's
  // own round trip is checked in ToYamlRoundTrips.
  auto& image = c.train.image_augment;
  image.crop_scale_min = 0.3;
  image.crop_scale_max = 0.9;
  image.crop_ratio_min = 0.5;
  image.crop_ratio_max = 2.0;
  image.hflip = 0.5;
  image.rotate_degrees = 10;
  image.fill = {0, 1, 2};
  image.brightness = 0.4;
  image.contrast = 0.3;
  image.saturation = 0.2;
  image.hue = 0.1;
  image.grayscale = 0.2;
  image.policy = AugmentPolicy::kRandAugment;
  image.randaugment_ops = 3;
  image.randaugment_magnitude = 5;
  image.interpolation = Resample::kBilinear;
  auto& text = c.train.text_augment;
  text.variants = 0.2;
  text.variants_file = "aug.jsonl";
  text.synonym = 0.1;
  text.synonyms_file = "synonyms.txt";
  text.deletion = 0.3;
  text.max_deleted = 2;
  text.swap = 0.4;
  text.protected_file = "brands.txt";
  c.train.mixgen = 0.25;
  c.train.mixgen_lambda = 0.6;
  c.train.loader_threads = 3;
  c.train.mine_every = 2;
  c.train.mine_skip = 5;
  c.train.mine_depth = 100;
  c.train.mine_max_ratio = 0.9;
  c.train.mine_share = 0.25;
  c.eval.index = "IVF256,PQ32";
  c.eval.search_params = "nprobe=8";
  c.eval.batch_size = 1000;
  c.eval.top_k = 20;
  c.dist.timeout_s = 42.5;
  c.distill.teacher = "runs/teacher";
  c.distill.teacher_cache = "datasets/demo/teacher-cache";
  c.distill.feature_weight = 1.0;
  c.distill.contrastive_weight = 0.5;
  c.distill.relational_weight = 0.25;
  c.distill.teacher_temperature = 0.02;
  c.distill.student_temperature = 0.05;
  c.distill.teacher_negatives = true;
  c.distill.online = true;
  c.distill.views = 3;
  c.distill.teacher_vision_config = "models/cnclip/vision.json";
  c.distill.teacher_text_config = "models/cnclip/text.json";
  c.distill.teacher_vocab = "models/cnclip/vocab.txt";
  c.distill.teacher_context_length = 64;
  c.model.distill_dim = 512;
  c.model.init_logit_scale = 0.1 + 0.2;  // not exactly representable in short decimal
  c.model.init = "runs/base/checkpoints/best.pt";
  c.model.reranker.layers = 3;
  c.model.reranker.width = 96;
  c.model.reranker.heads = 6;
  c.model.reranker.mlp = 200;
  c.model.reranker.image_tokens = 25;
  c.train.rerank_weight = 0.75;
  return c;
}

TEST(Config, ToYamlRoundTrips) {
  const Config config = non_default_config();
  ASSERT_NO_THROW(config.validate());
  // Guard the test itself: every field must differ from its default, else a field the dump
  // forgot would still round-trip by falling back to the default.
  const auto defaults = all_values(Config{});
  const auto values = all_values(config);
  ASSERT_EQ(values.size(), defaults.size());
  for (const auto& [key, value] : values) {
    if (key == "train.augment") continue;  // below
    EXPECT_NE(value, defaults.at(key)) << key << " keeps its default in non_default_config()";
  }
  Config recipe;
  recipe.train.augment = AugmentRecipe::kChineseClip;
  EXPECT_EQ(Config::from_yaml(recipe.to_yaml(), "<dump>").train.augment,
            AugmentRecipe::kChineseClip);

  const std::string yaml = config.to_yaml();
  const Config parsed = Config::from_yaml(yaml, "<dump>");
  EXPECT_EQ(all_values(parsed), values);
  // The dump is a fixed point.
  EXPECT_EQ(parsed.to_yaml(), yaml);
  // Descriptions are written as comments next to the values.
  EXPECT_CONTAINS(yaml, "# peak learning rate (AdamW)");
}

TEST(Config, DescribeListsEveryKey) {
  const std::string description = describe_config();
  std::vector<std::string> first_words;
  std::istringstream lines(description);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    first_words.push_back(first);
  }
  const auto keys = all_keys();
  ASSERT_EQ(first_words.size(), keys.size() + 1);  // a header line, then one line per key
  for (size_t i = 0; i < keys.size(); ++i)
    EXPECT_EQ(first_words[i + 1], keys[i]);
  // Types and defaults are shown.
  EXPECT_CONTAINS(description, "list of int");
  EXPECT_CONTAINS(description, "[32, 64, 128, 256]");
}

TEST(Config, PrepDirDefaultsFromRootAndResolution) {
  Config config;
  config.data.root = "/data/muge";
  config.model.image.resolution = 96;
  EXPECT_EQ(config.prep_dir(), "/data/muge/prep-r96");
  EXPECT_EQ(config.prep_split_dir("valid"), "/data/muge/prep-r96/valid");
  config.data.prep_dir = "/fast/prep";
  EXPECT_EQ(config.prep_dir(), "/fast/prep");
  EXPECT_EQ(config.prep_split_dir("train"), "/fast/prep/train");
}

TEST(Config, PrepDirNeedsARoot) {
  Config config;  // data.root is empty by default
  try {
    config.prep_dir();
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.root"), std::string::npos) << e.what();
  }
}

TEST(Config, EveryShippedConfigLoads) {
  int loaded = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(SHOPCLIP_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(Config::load(entry.path().string(), {})) << entry.path();
    ++loaded;
  }
  EXPECT_GE(loaded, 5);  // tiny, demo, bench_small and the two MUGE fine-tuning recipes
  const Config recipe = Config::load(
      std::string(SHOPCLIP_SOURCE_DIR) + "/configs/muge_finetune_vit-b-16_rbt-base.yaml", {});
  EXPECT_EQ(recipe.train.batch_size, 1024);
  EXPECT_DOUBLE_EQ(recipe.train.lr, 5e-5);
  EXPECT_DOUBLE_EQ(recipe.train.weight_decay, 0.001);
  EXPECT_EQ(recipe.train.warmup_steps, 100);
  EXPECT_EQ(recipe.train.epochs, 3);
  EXPECT_EQ(recipe.model.text.context_length, 52);
  EXPECT_TRUE(recipe.model.chinese_clip.enabled());
}

TEST(Config, MixedPrecisionNeedsCuda) {
  try {
    Config::load("", {"train.amp=true"});
    ADD_FAILURE() << "train.amp on CPU was accepted";
  } catch (const std::exception& e) {
    EXPECT_TRUE(test_support::Contains(e.what(), "train.amp")) << e.what();
    EXPECT_TRUE(test_support::Contains(e.what(), "needs run.device: cuda")) << e.what();
  }
  EXPECT_NO_THROW(Config::load("", {"train.amp=true", "run.device=cuda"}));
}

// train.augment: chinese_clip is a fixed recipe; a train.image_augment field set beside it is
// refused by name, as are out-of-range augmentation values.
TEST(Config, AnAugmentRecipeRefusesHandSetImageAugmentFields) {
  const Config recipe = Config::load("", {"train.augment=chinese_clip"});
  EXPECT_EQ(recipe.train.augment, AugmentRecipe::kChineseClip);
  EXPECT_EQ(recipe.train.image_augment.first_changed_field(), "");
  const std::string message = config_error([] {
    Config::load("", {"train.augment=chinese_clip", "train.image_augment.hflip=0.2"});
  });
  EXPECT_CONTAINS(message, "train.image_augment.hflip");
  EXPECT_CONTAINS(message, "fixed recipe");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"train.image_augment.fill=[1,2]"}); }),
                  "train.image_augment.fill");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"train.image_augment.hue=0.7"}); }),
                  "train.image_augment.hue");
  EXPECT_CONTAINS(
      config_error([] { Config::load("", {"train.image_augment.policy=trivialaugment"}); }),
      "train.image_augment.policy");
  const Config custom = Config::load("", {"train.image_augment.policy=randaugment",
                                          "train.image_augment.randaugment_magnitude=5"});
  EXPECT_EQ(custom.train.image_augment.policy, AugmentPolicy::kRandAugment);
  EXPECT_EQ(custom.train.image_augment.first_changed_field(), "policy");
}

TEST(Config, MicroBatchAndWeightAverageRanges) {
  EXPECT_CONTAINS(config_error([] { Config::load("", {"train.micro_batch=-1"}); }),
                  "train.micro_batch");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"train.ema_decay=1"}); }), "train.ema_decay");
  EXPECT_NO_THROW(Config::load("", {"train.ema_decay=0.999", "train.micro_batch=64"}));
}

// distill.online needs a teacher to run and no cache, unless the teacher's negatives are on;
// distill.views is a count within [0, 64] (with an online teacher or MixGen the trainer refuses
// it: tests/core/train/distill_test.cpp).
TEST(Config, OnlineDistillationRules) {
  EXPECT_NO_THROW(Config::load(
      "", {"distill.online=true", "distill.teacher=runs/t", "distill.feature_weight=1"}));
  EXPECT_CONTAINS(config_error([] {
                    Config::load("", {"distill.online=true", "distill.feature_weight=1"});
                  }),
                  "'distill.online'");
  EXPECT_CONTAINS(config_error([] {
                    Config::load("", {"distill.online=true", "distill.teacher=runs/t",
                                      "distill.teacher_negatives=true"});
                  }),
                  "'distill.teacher_cache'");
  EXPECT_NO_THROW(Config::load("", {"distill.views=64"}));
  // An imported Chinese-CLIP teacher names all three of its files.
  EXPECT_NO_THROW(
      Config::load("", {"distill.teacher_vision_config=v.json",
                        "distill.teacher_text_config=t.json", "distill.teacher_vocab=vocab.txt"}));
  EXPECT_CONTAINS(config_error([] {
                    Config::load("", {"distill.teacher_vision_config=v.json",
                                      "distill.teacher_vocab=vocab.txt"});
                  }),
                  "'distill.teacher_text_config'");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"distill.teacher_vocab=vocab.txt"}); }),
                  "'distill.teacher_vision_config'");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"distill.views=65"}); }), "'distill.views'");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"distill.views=-1"}); }), "'distill.views'");
}

// The learned reranker's settings: its loss needs a reranker, its pooled grid is a square, the
// towers can both be frozen. (GradCache and Chinese-CLIP towers are refused where the step and the
// model are made: tests/core/train/rerank_loss_test.cpp.)
TEST(Config, RerankerRules) {
  const Config ok =
      Config::load("", {"model.reranker.layers=2", "train.rerank_weight=1", "train.freeze=both",
                        "model.reranker.image_tokens=9", "model.init=runs/x/checkpoints/best.pt"});
  EXPECT_EQ(ok.train.freeze, FrozenTower::kBoth);
  EXPECT_TRUE(ok.model.reranker.enabled());
  EXPECT_FALSE(Config{}.model.reranker.enabled());
  EXPECT_CONTAINS(config_error([] { Config::load("", {"train.rerank_weight=1"}); }),
                  "'train.rerank_weight': needs a reranker");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"model.reranker.image_tokens=5"}); }),
                  "'model.reranker.image_tokens'");
  EXPECT_CONTAINS(config_error([] { Config::load("", {"model.reranker.layers=5"}); }),
                  "'model.reranker.layers'");
  // The reranker alone is something to train.
  EXPECT_NO_THROW(Config::load(
      "", {"model.reranker.layers=1", "train.rerank_weight=1", "train.infonce_weight=0"}));
}

// prep.resolution stores the training split at a larger side in a folder of its own; valid and test
// stay at the model's side.
TEST(Config, PrepResolutionMovesOnlyTheTrainingSplit) {
  const Config config =
      Config::load("", {"data.root=/data", "model.image.resolution=64", "prep.resolution=96"});
  EXPECT_EQ(config.prep_resolution("train"), 96);
  EXPECT_EQ(config.prep_resolution("valid"), 64);
  EXPECT_EQ(config.prep_split_dir("train"), "/data/prep-r96/train");
  EXPECT_EQ(config.prep_split_dir("valid"), "/data/prep-r64/valid");
  EXPECT_EQ(config.prep_split_dir("test"), "/data/prep-r64/test");
  EXPECT_CONTAINS(config_error([] {
                    Config::load("", {"model.image.resolution=64", "prep.resolution=48"});
                  }),
                  "prep.resolution");
}

}  // namespace
}  // namespace shopclip
