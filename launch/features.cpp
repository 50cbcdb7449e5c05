// Feature-file commands: encode (Chinese-CLIP's feature format, from a shopclip run or a
// Chinese-CLIP model) and search (top-k predictions from feature files).

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <unordered_set>
#include "core/log.h"
#include "launch/commands.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/device.h"
#include "core/eval/embeddings.h"
#include "core/eval/index_store.h"
#include "core/eval/metrics.h"
#include "core/eval/predictions.h"
#include "core/eval/retrieval.h"
#include "core/model/chinese_clip.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoder.h"
#include "core/model/encoders.h"
#include "data/error.h"
#include "data/files.h"
#include "data/loader.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/prep.h"
#include "data/safetensors.h"
#include "data/tokenizer.h"

namespace shopclip {
namespace {

struct EncodeOptions {
  std::string vision_config, text_config, checkpoint;  // a Chinese-CLIP model
  std::string vocab;                                   // its vocab.txt
  std::string run;                                     // or a shopclip run directory
  std::string images, texts, out;
  int context_length = 52;
  int batch_size = 64;
  int threads = 0;
  bool normalize = false;  // L2-normalise before writing, as Chinese-CLIP's extract_features does
  std::string device = "cpu";  // cpu | cuda (GPU 0)
};

struct SearchOptions {
  std::string image_features, text_features, out, reference, index = "Flat";
  std::string index_dir;  // a saved index (`shopclip index build`) instead of --image-features
  int top_k = 10;
  bool tianchi = false;
};

namespace fs = std::filesystem;
using nlohmann::json;

std::unique_ptr<Encoder> chinese_clip_encoder(const EncodeOptions& options, Logger& log) {
  if (options.vision_config.empty() || options.text_config.empty() || options.checkpoint.empty() ||
      options.vocab.empty()) {
    throw std::invalid_argument(
        "encode: give --run, or all of --vision-config, --text-config, --checkpoint and --vocab");
  }
  ImportedChineseClip imported = load_imported_chinese_clip(
      options.vision_config, options.text_config, options.checkpoint, options.vocab);
  const auto& config = imported.model->config();
  if (!options.texts.empty() && options.context_length > config.text.max_position_embeddings) {
    throw std::invalid_argument(
        fmt::format("--context-length {} exceeds the {} positions of {}", options.context_length,
                    config.text.max_position_embeddings, options.text_config));
  }
  ChineseClip model = imported.model;
  data::Vocab vocab = std::move(imported.vocab);
  model->to(training_device(options.device, 0));
  model->eval();
  log.info("encode: Chinese-CLIP {} vision tower ({}px), {}-layer BERT, {} dims, from {}",
           config.vision.is_resnet() ? "ModifiedResNet" : "transformer",
           config.vision.image_resolution, config.text.num_hidden_layers, config.vision.embed_dim,
           options.checkpoint);
  // Raw projections unless --normalize (then unit norm, as Chinese-CLIP's extract_features).
  // Encoding images only, the context length is unused: any value the model can hold will do.
  const int context_length =
      options.texts.empty() ? std::min(options.context_length, config.text.max_position_embeddings)
                            : options.context_length;
  return std::make_unique<ChineseClipEncoder>(model, data::Tokenizer(std::move(vocab)),
                                              context_length, options.normalize);
}

std::unique_ptr<Encoder> shopclip_encoder(const EncodeOptions& options, Logger& log) {
  const std::string checkpoint =
      options.checkpoint.empty() ? options.run + "/checkpoints/best.pt" : options.checkpoint;
  LoadedModel loaded = load_model(checkpoint);
  loaded.model->to(training_device(options.device, 0));
  log.info("encode: shopclip model from {}", checkpoint);
  // shopclip's embeddings are unit-norm already; --normalize changes nothing for them.
  return std::make_unique<DualEncoderAdapter>(loaded.model, data::Tokenizer(loaded.vocab),
                                              loaded.config.model.text.context_length);
}

void write_feature_line(data::AtomicFileWriter& out, const char* id_key, std::int64_t id,
                        const torch::Tensor& row) {
  const auto values = row.contiguous();
  const float* data = values.data_ptr<float>();
  // Chinese-CLIP's key order: the id, then the feature.
  nlohmann::ordered_json line;
  line[id_key] = id;
  line["feature"] = std::vector<float>(data, data + values.numel());
  out.write(line.dump());
  out.write("\n");
}

std::int64_t write_image_features(const EncodeOptions& options, Encoder& encoder, Logger& log) {
  data::BadRowLog bad_rows;
  const auto rows = data::index_images_tsv(options.images, bad_rows);
  const std::string path = options.out + "/image_features.jsonl";
  data::AtomicFileWriter out(path);
  const int r = encoder.image_resolution();
  std::int64_t written = 0;
  for (std::size_t first = 0; first < rows.size(); first += options.batch_size) {
    const std::size_t count = std::min<std::size_t>(options.batch_size, rows.size() - first);
    auto pixels = torch::empty({static_cast<std::int64_t>(count), r, r, 3}, torch::kUInt8);
    std::vector<std::int64_t> ids;
    std::vector<std::int64_t> kept;
    std::size_t index = 0;
    data::read_image_fields(
        options.images, rows, first, count, [&](const data::ImageRow& row, std::string_view field) {
          try {
            data::decode_and_resize(
                field, r, pixels[static_cast<std::int64_t>(index)].data_ptr<std::uint8_t>());
            ids.push_back(row.id);
            kept.push_back(static_cast<std::int64_t>(index));
          } catch (const data::DataError& e) {
            bad_rows.add_bad(options.images, row.line, e.what());
          }
          ++index;
        });
    if (kept.empty()) continue;
    const auto batch = pixels.index_select(0, torch::tensor(kept, torch::kLong));
    const auto features = encode_pixels(encoder, batch);
    for (std::size_t i = 0; i < ids.size(); ++i)
      write_feature_line(out, "image_id", ids[i], features[static_cast<std::int64_t>(i)]);
    written += static_cast<std::int64_t>(ids.size());
  }
  out.commit();
  for (const auto& bad : bad_rows.bad_rows())
    log.warn("skipped {}:{}: {}", bad.file, bad.line, bad.reason);
  log.info("encode: {} image features -> {} ({} bad rows skipped)", written, path,
           bad_rows.bad_rows().size());
  return written;
}

std::int64_t write_text_features(const EncodeOptions& options, Encoder& encoder, Logger& log) {
  data::BadRowLog bad_rows;
  const auto schema = data::schema_of_queries_file(options.texts);
  data::QueryReadOptions read_options;
  read_options.require_image_ids = false;
  const auto queries = data::read_queries(options.texts, schema, bad_rows, read_options).queries;
  const std::string path = options.out + "/text_features.jsonl";
  data::AtomicFileWriter out(path);
  for (std::size_t first = 0; first < queries.size(); first += options.batch_size) {
    const std::size_t count = std::min<std::size_t>(options.batch_size, queries.size() - first);
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < count; ++i)
      texts.push_back(queries[first + i].text);
    const auto features = encode_texts(encoder, texts, options.batch_size);
    for (std::size_t i = 0; i < count; ++i)
      write_feature_line(out, "text_id", queries[first + i].id,
                         features[static_cast<std::int64_t>(i)]);
  }
  out.commit();
  for (const auto& bad : bad_rows.bad_rows())
    log.warn("skipped {}:{}: {}", bad.file, bad.line, bad.reason);
  log.info("encode: {} text features -> {}", queries.size(), path);
  return static_cast<std::int64_t>(queries.size());
}

// A feature file: ids in file order and a [N, D] float matrix.
struct FeatureFile {
  std::vector<std::int64_t> ids;
  torch::Tensor features;
};

FeatureFile read_features(const std::string& path, const std::vector<std::string>& id_keys) {
  data::LineReader reader(path);
  FeatureFile file;
  std::vector<float> values;
  std::unordered_set<std::int64_t> seen;
  std::int64_t dim = -1, number = 0;
  for (data::Line line; reader.next(&line);) {
    number = line.number;
    if (line.blank()) continue;
    try {
      const auto row = reader.parse_json(line);
      const json* id = nullptr;
      for (const auto& key : id_keys)
        if (row.contains(key)) id = &row.at(key);
      if (!id || !id->is_number_integer()) {
        throw data::DataError(fmt::format("{}:{}: no integer {}", path, number, id_keys.front()));
      }
      const auto feature = row.at("feature").get<std::vector<float>>();
      if (dim < 0) dim = static_cast<std::int64_t>(feature.size());
      if (static_cast<std::int64_t>(feature.size()) != dim || dim == 0) {
        throw data::DataError(fmt::format("{}:{}: feature of {} values, expected {}", path, number,
                                          feature.size(), dim));
      }
      // A repeated image id could not give 10 distinct ids; a repeated query id would be
      // predicted twice. The official scorer rejects both, so refuse the input here.
      if (!seen.insert(id->get<std::int64_t>()).second) {
        throw data::DataError(fmt::format("{}:{}: {} {} appears twice", path, number,
                                          id_keys.front(), id->get<std::int64_t>()));
      }
      file.ids.push_back(id->get<std::int64_t>());
      values.insert(values.end(), feature.begin(), feature.end());
    } catch (const json::exception& e) {
      throw data::DataError(fmt::format("{}:{}: {}", path, number, e.what()));
    }
  }
  if (file.ids.empty()) throw data::DataError(fmt::format("{}: no features", path));
  file.features =
      torch::from_blob(values.data(), {static_cast<std::int64_t>(file.ids.size()), dim}).clone();
  return file;
}

void add_encode_options(CLI::App* command, EncodeOptions& options) {
  command->add_option("--vision-config", options.vision_config,
                      "Chinese-CLIP vision model config (e.g. ViT-B-16.json)");
  command->add_option("--text-config", options.text_config,
                      "Chinese-CLIP text model config (e.g. RoBERTa-wwm-ext-base-chinese.json)");
  command->add_option("--checkpoint", options.checkpoint,
                      "weights: a .safetensors from launch/convert_chinese_clip.py, or with --run "
                      "a shopclip checkpoint (default: the run's best)");
  command->add_option("--vocab", options.vocab,
                      "the model's vocab.txt (Chinese-CLIP: 21128 tokens)");
  command->add_option("--run", options.run,
                      "a shopclip run directory instead of a Chinese-CLIP model");
  command->add_option("--images", options.images, "images to encode ({split}_imgs.tsv)");
  command->add_option("--texts", options.texts, "queries to encode ({split}_texts.jsonl)");
  command->add_option("--out", options.out, "output folder")->required();
  command->add_option("--context-length", options.context_length,
                      "Chinese-CLIP: tokens per query with [CLS] and [SEP] (default 52)");
  command->add_option("--batch-size", options.batch_size, "images or queries per forward pass");
  command->add_option("--threads", options.threads, "CPU threads; 0 = all cores");
  command->add_option("--device", options.device, "cpu, or cuda (GPU 0; needs LibTorch with CUDA)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_flag("--normalize", options.normalize,
                    "L2-normalise the features before writing (Chinese-CLIP's extract_features "
                    "writes them normalised)");
}

void add_search_options(CLI::App* command, SearchOptions& options) {
  command->add_option("--image-features", options.image_features,
                      "image_features.jsonl (or --index-dir)");
  command->add_option("--index-dir", options.index_dir,
                      "a saved index (`shopclip index build`) instead of --image-features: its "
                      "images, index and search parameters; the text features must come from "
                      "the same checkpoint (only their dimension can be checked)");
  command->add_option("--text-features", options.text_features, "text_features.jsonl")->required();
  command->add_option("--out", options.out, "predictions file to write (jsonl)")->required();
  command->add_option("--ref", options.reference,
                      "reference queries with ground truth: also print the official scores");
  command->add_option("--top-k", options.top_k, "predictions per query");
  command->add_option("--index", options.index, "FAISS index-factory string");
  command->add_flag("--tianchi", options.tianchi, "query_id/item_ids files");
}

int run_encode(const EncodeOptions& options, Logger& log) {
  if (options.images.empty() && options.texts.empty()) {
    throw std::invalid_argument("encode: nothing to do; give --images and/or --texts");
  }
  if (options.batch_size <= 0) throw std::invalid_argument("--batch-size must be positive");
  torch::set_num_threads(data::resolve_threads(options.threads));
  torch::NoGradGuard no_grad;
  const std::unique_ptr<Encoder> encoder =
      options.run.empty() ? chinese_clip_encoder(options, log) : shopclip_encoder(options, log);
  fs::create_directories(options.out);
  if (!options.images.empty()) write_image_features(options, *encoder, log);
  if (!options.texts.empty()) write_text_features(options, *encoder, log);
  return 0;
}

// The pool of `shopclip search`: feature-file rows indexed here, or a saved index as it is.
struct SearchPool {
  std::vector<std::int64_t> ids;
  torch::Tensor vectors;  // float32 [N, D], unit rows
  std::optional<EmbeddingIndex> built;
  std::optional<SavedIndex> saved;
  std::string source, factory;
  const EmbeddingIndex& index() const { return saved ? saved->index : *built; }
};

SearchPool open_search_pool(const SearchOptions& options) {
  if (options.image_features.empty() == options.index_dir.empty()) {
    throw std::invalid_argument("search: give --image-features or --index-dir (one of them)");
  }
  SearchPool pool;
  if (!options.index_dir.empty()) {
    pool.saved = read_saved_index(options.index_dir);
    pool.ids = pool.saved->ids;
    pool.vectors = pool.saved->pool;
    pool.source = options.index_dir;
    pool.factory = pool.saved->manifest.factory;
    return pool;
  }
  auto images = read_features(options.image_features, {"image_id", "item_id"});
  pool.ids = std::move(images.ids);
  // Cosine similarity, as Chinese-CLIP's evaluation ranks: raw features are normalised here.
  pool.vectors = unit_rows(images.features);
  pool.built.emplace(options.index, static_cast<int>(pool.vectors.size(1)));
  pool.built->add(pool.vectors.data_ptr<float>(), pool.vectors.size(0));
  pool.source = options.image_features;
  pool.factory = options.index;
  return pool;
}

int run_search(const SearchOptions& options, Logger& log) {
  const SearchPool pool = open_search_pool(options);
  const auto texts = read_features(options.text_features, {"text_id", "query_id"});
  if (pool.vectors.size(1) != texts.features.size(1)) {
    throw data::DataError(fmt::format("{} has {} dims, {} has {}", pool.source,
                                      pool.vectors.size(1), options.text_features,
                                      texts.features.size(1)));
  }
  if (static_cast<std::int64_t>(pool.ids.size()) < options.top_k) {
    throw data::DataError(fmt::format("{}: {} images, fewer than --top-k {}", pool.source,
                                      pool.ids.size(), options.top_k));
  }
  const auto queries = unit_rows(texts.features);
  const int dim = static_cast<int>(pool.vectors.size(1));
  std::int64_t completed = 0;
  const auto predictions = search_predictions(pool.index(), options.top_k, queries, pool.vectors,
                                              texts.ids, pool.ids, &completed);
  const auto schema =
      options.tianchi ? data::QuerySchema::kTianchi : data::QuerySchema::kChineseClip;
  data::write_predictions(options.out, schema, predictions);
  log.info("search: {} queries over {} images ({} dims, index {}{}) -> {}", texts.ids.size(),
           pool.ids.size(), dim, pool.factory,
           pool.saved ? fmt::format(", saved in {}", options.index_dir) : std::string(),
           options.out);
  if (completed > 0) {
    log.info(
        "search: the index found fewer than {} images for {} queries; completed them with "
        "the exact ranking of the rest",
        options.top_k, completed);
  }
  if (!options.reference.empty()) {
    data::BadRowLog bad;
    const auto reference = data::read_queries(options.reference, schema, bad);
    if (!bad.bad_rows().empty()) {
      const auto& first = bad.bad_rows().front();
      throw data::DataError(
          fmt::format("reference {}:{}: {}", first.file, first.line, first.reason));
    }
    std::cout << official_result_json(muge_recall(reference.queries, predictions)) << std::endl;
  }
  return 0;
}

}  // namespace

void register_feature_commands(CommandRegistry& commands) {
  auto encode = std::make_shared<EncodeOptions>();
  add_encode_options(
      commands.add("encode", "write image and text features (Chinese-CLIP's feature-file format)",
                   Processes::kOne,
                   [encode](CommandContext& context) { return run_encode(*encode, context.log); }),
      *encode);
  auto search = std::make_shared<SearchOptions>();
  add_search_options(
      commands.add("search", "top-k predictions from feature files, scored when --ref is given",
                   Processes::kOne,
                   [search](CommandContext& context) { return run_search(*search, context.log); }),
      *search);
}

}  // namespace shopclip
