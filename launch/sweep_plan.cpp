#include "launch/sweep_plan.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/config.h"
#include "data/files.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void refuse(const std::string& source, const std::string& key,
                         const std::string& what) {
  throw std::invalid_argument(fmt::format("{}: '{}': {}", source, key, what));
}

// A YAML node as one line of YAML text (flow style for lists and maps).
std::string yaml_text(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetSeqFormat(YAML::Flow);
  out.SetMapFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

std::vector<std::string> value_list(const YAML::Node& node, const std::string& source,
                                    const std::string& key) {
  if (!node.IsSequence() || node.size() == 0) refuse(source, key, "expected a non-empty list");
  std::vector<std::string> values;
  for (const auto& item : node)
    values.push_back(yaml_text(item));
  return values;
}

std::vector<std::pair<std::string, std::vector<std::string>>> axis_map(const YAML::Node& node,
                                                                       const std::string& source,
                                                                       const std::string& section) {
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  if (!node) return axes;
  if (!node.IsMap()) refuse(source, section, "expected a map of key: [values]");
  for (const auto& item : node) {
    const auto key = item.first.as<std::string>();
    axes.emplace_back(key, value_list(item.second, source, section + "." + key));
  }
  return axes;
}

double number(const YAML::Node& node, const std::string& source, const std::string& key) {
  try {
    return node.as<double>();
  } catch (const YAML::Exception&) {
    refuse(source, key, "expected a number, got '" + yaml_text(node) + "'");
  }
}

RandomParam random_param(const std::string& key, const YAML::Node& node,
                         const std::string& source) {
  const std::string where = "random.params." + key;
  if (!node.IsMap() || node.size() != 1) {
    refuse(source, where,
           "expected one of {choice: [...]}, {uniform: [lo, hi]}, "
           "{log_uniform: [lo, hi]}, {int: [lo, hi]}");
  }
  RandomParam param;
  param.key = key;
  const auto kind = node.begin()->first.as<std::string>();
  const YAML::Node args = node.begin()->second;
  if (kind == "choice") {
    param.kind = RandomParam::Kind::kChoice;
    param.choices = value_list(args, source, where + ".choice");
    return param;
  }
  if (kind == "uniform") {
    param.kind = RandomParam::Kind::kUniform;
  } else if (kind == "log_uniform") {
    param.kind = RandomParam::Kind::kLogUniform;
  } else if (kind == "int") {
    param.kind = RandomParam::Kind::kInt;
  } else {
    refuse(source, where,
           "unknown distribution '" + kind + "' (choice, uniform, log_uniform or int)");
  }
  if (!args.IsSequence() || args.size() != 2) refuse(source, where, "expected [low, high]");
  param.low = number(args[0], source, where);
  param.high = number(args[1], source, where);
  if (!(param.high > param.low)) refuse(source, where, "high must exceed low");
  if (param.kind == RandomParam::Kind::kLogUniform && param.low <= 0) {
    refuse(source, where, "log_uniform needs low > 0");
  }
  if (param.kind == RandomParam::Kind::kInt &&
      (param.low != std::floor(param.low) || param.high != std::floor(param.high))) {
    refuse(source, where, "int needs whole numbers");
  }
  return param;
}

// A draw in [0, 1) from the generator's top 53 bits (the same on every standard library).
double unit(std::mt19937_64& rng) {
  return double(rng() >> 11) * 0x1.0p-53;
}

std::string draw(const RandomParam& param, std::mt19937_64& rng) {
  switch (param.kind) {
    case RandomParam::Kind::kChoice:
      return param.choices[rng() % param.choices.size()];
    case RandomParam::Kind::kUniform:
      return fmt::format("{:.6g}", param.low + (param.high - param.low) * unit(rng));
    case RandomParam::Kind::kLogUniform:
      return fmt::format(
          "{:.6g}",
          std::exp(std::log(param.low) + (std::log(param.high) - std::log(param.low)) * unit(rng)));
    case RandomParam::Kind::kInt: {
      const auto span = static_cast<std::uint64_t>(param.high - param.low) + 1;
      return std::to_string(static_cast<std::int64_t>(param.low) +
                            static_cast<std::int64_t>(rng() % span));
    }
  }
  return "";
}

// "003-lr=0.001-widths=[16,32]": the trial number and the last part of each varied key, with
// characters a file name should not hold replaced.
std::string trial_name(int index, const std::vector<Assignment>& assignments) {
  std::string name = fmt::format("{:03d}", index);
  for (const auto& [key, value] : assignments) {
    const auto dot = key.rfind('.');
    name += "-" + key.substr(dot == std::string::npos ? 0 : dot + 1) + "=" + value;
  }
  for (char& c : name) {
    const bool plain = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                       c == '_' || c == '=' || c == '+' || c == ',' || c == '[' || c == ']';
    if (!plain) c = '_';
  }
  if (name.size() > 120) name.resize(120);
  return name;
}

}  // namespace

std::vector<std::string> Trial::overrides(const SweepSpec& spec) const {
  std::vector<std::string> out = spec.base_overrides;
  for (const auto& [key, value] : assignments)
    out.push_back(key + "=" + value);
  return out;
}

SweepSpec parse_sweep_yaml(const std::string& yaml_text_in, const std::string& source,
                           const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text_in);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(fmt::format("{}: not valid YAML: {}", source, e.what()));
  }
  if (!root.IsMap()) throw std::invalid_argument(source + ": expected a map at the top");
  static const std::set<std::string> sections = {"base",   "grid",  "zip",
                                                 "random", "seeds", "early_stop"};
  for (const auto& item : root) {
    const auto key = item.first.as<std::string>();
    if (!sections.count(key)) {
      refuse(source, key, "unknown section (base, grid, zip, random, seeds, early_stop)");
    }
  }
  SweepSpec spec;
  if (const YAML::Node base = root["base"]) {
    for (const auto& item : base) {
      const auto key = item.first.as<std::string>();
      if (key == "config") {
        const fs::path path = item.second.as<std::string>();
        spec.base_config = path.empty() || path.is_absolute()
                               ? path.string()
                               : (fs::path(base_dir) / path).string();
      } else if (key == "set") {
        for (const auto& value : item.second)
          spec.base_overrides.push_back(value.as<std::string>());
      } else {
        refuse(source, "base." + key, "unknown key (config, set)");
      }
    }
  }
  spec.grid = axis_map(root["grid"], source, "grid");
  spec.zip = axis_map(root["zip"], source, "zip");
  if (const YAML::Node random = root["random"]) {
    for (const auto& item : random) {
      const auto key = item.first.as<std::string>();
      if (key == "trials") {
        spec.random_trials = item.second.as<int>();
      } else if (key == "seed") {
        spec.random_seed = item.second.as<std::uint64_t>();
      } else if (key == "params") {
        for (const auto& param : item.second)
          spec.random_params.push_back(
              random_param(param.first.as<std::string>(), param.second, source));
      } else {
        refuse(source, "random." + key, "unknown key (trials, seed, params)");
      }
    }
    if (spec.random_trials < 1) refuse(source, "random.trials", "must be at least 1");
    if (spec.random_params.empty()) refuse(source, "random.params", "names no key");
  }
  if (const YAML::Node stop = root["early_stop"]) {
    for (const auto& item : stop) {
      const auto key = item.first.as<std::string>();
      const std::string where = "early_stop." + key;
      if (key == "eta") {
        spec.early_stop.eta = number(item.second, source, where);
        if (spec.early_stop.eta <= 1) refuse(source, where, "must exceed 1");
      } else if (key == "unit") {
        const auto unit = item.second.as<std::string>();
        if (unit != "steps" && unit != "minutes") refuse(source, where, "steps or minutes");
        spec.early_stop.unit =
            unit == "steps" ? EarlyStopSpec::Unit::kSteps : EarlyStopSpec::Unit::kMinutes;
      } else if (key == "milestones") {
        for (const auto& value : item.second) {
          const double milestone = number(value, source, where);
          if (!spec.early_stop.milestones.empty() &&
              milestone <= spec.early_stop.milestones.back()) {
            refuse(source, where, "milestones must increase");
          }
          spec.early_stop.milestones.push_back(milestone);
        }
      } else {
        refuse(source, where, "unknown key (eta, unit, milestones)");
      }
    }
    if (!spec.early_stop.enabled()) refuse(source, "early_stop", "needs eta and milestones");
  }
  if (const YAML::Node seeds = root["seeds"]) {
    for (const auto& seed : seeds)
      spec.seeds.push_back(seed.as<std::int64_t>());
  }
  return spec;
}

SweepSpec read_sweep_file(const std::string& path) {
  return parse_sweep_yaml(data::read_whole_file(path), path,
                          fs::absolute(path).parent_path().string());
}

std::pair<std::string, std::vector<std::string>> parse_axis(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    throw std::invalid_argument("--axis " + text + ": expected key=value1,value2,...");
  }
  std::vector<std::string> values;
  std::string current;
  int depth = 0;
  char quote = 0;
  for (const char c : text.substr(eq + 1)) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ',' && depth == 0) {
      values.push_back(current);
      current.clear();
      continue;
    }
    current += c;
  }
  values.push_back(current);
  for (const auto& value : values) {
    if (value.empty()) throw std::invalid_argument("--axis " + text + ": an empty value");
  }
  return {text.substr(0, eq), values};
}

std::string SweepSpec::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "base" << YAML::Value << YAML::BeginMap << YAML::Key << "config"
      << YAML::Value << base_config << YAML::Key << "set" << YAML::Value << YAML::Flow
      << base_overrides << YAML::EndMap;
  for (const auto& [section, axes] : {std::pair{"grid", &grid}, std::pair{"zip", &zip}}) {
    out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    for (const auto& [key, values] : *axes)
      out << YAML::Key << key << YAML::Value << YAML::Flow << values;
    out << YAML::EndMap;
  }
  if (random_trials > 0) {
    out << YAML::Key << "random" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "trials" << YAML::Value << random_trials;
    out << YAML::Key << "seed" << YAML::Value << random_seed;
    out << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
    for (const auto& param : random_params) {
      out << YAML::Key << param.key << YAML::Value << YAML::Flow;
      if (param.kind == RandomParam::Kind::kChoice) {
        out << YAML::BeginMap << YAML::Key << "choice" << YAML::Value << param.choices
            << YAML::EndMap;
      } else {
        const char* kind = param.kind == RandomParam::Kind::kUniform      ? "uniform"
                           : param.kind == RandomParam::Kind::kLogUniform ? "log_uniform"
                                                                          : "int";
        out << YAML::BeginMap << YAML::Key << kind << YAML::Value << YAML::BeginSeq << param.low
            << param.high << YAML::EndSeq << YAML::EndMap;
      }
    }
    out << YAML::EndMap << YAML::EndMap;
  }
  if (early_stop.enabled()) {
    out << YAML::Key << "early_stop" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "eta" << YAML::Value << early_stop.eta;
    out << YAML::Key << "unit" << YAML::Value
        << (early_stop.unit == EarlyStopSpec::Unit::kSteps ? "steps" : "minutes");
    out << YAML::Key << "milestones" << YAML::Value << YAML::Flow << early_stop.milestones;
    out << YAML::EndMap;
  }
  out << YAML::Key << "seeds" << YAML::Value << YAML::Flow << seeds;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<Trial> expand_trials(const SweepSpec& spec) {
  std::set<std::string> varied;
  auto claim = [&varied](const std::string& key) {
    if (!varied.insert(key).second) {
      throw std::invalid_argument("sweep: '" + key + "' is varied by two axes");
    }
  };
  for (const auto& [key, values] : spec.grid)
    claim(key);
  for (const auto& [key, values] : spec.zip) {
    claim(key);
    if (values.size() != spec.zip.front().second.size()) {
      throw std::invalid_argument(
          fmt::format("sweep: zip lists must have one length: '{}' has {} values, '{}' has {}", key,
                      values.size(), spec.zip.front().first, spec.zip.front().second.size()));
    }
  }
  for (const auto& param : spec.random_params)
    claim(param.key);
  if (!spec.seeds.empty()) claim("run.seed");

  // Grid points: a mixed-radix counter over the axes, the last axis fastest.
  std::vector<std::vector<Assignment>> configurations = {{}};
  for (const auto& [key, values] : spec.grid) {
    std::vector<std::vector<Assignment>> next;
    for (const auto& partial : configurations) {
      for (const auto& value : values) {
        next.push_back(partial);
        next.back().emplace_back(key, value);
      }
    }
    configurations = std::move(next);
  }
  if (!spec.zip.empty()) {
    std::vector<std::vector<Assignment>> next;
    for (const auto& partial : configurations) {
      for (std::size_t i = 0; i < spec.zip.front().second.size(); ++i) {
        next.push_back(partial);
        for (const auto& [key, values] : spec.zip)
          next.back().emplace_back(key, values[i]);
      }
    }
    configurations = std::move(next);
  }
  if (spec.random_trials > 0) {
    std::mt19937_64 rng(spec.random_seed);
    std::vector<std::vector<Assignment>> draws;
    for (int t = 0; t < spec.random_trials; ++t) {
      draws.emplace_back();
      for (const auto& param : spec.random_params)
        draws.back().emplace_back(param.key, draw(param, rng));
    }
    std::vector<std::vector<Assignment>> next;
    for (const auto& partial : configurations) {
      for (const auto& sample : draws) {
        next.push_back(partial);
        next.back().insert(next.back().end(), sample.begin(), sample.end());
      }
    }
    configurations = std::move(next);
  }

  std::vector<Trial> trials;
  for (std::size_t c = 0; c < configurations.size(); ++c) {
    const std::vector<std::int64_t> seeds =
        spec.seeds.empty() ? std::vector<std::int64_t>{-1} : spec.seeds;
    for (const auto seed : seeds) {
      Trial trial;
      trial.index = static_cast<int>(trials.size());
      trial.configuration = static_cast<int>(c);
      trial.assignments = configurations[c];
      if (!spec.seeds.empty()) {
        trial.assignments.emplace_back("run.seed", std::to_string(seed));
      }
      trial.name = trial_name(trial.index, trial.assignments);
      trials.push_back(std::move(trial));
    }
  }
  return trials;
}

SuccessiveHalving::SuccessiveHalving(EarlyStopSpec spec)
    : spec_(std::move(spec)), rungs_(spec_.milestones.size()) {}

double SuccessiveHalving::record(int trial, double position, double score) {
  double failed = -1;
  for (std::size_t m = 0; m < spec_.milestones.size(); ++m) {
    auto& rung = rungs_[m];
    if (position < spec_.milestones[m] || rung.count(trial)) continue;
    rung[trial] = score;
    if (rung.size() < spec_.eta) continue;
    std::vector<double> scores;
    for (const auto& [other, other_score] : rung)
      scores.push_back(other_score);
    std::sort(scores.begin(), scores.end(), std::greater<double>());
    const auto keep = std::max<std::size_t>(1, static_cast<std::size_t>(scores.size() / spec_.eta));
    if (score < scores[keep - 1] && failed < 0) failed = spec_.milestones[m];
  }
  return failed;
}

void validate_trials(const SweepSpec& spec, const std::vector<Trial>& trials) {
  for (const auto& trial : trials) {
    try {
      Config::load(spec.base_config, trial.overrides(spec)).validate();
    } catch (const std::exception& e) {
      throw std::invalid_argument(
          fmt::format("trial {} ({}): {}", trial.index, trial.name, e.what()));
    }
  }
}

std::vector<std::string> spec_differences(const std::string& old_yaml,
                                          const std::string& new_yaml) {
  std::vector<std::string> out;
  const YAML::Node before = YAML::Load(old_yaml), after = YAML::Load(new_yaml);
  // Flattens a node into "a.b.c" -> one-line YAML; lists stay whole.
  std::map<std::string, std::string> flat_before, flat_after;
  std::function<void(const YAML::Node&, const std::string&, std::map<std::string, std::string>&)>
      flatten = [&](const YAML::Node& node, const std::string& prefix, auto& flat) {
        if (node.IsMap()) {
          for (const auto& item : node)
            flatten(item.second,
                    (prefix.empty() ? "" : prefix + ".") + item.first.as<std::string>(), flat);
        } else {
          flat[prefix] = yaml_text(node);
        }
      };
  flatten(before, "", flat_before);
  flatten(after, "", flat_after);
  std::set<std::string> keys;
  for (const auto& [key, value] : flat_before)
    keys.insert(key);
  for (const auto& [key, value] : flat_after)
    keys.insert(key);
  for (const auto& key : keys) {
    const auto a = flat_before.count(key) ? flat_before[key] : "(none)";
    const auto b = flat_after.count(key) ? flat_after[key] : "(none)";
    if (a != b) out.push_back(fmt::format("{}: {} -> {}", key, a, b));
  }
  return out;
}

}  // namespace shopclip
