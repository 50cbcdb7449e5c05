#include "core/model/chinese_clip_config.h"

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace shopclip {
namespace {

using nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(fmt::format("{}: cannot open", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json parse_object(const std::string& text, const std::string& name) {
  json parsed;
  try {
    parsed = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(fmt::format("{}: not JSON ({})", name, e.what()));
  }
  if (!parsed.is_object()) throw std::invalid_argument(fmt::format("{}: not a JSON object", name));
  return parsed;
}

// Unknown keys are errors: a misspelt key would otherwise silently keep a default.
void check_keys(const json& object, const std::set<std::string>& known, const std::string& name) {
  for (const auto& item : object.items()) {
    if (!known.count(item.key())) {
      throw std::invalid_argument(fmt::format("{}: unknown key '{}'", name, item.key()));
    }
  }
}

int positive_int(const json& object, const std::string& key, const std::string& name) {
  if (!object.contains(key))
    throw std::invalid_argument(fmt::format("{}: missing key '{}'", name, key));
  const auto& value = object.at(key);
  if (!value.is_number_integer() || value.get<long long>() <= 0) {
    throw std::invalid_argument(
        fmt::format("{}: '{}' must be a positive integer, got {}", name, key, value.dump()));
  }
  return value.get<int>();
}

}  // namespace

ChineseClipConfig ChineseClipConfig::from_json_files(const std::string& vision_json,
                                                     const std::string& text_json) {
  return from_json_text(read_text(vision_json), vision_json, read_text(text_json), text_json);
}

ChineseClipConfig ChineseClipConfig::from_json_text(const std::string& vision_text,
                                                    const std::string& vision_name,
                                                    const std::string& text_text,
                                                    const std::string& text_name) {
  ChineseClipConfig config;
  const json vision = parse_object(vision_text, vision_name);
  check_keys(vision,
             {"embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size",
              "vision_head_width"},
             vision_name);
  auto& v = config.vision;
  v.embed_dim = positive_int(vision, "embed_dim", vision_name);
  v.image_resolution = positive_int(vision, "image_resolution", vision_name);
  v.width = positive_int(vision, "vision_width", vision_name);
  if (!vision.contains("vision_layers")) {
    throw std::invalid_argument(fmt::format("{}: missing key 'vision_layers'", vision_name));
  }
  if (vision.contains("vision_head_width")) {
    v.head_width = positive_int(vision, "vision_head_width", vision_name);
  }
  json layers = vision.at("vision_layers");
  if (layers.is_string()) {  // RN50.json: "[3,4,6,3]"
    try {
      layers = json::parse(layers.get<std::string>());
    } catch (const json::exception&) {
      throw std::invalid_argument(fmt::format("{}: 'vision_layers' {} is not an integer or a list",
                                              vision_name, vision.at("vision_layers").dump()));
    }
  }
  if (layers.is_array()) {
    for (const auto& count : layers) {
      if (!count.is_number_integer() || count.get<int>() <= 0) {
        throw std::invalid_argument(fmt::format(
            "{}: 'vision_layers' must hold positive integers, got {}", vision_name, layers.dump()));
      }
      v.resnet_layers.push_back(count.get<int>());
    }
    if (v.resnet_layers.size() != 4) {
      throw std::invalid_argument(fmt::format(
          "{}: a ResNet's 'vision_layers' lists 4 stages, got {}", vision_name, layers.dump()));
    }
    if (v.image_resolution % 32 != 0) {
      throw std::invalid_argument(
          fmt::format("{}: a ResNet needs 'image_resolution' divisible by 32, got {}", vision_name,
                      v.image_resolution));
    }
  } else {
    v.transformer_layers = positive_int(vision, "vision_layers", vision_name);
    v.patch_size = positive_int(vision, "vision_patch_size", vision_name);
    if (v.image_resolution % v.patch_size != 0) {
      throw std::invalid_argument(
          fmt::format("{}: 'image_resolution' {} is not a multiple of 'vision_patch_size' {}",
                      vision_name, v.image_resolution, v.patch_size));
    }
    if (v.width % 64 != 0) {
      throw std::invalid_argument(
          fmt::format("{}: 'vision_width' {} must be a multiple of 64 (heads of width 64)",
                      vision_name, v.width));
    }
  }

  const json text = parse_object(text_text, text_name);
  check_keys(text,
             {"vocab_size", "text_attention_probs_dropout_prob", "text_hidden_act",
              "text_hidden_dropout_prob", "text_hidden_size", "text_initializer_range",
              "text_intermediate_size", "text_max_position_embeddings", "text_num_attention_heads",
              "text_num_hidden_layers", "text_type_vocab_size"},
             text_name);
  auto& t = config.text;
  t.vocab_size = positive_int(text, "vocab_size", text_name);
  t.hidden_size = positive_int(text, "text_hidden_size", text_name);
  t.num_hidden_layers = positive_int(text, "text_num_hidden_layers", text_name);
  t.num_attention_heads = positive_int(text, "text_num_attention_heads", text_name);
  t.intermediate_size = positive_int(text, "text_intermediate_size", text_name);
  t.max_position_embeddings = positive_int(text, "text_max_position_embeddings", text_name);
  t.type_vocab_size = positive_int(text, "text_type_vocab_size", text_name);
  if (text.contains("text_hidden_act")) {
    if (!text.at("text_hidden_act").is_string() || text.at("text_hidden_act") != "gelu") {
      throw std::invalid_argument(fmt::format("{}: 'text_hidden_act' {} is not supported (gelu)",
                                              text_name, text.at("text_hidden_act").dump()));
    }
  }
  if (t.hidden_size % t.num_attention_heads != 0) {
    throw std::invalid_argument(
        fmt::format("{}: 'text_hidden_size' {} is not a multiple of 'text_num_attention_heads' {}",
                    text_name, t.hidden_size, t.num_attention_heads));
  }
  return config;
}

}  // namespace shopclip
