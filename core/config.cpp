#include "core/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <ostream>
#include <set>
#include <sstream>
#include <type_traits>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace shopclip {
namespace {

std::string join_path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

// Edit distance with adjacent transpositions counted as one edit (optimal string alignment), to
// suggest the intended key for a typo: "widht" is one edit from "width", which must win over
// "widths" (two plain Levenshtein edits from both).
int edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) {
    d[i][0] = static_cast<int>(i);
  }
  for (size_t j = 0; j <= b.size(); ++j) {
    d[0][j] = static_cast<int>(j);
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string type_name(const bool&) {
  return "bool";
}
std::string type_name(const int&) {
  return "int";
}
std::string type_name(const std::int64_t&) {
  return "int";
}
std::string type_name(const double&) {
  return "float";
}
std::string type_name(const std::string&) {
  return "string";
}
std::string type_name(const std::vector<int>&) {
  return "list of int";
}
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string type_name(const E& value) {
  std::vector<std::string> names;
  for (const auto& entry : enum_names(value))
    names.push_back(entry.second);
  return fmt::format("{}", fmt::join(names, "|"));
}

// YAML scalars -> typed values, with an error that names the key.
template <class T>
T convert_scalar(const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) {
    throw ConfigError(fmt::format("config key '{}': expected a {} but found a {}", path,
                                  type_name(T{}), node.IsSequence() ? "list" : "map"));
  }
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw ConfigError(fmt::format("config key '{}': '{}' is not a valid {}", path, node.Scalar(),
                                  type_name(T{})));
  }
}

void read_value(const YAML::Node& node, const std::string& path, bool& out) {
  out = convert_scalar<bool>(node, path);
}
void read_value(const YAML::Node& node, const std::string& path, int& out) {
  out = convert_scalar<int>(node, path);
}
void read_value(const YAML::Node& node, const std::string& path, std::int64_t& out) {
  out = convert_scalar<std::int64_t>(node, path);
}
void read_value(const YAML::Node& node, const std::string& path, double& out) {
  out = convert_scalar<double>(node, path);
}
void read_value(const YAML::Node& node, const std::string& path, std::string& out) {
  if (node.IsNull()) {
    out.clear();
    return;
  }
  out = convert_scalar<std::string>(node, path);
}
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
void read_value(const YAML::Node& node, const std::string& path, E& out) {
  const auto name = convert_scalar<std::string>(node, path);
  std::vector<std::string> names;
  for (const auto& [value, candidate] : enum_names(out)) {
    if (candidate == name) {
      out = value;
      return;
    }
    names.push_back(candidate);
  }
  throw ConfigError(
      fmt::format("config key '{}': '{}' is not one of: {}", path, name, fmt::join(names, ", ")));
}
void read_value(const YAML::Node& node, const std::string& path, std::vector<int>& out) {
  if (!node.IsSequence()) {
    throw ConfigError(
        fmt::format("config key '{}': expected a list of int such as [32, 64]", path));
  }
  out.clear();
  for (size_t i = 0; i < node.size(); ++i) {
    out.push_back(convert_scalar<int>(node[i], fmt::format("{}[{}]", path, i)));
  }
}

// Visitor that fills a struct from a YAML map and rejects keys the struct does not declare.
class YamlReader {
 public:
  YamlReader(const YAML::Node& node, std::string prefix)
      : node_(node), prefix_(std::move(prefix)) {}

  template <class T>
  void operator()(const char* key, T& value, const char* /*help*/) {
    declared_.push_back(key);
    const YAML::Node child = node_[key];
    if (child) read_value(child, join_path(prefix_, key), value);
  }

  template <class S>
  void section(const char* key, S& section, const char* /*help*/) {
    declared_.push_back(key);
    const YAML::Node child = node_[key];
    if (!child || child.IsNull()) return;
    const std::string path = join_path(prefix_, key);
    if (!child.IsMap()) throw ConfigError(fmt::format("config key '{}': expected a map", path));
    read_section(child, path, section);
  }

  // Throws for the first key of the map that visit() did not declare.
  void reject_unknown_keys() const {
    for (const auto& entry : node_) {
      const std::string key = entry.first.as<std::string>();
      if (std::find(declared_.begin(), declared_.end(), key) != declared_.end()) continue;
      std::string best;
      int best_distance = 3;  // suggest only close matches
      for (const auto& candidate : declared_) {
        int d = edit_distance(key, candidate);
        if (d < best_distance) best_distance = d, best = candidate;
      }
      std::string hint = best.empty()
                             ? fmt::format("known keys here: {}", fmt::join(declared_, ", "))
                             : fmt::format("did you mean '{}'?", join_path(prefix_, best));
      throw ConfigError(fmt::format("unknown config key '{}' ({})", join_path(prefix_, key), hint));
    }
  }

  template <class S>
  static void read_section(const YAML::Node& node, const std::string& path, S& section) {
    YamlReader reader(node, path);
    section.visit(reader);
    reader.reject_unknown_keys();
  }

 private:
  const YAML::Node& node_;
  std::string prefix_;
  std::vector<std::string> declared_;
};

std::string format_value(bool v) {
  return v ? "true" : "false";
}
std::string format_value(int v) {
  return std::to_string(v);
}
std::string format_value(std::int64_t v) {
  return std::to_string(v);
}
std::string format_value(double v) {
  std::string text = fmt::format("{}", v);
  // Keep floats recognisable as floats when read back by people and other YAML tools.
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}
std::string format_value(const std::string& v) {
  // YAML double-quoted scalars accept JSON escapes.
  std::string out = "\"";
  for (char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += c;
    }
  }
  return out + "\"";
}
std::string format_value(const std::vector<int>& v) {
  return fmt::format("[{}]", fmt::join(v, ", "));
}
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string format_value(E v) {
  return format_value(enum_name(v));
}

// Visitor that writes a struct as commented YAML.
class YamlWriter {
 public:
  explicit YamlWriter(std::ostringstream& out, int indent = 0) : out_(out), indent_(indent) {}

  template <class T>
  void operator()(const char* key, T& value, const char* help) {
    std::string pad(indent_, ' ');
    out_ << pad << "# " << help << "\n" << pad << key << ": " << format_value(value) << "\n";
  }

  template <class S>
  void section(const char* key, S& section, const char* help) {
    std::string pad(indent_, ' ');
    out_ << pad << "# " << help << "\n" << pad << key << ":\n";
    YamlWriter child(out_, indent_ + 2);
    section.visit(child);
  }

 private:
  std::ostringstream& out_;
  int indent_;
};

// Visitor that lists fields for documentation.
class Describer {
 public:
  Describer(std::ostringstream& out, std::string prefix) : out_(out), prefix_(std::move(prefix)) {}

  template <class T>
  void operator()(const char* key, T& value, const char* help) {
    out_ << fmt::format("{:<34} {:<12} {:<18} {}\n", join_path(prefix_, key), type_name(value),
                        format_value(value), help);
  }

  template <class S>
  void section(const char* key, S& section, const char* /*help*/) {
    Describer child(out_, join_path(prefix_, key));
    section.visit(child);
  }

 private:
  std::ostringstream& out_;
  std::string prefix_;
};

// Applies "a.b.c=value" to the YAML tree, creating maps on the way.
void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) {
    throw ConfigError(fmt::format("override '{}' is not of the form key.path=value", assignment));
  }
  const std::string path = assignment.substr(0, equals);
  const std::string value_text = assignment.substr(equals + 1);
  std::vector<std::string> keys;
  std::stringstream stream(path);
  for (std::string key; std::getline(stream, key, '.');) {
    if (key.empty()) throw ConfigError(fmt::format("override '{}': empty key in path", assignment));
    keys.push_back(key);
  }
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("override '{}': value is not valid YAML: {}", assignment, e.msg));
  }
  // yaml-cpp nodes are handles: walk by reassigning a copy, not a reference.
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node next = chain.back()[keys[i]];
    if (next.IsDefined() && !next.IsNull() && !next.IsMap()) {
      throw ConfigError(fmt::format("override '{}': '{}' is not a section", assignment, keys[i]));
    }
    chain.push_back(next);
  }
  chain.back()[keys.back()] = value;
}

}  // namespace

std::ostream& operator<<(std::ostream& out, ImageTowerType value) {
  return out << enum_name(value);
}
std::ostream& operator<<(std::ostream& out, LossMode value) {
  return out << enum_name(value);
}
std::ostream& operator<<(std::ostream& out, FrozenTower value) {
  return out << enum_name(value);
}

const EnumNames<ImageTowerType>& enum_names(ImageTowerType) {
  static const EnumNames<ImageTowerType> names = {{ImageTowerType::kCnn, "cnn"},
                                                  {ImageTowerType::kVit, "vit"}};
  return names;
}
const EnumNames<LossMode>& enum_names(LossMode) {
  static const EnumNames<LossMode> names = {{LossMode::kLocal, "local"}, {LossMode::kFull, "full"}};
  return names;
}
std::ostream& operator<<(std::ostream& out, AugmentRecipe value) {
  return out << enum_name(value);
}

std::ostream& operator<<(std::ostream& out, AugmentPolicy value) {
  return out << enum_name(value);
}

std::ostream& operator<<(std::ostream& out, Resample value) {
  return out << enum_name(value);
}

const EnumNames<AugmentRecipe>& enum_names(AugmentRecipe) {
  static const EnumNames<AugmentRecipe> names = {{AugmentRecipe::kCustom, "custom"},
                                                 {AugmentRecipe::kChineseClip, "chinese_clip"}};
  return names;
}

const EnumNames<AugmentPolicy>& enum_names(AugmentPolicy) {
  static const EnumNames<AugmentPolicy> names = {{AugmentPolicy::kNone, "none"},
                                                 {AugmentPolicy::kRandAugment, "randaugment"},
                                                 {AugmentPolicy::kAutoAugment, "autoaugment"}};
  return names;
}

const EnumNames<Resample>& enum_names(Resample) {
  static const EnumNames<Resample> names = {{Resample::kBicubic, "bicubic"},
                                            {Resample::kBilinear, "bilinear"}};
  return names;
}

const EnumNames<FrozenTower>& enum_names(FrozenTower) {
  static const EnumNames<FrozenTower> names = {{FrozenTower::kNone, "none"},
                                               {FrozenTower::kImage, "image"},
                                               {FrozenTower::kText, "text"},
                                               {FrozenTower::kBoth, "both"}};
  return names;
}

Config Config::from_yaml(const std::string& yaml_text, const std::string& source,
                         const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(
        fmt::format("{}: line {}: YAML syntax error: {}", source, e.mark.line + 1, e.msg));
  }
  if (root.IsNull() || !root.IsDefined()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw ConfigError(fmt::format("{}: the top level must be a map", source));
  for (const auto& assignment : overrides)
    apply_override(root, assignment);

  Config config;
  try {
    YamlReader::read_section(root, "", config);
    config.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", source, e.what()));
  }
  return config;
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return from_yaml("{}", "<defaults>", overrides);
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot read config file '{}'", path));
  std::ostringstream text;
  text << in.rdbuf();
  return from_yaml(text.str(), path, overrides);
}

std::string Config::to_yaml() const {
  std::ostringstream out;
  out << "# shopclip resolved configuration\n";
  YamlWriter writer(out);
  const_cast<Config*>(this)->visit(
      writer);  // visit() is shared with the readers; it writes nothing
  return out.str();
}

void config_require(bool ok, const std::string& key, const std::string& what) {
  if (!ok) throw ConfigError(fmt::format("config key '{}': {}", key, what));
}

void ImageTowerConfig::check() const {
  config_require(resolution >= 8, "model.image.resolution", "must be >= 8");
  if (type == ImageTowerType::kCnn) {
    config_require(!widths.empty(), "model.image.widths", "needs at least one stage");
    for (int w : widths)
      config_require(w > 0, "model.image.widths", "widths must be positive");
    return;
  }
  config_require(patch_size > 0 && resolution % patch_size == 0, "model.image.patch_size",
                 "must divide model.image.resolution");
  config_require(width > 0 && heads > 0 && width % heads == 0, "model.image.heads",
                 "must divide model.image.width");
  config_require(layers > 0, "model.image.layers", "must be positive");
  config_require(mlp > 0, "model.image.mlp", "must be positive");
}

void RerankerConfig::check() const {
  config_require(layers >= 0 && layers <= 4, "model.reranker.layers", "must be within 0..4");
  config_require(width > 0 && heads > 0 && width % heads == 0, "model.reranker.heads",
                 "must divide model.reranker.width");
  config_require(mlp > 0, "model.reranker.mlp", "must be positive");
  const int side = static_cast<int>(std::lround(std::sqrt(image_tokens)));
  config_require(image_tokens >= 0 && side * side == image_tokens, "model.reranker.image_tokens",
                 "must be 0 or a square (1, 4, 9, 16, ...)");
}

void ImageAugmentConfig::check() const {
  const std::string prefix = "train.image_augment.";
  config_require(crop_scale_min >= 0 && crop_scale_min <= 1, prefix + "crop_scale_min",
                 "must be within [0, 1]");
  config_require(crop_scale_max > 0 && crop_scale_max <= 1 && crop_scale_max >= crop_scale_min,
                 prefix + "crop_scale_max", "must be within (0, 1] and >= crop_scale_min");
  config_require(crop_ratio_min > 0, prefix + "crop_ratio_min", "must be positive");
  config_require(crop_ratio_max >= crop_ratio_min, prefix + "crop_ratio_max",
                 "must be >= crop_ratio_min");
  config_require(hflip >= 0 && hflip <= 1, prefix + "hflip", "must be within [0, 1]");
  config_require(rotate_degrees >= 0 && rotate_degrees <= 180, prefix + "rotate_degrees",
                 "must be within [0, 180]");
  config_require(fill.size() == 3, prefix + "fill", "must be three values (R, G, B)");
  for (const int value : fill)
    config_require(value >= 0 && value <= 255, prefix + "fill", "values must be within [0, 255]");
  config_require(brightness >= 0, prefix + "brightness", "must be >= 0");
  config_require(contrast >= 0, prefix + "contrast", "must be >= 0");
  config_require(saturation >= 0, prefix + "saturation", "must be >= 0");
  config_require(hue >= 0 && hue <= 0.5, prefix + "hue", "must be within [0, 0.5]");
  config_require(grayscale >= 0 && grayscale <= 1, prefix + "grayscale", "must be within [0, 1]");
  config_require(randaugment_ops >= 1, prefix + "randaugment_ops", "must be >= 1");
  config_require(randaugment_magnitude >= 0 && randaugment_magnitude <= 10,
                 prefix + "randaugment_magnitude", "must be within [0, 10]");
}

namespace {

// Each field's key and value as text, in visit() order (for comparing two instances).
struct FieldText {
  std::vector<std::pair<std::string, std::string>> fields;
  template <class T>
  void operator()(const char* key, T& value, const char*) {
    fields.emplace_back(key, text(value));
  }
  template <class T>
  static std::string text(const T& value) {
    if constexpr (std::is_enum_v<T>) {
      return enum_name(value);
    } else if constexpr (std::is_same_v<T, std::vector<int>>) {
      return fmt::format("{}", fmt::join(value, ","));
    } else {
      return fmt::format("{}", value);
    }
  }
};

}  // namespace

std::string ImageAugmentConfig::first_changed_field() const {
  ImageAugmentConfig defaults, current = *this;
  FieldText default_text, current_text;
  defaults.visit(default_text);
  current.visit(current_text);
  for (std::size_t i = 0; i < current_text.fields.size(); ++i)
    if (current_text.fields[i] != default_text.fields[i]) return current_text.fields[i].first;
  return "";
}

std::string ImageAugmentConfig::fields_text() const {
  ImageAugmentConfig current = *this;
  FieldText text;
  current.visit(text);
  std::string out;
  for (const auto& [key, value] : text.fields)
    out += (out.empty() ? "" : "; ") + key + "=" + value;
  return out;
}

void TextAugmentConfig::check() const {
  const std::string prefix = "train.text_augment.";
  for (const auto& [key, p] : {std::pair<const char*, double>{"variants", variants},
                               {"synonym", synonym},
                               {"deletion", deletion},
                               {"swap", swap}}) {
    config_require(p >= 0 && p <= 1, prefix + key, "must be within [0, 1]");
  }
  config_require(max_deleted >= 1, prefix + "max_deleted", "must be >= 1");
  config_require(synonym == 0 || !synonyms_file.empty(), prefix + "synonyms_file",
                 "is needed when train.text_augment.synonym > 0");
}

void TrainConfig::check() const {
  config_require(batch_size >= 2, "train.batch_size", "must be >= 2 (a batch needs negatives)");
  config_require(epochs >= 1, "train.epochs", "must be >= 1");
  config_require(lr > 0, "train.lr", "must be positive");
  config_require(weight_decay >= 0, "train.weight_decay", "must be >= 0");
  config_require(beta1 >= 0 && beta1 < 1, "train.beta1", "must be within [0, 1)");
  config_require(beta2 >= 0 && beta2 < 1, "train.beta2", "must be within [0, 1)");
  config_require(eps > 0, "train.eps", "must be positive");
  config_require(warmup_steps >= 0, "train.warmup_steps", "must be >= 0");
  config_require(warmup_fraction >= 0 && warmup_fraction < 1, "train.warmup_fraction",
                 "must be in [0, 1)");
  config_require(min_lr_ratio >= 0 && min_lr_ratio <= 1, "train.min_lr_ratio",
                 "must be within [0, 1]");
  config_require(grad_clip >= 0, "train.grad_clip", "must be >= 0");
  config_require(max_minutes >= 0, "train.max_minutes", "must be >= 0");
  config_require(checkpoint_every_minutes >= 0, "train.checkpoint_every_minutes", "must be >= 0");
  config_require(patience >= 0, "train.patience", "must be >= 0");
  config_require(eval_every >= 1, "train.eval_every", "must be >= 1");
  config_require(log_every >= 1, "train.log_every", "must be >= 1");
  config_require(profile_steps >= 0, "train.profile_steps", "must be >= 0");
  config_require(max_shift >= 0, "train.max_shift", "must be >= 0");
  config_require(image_cache_gib >= 0, "train.image_cache_gib", "must be >= 0");
  config_require(infonce_weight >= 0, "train.infonce_weight", "must be >= 0");
  config_require(triplet_weight >= 0, "train.triplet_weight", "must be >= 0");
  config_require(rerank_weight >= 0, "train.rerank_weight", "must be >= 0");
  config_require(infonce_weight > 0 || triplet_weight > 0 || rerank_weight > 0,
                 "train.infonce_weight",
                 "InfoNCE, triplet and reranker weights are all 0: there is nothing to train");

  config_require(triplet_margin > 0, "train.triplet_margin", "must be positive");
  config_require(triplet_start_step >= 0, "train.triplet_start_step", "must be >= 0");
  config_require(bucket_mb > 0, "train.bucket_mb", "must be positive");
  config_require(check_every >= 0, "train.check_every", "must be >= 0");
  config_require(micro_batch >= 0, "train.micro_batch", "must be >= 0");
  config_require(ema_decay == 0 || (ema_decay > 0 && ema_decay < 1), "train.ema_decay",
                 "must be 0 (off) or in (0, 1)");
  image_augment.check();
  text_augment.check();
  config_require(mixgen >= 0 && mixgen <= 0.5, "train.mixgen", "must be within [0, 0.5]");
  config_require(mixgen_lambda >= 0 && mixgen_lambda <= 1, "train.mixgen_lambda",
                 "must be within [0, 1]");
  config_require(loader_threads >= 1, "train.loader_threads", "must be >= 1");
  config_require(mine_every >= 0, "train.mine_every", "must be >= 0");
  config_require(mine_skip >= 0, "train.mine_skip", "must be >= 0");
  config_require(mine_depth > mine_skip, "train.mine_depth", "must be > train.mine_skip");
  config_require(mine_max_ratio > 0 && mine_max_ratio <= 1, "train.mine_max_ratio",
                 "must be within (0, 1]");
  config_require(mine_share >= 0 && mine_share <= 0.5, "train.mine_share",
                 "must be within [0, 0.5] (each mined pair needs an anchor in the batch)");
  if (augment != AugmentRecipe::kCustom) {
    const std::string changed = image_augment.first_changed_field();
    config_require(changed.empty(), "train.image_augment." + changed,
                   "train.augment " + enum_name(augment) +
                       " is a fixed recipe; set train.augment: custom to choose the image "
                       "augmentations yourself");
  }
}

void Config::validate() const {
  run.check();
  data.check();
  prep.check();
  model.check();
  train.check();
  eval.check();
  dist.check();
  distill.check();
  // Rules that span sections.
  config_require(!train.amp || run.device == "cuda", "train.amp", "needs run.device: cuda");
  config_require(train.max_shift < model.image.resolution / 2, "train.max_shift",
                 "must be within [0, resolution / 2)");
  config_require(prep.resolution == 0 || prep.resolution >= model.image.resolution,
                 "prep.resolution", "must be 0 or at least model.image.resolution");
  config_require(train.rerank_weight == 0 || model.reranker.enabled(), "train.rerank_weight",
                 "needs a reranker to train: set model.reranker.layers (1..4)");
}

std::string Config::prep_dir() const {
  if (!data.prep_dir.empty()) return data.prep_dir;
  if (data.root.empty()) throw ConfigError("data.root is not set (the folder of the MUGE files)");
  return fmt::format("{}/prep-r{}", data.root, model.image.resolution);
}

std::string Config::prep_split_dir(const std::string& split) const {
  if (!data.prep_dir.empty() || prep_resolution(split) == model.image.resolution) {
    return prep_dir() + "/" + split;
  }
  return fmt::format("{}/prep-r{}/{}", data.root, prep_resolution(split), split);
}

int Config::prep_resolution(const std::string& split) const {
  return split == data.train_split && prep.resolution > 0 ? prep.resolution
                                                          : model.image.resolution;
}

std::string describe_config() {
  std::ostringstream out;
  out << fmt::format("{:<34} {:<12} {:<18} {}\n", "key", "type", "default", "description");
  Config defaults;
  Describer describer(out, "");
  defaults.visit(describer);
  return out.str();
}

}  // namespace shopclip
