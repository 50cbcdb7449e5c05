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
  const data::PrepParams params = data::prep_params(config.model.image.resolution);
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

}  // namespace shopclip
