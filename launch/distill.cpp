// `shopclip distill cache`: a teacher's embeddings of every training image and query, stored for
// a student's training (core/train/teacher_cache.h; the losses are distill.* in the config).

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include "core/config.h"
#include "core/model/chinese_clip.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "core/train/teacher.h"
#include "core/train/teacher_cache.h"
#include "core/train/train_data.h"
#include "data/files.h"
#include "data/muge.h"
#include "data/shards.h"
#include "dist/launch.h"
#include "launch/commands.h"

namespace shopclip {
namespace {

struct CacheOptions {
  ConfigOptions config;
  std::string teacher;  // overrides distill.teacher
  // Or an imported Chinese-CLIP model (all four files).
  std::string vision_config, text_config, weights, vocab;
  int context_length = 0;  // 0: distill.teacher_context_length (capped at the model's positions)
  std::string out;         // overrides distill.teacher_cache
  int batch_size = 0;      // 0: eval.batch_size
  std::int64_t chunk_rows = 4096;
};

int run_cache(const CacheOptions& options, CommandContext& context) {
  Config config = Config::load(options.config.path, options.config.overrides);
  // The command-line flags win over the config file's distill.* keys.
  DistillConfig& distill = config.distill;
  if (!options.teacher.empty()) distill.teacher = options.teacher;
  if (!options.weights.empty()) distill.teacher = options.weights;
  if (!options.vision_config.empty()) distill.teacher_vision_config = options.vision_config;
  if (!options.text_config.empty()) distill.teacher_text_config = options.text_config;
  if (!options.vocab.empty()) distill.teacher_vocab = options.vocab;
  if (options.context_length > 0) distill.teacher_context_length = options.context_length;
  if (!options.out.empty()) distill.teacher_cache = options.out;
  config.validate();
  if (!options.weights.empty() && distill.teacher_vision_config.empty()) {
    throw std::invalid_argument(
        "distill cache: --teacher-weights names an imported Chinese-CLIP model; give "
        "--teacher-vision-config, --teacher-text-config and --teacher-vocab too");
  }
  if (distill.teacher.empty()) {
    throw ConfigError(
        "distill.teacher: name the teacher (a run directory or checkpoint), or pass --teacher "
        "(or an imported Chinese-CLIP model's --teacher-* files)");
  }
  if (distill.teacher_cache.empty()) {
    throw ConfigError("distill.teacher_cache: name the cache folder, or pass --out");
  }
  Logger& log = context.log;
  TeacherModel teacher_model = load_teacher(distill, torch::kCPU);
  Encoder& teacher = *teacher_model.encoder;
  TeacherCacheInputs inputs;
  inputs.teacher = &teacher;
  inputs.identity = teacher_model.identity;
  log.info("distill cache: {} teacher {} (xxh64 {}), {} dims, {}px, {:.2f}M parameters",
           inputs.identity.kind, inputs.identity.checkpoint, inputs.identity.xxh64, teacher.dim(),
           teacher.image_resolution(), teacher_model.parameters / 1e6);

  // The training split prepared at the teacher's side: the student's data settings with the
  // teacher's resolution (and no larger training side: the teacher sees what it was trained on).
  Config teacher_view = config;
  teacher_view.model.image.resolution = teacher.image_resolution();
  teacher_view.prep.resolution = 0;
  const std::string& split = config.data.train_split;
  inputs.images_prep_dir = teacher_view.prep_split_dir(split);
  const data::ImageStore images(inputs.images_prep_dir,
                                data::prep_params(teacher.image_resolution()));
  inputs.images = &images;
  data::QuerySchema schema;
  const std::string queries_path = data::find_queries_file(config.data.root, split, &schema);
  data::BadRowLog bad_rows;
  data::QueryReadOptions read_options;
  read_options.require_image_ids = false;  // every query with a text; training picks its own
  const data::QuerySet queries = data::read_queries(queries_path, schema, bad_rows, read_options);
  inputs.queries = &queries;
  inputs.batch_size = options.batch_size > 0 ? options.batch_size : config.eval.batch_size;
  inputs.chunk_rows = options.chunk_rows;
  if (config.distill.views > 0) {
    // The views the student's loader will draw: its seed and image augmentations.
    inputs.views = config.distill.views;
    inputs.view_seed = static_cast<std::uint64_t>(config.run.seed);
    inputs.view_recipe = image_view_recipe(config.train);
    inputs.view_augmentations = make_train_image_augmentations(config.train);
    inputs.threads = config.train.loader_threads;
    log.info("distill cache: {} augmented views of every image (run.seed {}; {})", inputs.views,
             inputs.view_seed, inputs.view_recipe);
  }
  torch::set_num_threads(
      dist::threads_for_this_rank(config.run.threads, context.comm.local_world_size()));
  write_teacher_cache(inputs, config.distill.teacher_cache, context.comm, log);
  return 0;
}

}  // namespace

void register_distill_commands(CommandRegistry& commands) {
  CLI::App* group = commands.group("distill", "knowledge distillation into a smaller student");
  auto cache = std::make_shared<CacheOptions>();
  CLI::App* cache_cmd = commands.add(
      "cache",
      "encode every training image and query with the teacher and store the embeddings "
      "(distill.teacher_cache) for a student's training",
      Processes::kMany, [cache](CommandContext& context) { return run_cache(*cache, context); },
      group);
  add_config_options(cache_cmd, cache->config);
  cache_cmd->add_option("--teacher", cache->teacher,
                        "the teacher: a run directory (its best checkpoint) or a checkpoint file "
                        "(default distill.teacher)");
  cache_cmd->add_option("--teacher-vision-config", cache->vision_config,
                        "an imported Chinese-CLIP teacher: its vision JSON config");
  cache_cmd->add_option("--teacher-text-config", cache->text_config, "... its text JSON config");
  cache_cmd->add_option("--teacher-weights", cache->weights,
                        "... its weights converted to safetensors (then distill.teacher names "
                        "this file)");
  cache_cmd->add_option("--teacher-vocab", cache->vocab, "... its vocab.txt");
  cache_cmd
      ->add_option("--teacher-context-length", cache->context_length,
                   "... tokens per query (default distill.teacher_context_length; capped at "
                   "its positions)")
      ->check(CLI::PositiveNumber);
  cache_cmd->add_option("--out", cache->out, "the cache folder (default distill.teacher_cache)");
  cache_cmd->add_option("--batch-size", cache->batch_size,
                        "rows per encoding call (default eval.batch_size)");
  cache_cmd
      ->add_option("--chunk-rows", cache->chunk_rows,
                   "rows per part file (the unit of resuming and of sharing between ranks)")
      ->check(CLI::PositiveNumber);
}

}  // namespace shopclip
