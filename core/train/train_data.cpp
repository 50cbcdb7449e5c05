#include "core/train/train_data.h"

#include <fmt/format.h>

#include "data/error.h"

namespace shopclip {

std::vector<std::string> TrainData::query_texts() const {
  std::vector<std::string> texts;
  texts.reserve(queries.queries.size());
  for (const auto& query : queries.queries)
    texts.push_back(query.text);
  return texts;
}

namespace {

void build_pairs(TrainData& data) {
  const std::int64_t num_images = data.images->size();
  for (std::size_t q = 0; q < data.queries.queries.size(); ++q) {
    for (auto image_id : data.queries.queries[q].image_ids) {
      const std::int64_t row = *data.images->row_of(image_id);
      data.pairs.push_back({static_cast<std::int64_t>(q), row});
      data.relevant.insert(static_cast<std::int64_t>(q) * num_images + row);
    }
  }
}

void cache_images_if_they_fit(const Config& config, data::ImageStore& images, Logger& log) {
  const double resolution = images.resolution();
  const double gib =
      static_cast<double>(images.size()) * resolution * resolution * 3 / (1024.0 * 1024.0 * 1024.0);
  if (gib <= config.train.image_cache_gib) {
    images.load_all();
    log.info("train: {} images held in memory ({:.2f} GiB)", images.size(), gib);
  } else {
    log.info(
        "train: {} images ({:.2f} GiB) read from the shards at every step "
        "(train.image_cache_gib = {})",
        images.size(), gib, config.train.image_cache_gib);
  }
}

}  // namespace

TrainData load_train_data(const Config& config, bool main_rank, const std::string& run_dir,
                          Logger& log) {
  TrainData out;
  const auto& train_split = config.data.train_split;
  add_prep_bad_rows(config, train_split, out.bad_rows);
  add_prep_bad_rows(config, config.data.valid_split, out.bad_rows);
  // The stored side may be larger than the model's (prep.resolution): the loader resizes.
  const data::PrepParams params = data::prep_params(config.prep_resolution(train_split));
  out.images = std::make_unique<data::ImageStore>(config.prep_split_dir(train_split), params);
  data::QuerySchema schema;
  const std::string queries_path = data::find_queries_file(config.data.root, train_split, &schema);
  data::QueryReadOptions read_options;
  const data::ImageStore& images = *out.images;
  read_options.image_exists = [&](std::int64_t id) { return images.row_of(id).has_value(); };
  out.queries = data::read_queries(queries_path, schema, out.bad_rows, read_options);
  out.valid = open_split(config, config.data.valid_split, out.bad_rows);
  if (main_rank) {
    report_bad_rows(out.bad_rows, config, run_dir + "/bad_rows.jsonl", log);
  } else {
    out.bad_rows.check_share(config.data.max_bad_share);  // every rank stops on the same input
  }
  if (!out.valid.has_ground_truth) {
    throw data::DataError(
        fmt::format("split '{}' has no ground truth to select models with", out.valid.name));
  }
  build_pairs(out);
  cache_images_if_they_fit(config, *out.images, log);
  return out;
}

std::vector<std::shared_ptr<const data::ImageAugmentation>> make_train_image_augmentations(
    const TrainConfig& config) {
  data::ImageAugmentOptions options;
  if (config.augment == AugmentRecipe::kChineseClip) {
    options = data::chinese_clip_augment_options();
  } else {
    const ImageAugmentConfig& c = config.image_augment;
    options.crop_scale_min = c.crop_scale_min;
    options.crop_scale_max = c.crop_scale_max;
    options.crop_ratio_min = c.crop_ratio_min;
    options.crop_ratio_max = c.crop_ratio_max;
    options.hflip = c.hflip;
    options.rotate_degrees = c.rotate_degrees;
    for (int i = 0; i < 3; ++i)
      options.fill[i] = static_cast<std::uint8_t>(c.fill.at(i));
    options.brightness = c.brightness;
    options.contrast = c.contrast;
    options.saturation = c.saturation;
    options.hue = c.hue;
    options.grayscale = c.grayscale;
    options.policy = enum_name(c.policy);
    options.randaugment_ops = c.randaugment_ops;
    options.randaugment_magnitude = c.randaugment_magnitude;
    options.interpolation = c.interpolation == Resample::kBicubic ? data::Interpolation::kBicubic
                                                                  : data::Interpolation::kBilinear;
  }
  auto augmentations = data::make_image_augmentations(options);
  if (config.max_shift > 0) {
    augmentations.push_back(std::make_shared<data::RandomShift>(config.max_shift));
  }
  return augmentations;
}

std::string image_view_recipe(const TrainConfig& config) {
  return fmt::format("augment={}; {}; max_shift={}", enum_name(config.augment),
                     config.image_augment.fields_text(), config.max_shift);
}

std::vector<std::shared_ptr<const data::TextAugmentation>> make_train_text_augmentations(
    const Config& config, const TrainData& data, Logger& log) {
  const TextAugmentConfig& c = config.train.text_augment;
  std::vector<std::shared_ptr<const data::TextAugmentation>> augmentations;
  if (c.variants > 0) {
    const std::string path =
        c.variants_file.empty() ? config.data.root + "/train_texts.aug.jsonl" : c.variants_file;
    auto variants = data::read_text_variants(path, data.queries);
    log.info("text augmentation: variants of {} query texts from {} (p = {:g})", variants.size(),
             path, c.variants);
    augmentations.push_back(
        std::make_shared<data::VariantSubstitution>(std::move(variants), c.variants));
  }
  if (c.synonym > 0 || c.deletion > 0 || c.swap > 0) {
    data::WordAugmentOptions options;
    options.synonym = c.synonym;
    options.deletion = c.deletion;
    options.max_deleted = c.max_deleted;
    options.swap = c.swap;
    auto synonyms = c.synonyms_file.empty()
                        ? std::unordered_map<std::string, std::vector<std::string>>{}
                        : data::read_synonyms(c.synonyms_file);
    auto protected_words = c.protected_file.empty() ? std::unordered_set<std::string>{}
                                                    : data::read_word_list(c.protected_file);
    log.info(
        "text augmentation: synonyms for {} words, {} protected words, p(synonym) {:g}, "
        "p(deletion) {:g} of up to {} words, p(swap) {:g}",
        synonyms.size(), protected_words.size(), c.synonym, c.deletion, c.max_deleted, c.swap);
    augmentations.push_back(std::make_shared<data::WordAugmentation>(
        data::WordSegmenter::from_file(data::WordSegmenter::default_dictionary_path()), options,
        std::move(synonyms), std::move(protected_words)));
  }
  return augmentations;
}

}  // namespace shopclip
