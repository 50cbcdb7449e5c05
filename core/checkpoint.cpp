#include "core/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "data/files.h"

namespace shopclip {
namespace {

constexpr const char* kFormat = "shopclip-checkpoint";

// Reads a scalar entry; a missing entry or one of another type means a damaged checkpoint.
c10::IValue read_entry(torch::serialize::InputArchive& archive, const std::string& key,
                       const std::string& path, bool (c10::IValue::*has_type)() const) {
  c10::IValue value;
  if (!archive.try_read(key, value) || !(value.*has_type)()) {
    throw std::runtime_error(fmt::format("checkpoint '{}': missing entry '{}'", path, key));
  }
  return value;
}

std::string read_string(torch::serialize::InputArchive& archive, const std::string& key,
                        const std::string& path) {
  return read_entry(archive, key, path, &c10::IValue::isString).toStringRef();
}

double read_double(torch::serialize::InputArchive& archive, const std::string& key,
                   const std::string& path) {
  return read_entry(archive, key, path, &c10::IValue::isDouble).toDouble();
}

std::int64_t read_int(torch::serialize::InputArchive& archive, const std::string& key,
                      const std::string& path) {
  return read_entry(archive, key, path, &c10::IValue::isInt).toInt();
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(fmt::format("checkpoint '{}' does not exist", path));
  }
  torch::serialize::InputArchive archive;
  try {
    // Every tensor comes to the CPU first: a checkpoint written on a GPU must load on a machine
    // without one; the callers copy or move what they read to where the model lives.
    archive.load_from(path, torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    throw std::runtime_error(fmt::format("'{}' is not a readable shopclip checkpoint: {}", path,
                                         e.what_without_backtrace()));
  }
  std::string format;
  c10::IValue value;
  if (!archive.try_read("format", value) || !value.isString() || value.toStringRef() != kFormat) {
    throw std::runtime_error(fmt::format("'{}' is not a shopclip checkpoint", path));
  }
  const auto version = read_int(archive, "format_version", path);
  if (version != kCheckpointFormatVersion) {
    throw std::runtime_error(
        fmt::format("checkpoint '{}' has format version {}; this build reads version {}", path,
                    version, kCheckpointFormatVersion));
  }
  return archive;
}

}  // namespace

std::map<std::string, torch::Tensor> named_state(torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : model.named_parameters(true))
    state[item.key()] = item.value();
  for (const auto& item : model.named_buffers(true))
    state[item.key()] = item.value();
  return state;
}

void save_checkpoint(const std::string& path, const Config& config, const data::Vocab& vocab,
                     torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                     const TrainState& state, const std::map<std::string, torch::Tensor>* average) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  archive.write("format_version", c10::IValue(static_cast<std::int64_t>(kCheckpointFormatVersion)));
  archive.write("config_yaml", c10::IValue(config.to_yaml()));
  std::string tokens;
  for (const auto& token : vocab.tokens())
    tokens += token + "\n";
  archive.write("vocab", c10::IValue(tokens));

  c10::List<std::string> names;
  c10::List<at::Tensor> tensors;
  for (const auto& [name, tensor] : named_state(model)) {
    names.push_back(name);
    tensors.push_back(tensor.detach().cpu());
  }
  archive.write("model_names", c10::IValue(names));
  archive.write("model_tensors", c10::IValue(tensors));
  if (average != nullptr) {
    c10::List<std::string> average_names;
    c10::List<at::Tensor> average_tensors;
    for (const auto& [name, tensor] : *average) {
      average_names.push_back(name);
      average_tensors.push_back(tensor.detach().cpu());
    }
    archive.write("average_names", c10::IValue(average_names));
    archive.write("average_tensors", c10::IValue(average_tensors));
  }

  archive.write("has_optimizer", c10::IValue(static_cast<std::int64_t>(optimizer != nullptr)));
  if (optimizer) {
    torch::serialize::OutputArchive optimizer_archive;
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  archive.write("epochs_done", c10::IValue(static_cast<std::int64_t>(state.epochs_done)));
  archive.write("step", c10::IValue(state.step));
  archive.write("schedule_steps", c10::IValue(state.schedule_steps));
  archive.write("warmup_steps", c10::IValue(state.warmup_steps));
  archive.write("best_score", c10::IValue(state.best_score));
  archive.write("best_epoch", c10::IValue(static_cast<std::int64_t>(state.best_epoch)));
  archive.write("evals_since_best", c10::IValue(static_cast<std::int64_t>(state.evals_since_best)));
  archive.write("elapsed_seconds", c10::IValue(state.elapsed_seconds));
  archive.write("best_is_average", c10::IValue(static_cast<std::int64_t>(state.best_is_average)));

  const std::string temporary = data::temporary_path(path);
  // A bare file name ("best.pt") has an empty parent, which create_directories rejects.
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  try {
    archive.save_to(temporary);
  } catch (...) {
    std::error_code ignored;  // a half-written archive is of no use to anyone
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  // fsync, rename over the old checkpoint, fsync the folder: a crash at any point leaves the old
  // checkpoint or the new one under `path`, never a torn one.
  data::commit_file(temporary, path);
}

CheckpointHeader read_checkpoint_header(const std::string& path) {
  auto archive = open_archive(path);
  CheckpointHeader header;
  header.config = Config::from_yaml(read_string(archive, "config_yaml", path), path + " (config)");
  std::vector<std::string> tokens;
  std::istringstream vocab_text(read_string(archive, "vocab", path));
  for (std::string token; std::getline(vocab_text, token);)
    tokens.push_back(token);
  header.vocab = data::Vocab::from_tokens(std::move(tokens));
  header.has_optimizer = read_int(archive, "has_optimizer", path) != 0;
  header.state.epochs_done = static_cast<int>(read_int(archive, "epochs_done", path));
  header.state.step = read_int(archive, "step", path);
  header.state.schedule_steps = read_int(archive, "schedule_steps", path);
  // Optional: checkpoints written before the warm-up was stored lack it.
  if (c10::IValue warmup; archive.try_read("warmup_steps", warmup) && warmup.isInt()) {
    header.state.warmup_steps = warmup.toInt();
  }
  header.state.best_score = read_double(archive, "best_score", path);
  header.state.best_epoch = static_cast<int>(read_int(archive, "best_epoch", path));
  header.state.evals_since_best = static_cast<int>(read_int(archive, "evals_since_best", path));
  header.state.elapsed_seconds = read_double(archive, "elapsed_seconds", path);
  // Optional: checkpoints from before train.ema_decay lack it.
  if (c10::IValue value; archive.try_read("best_is_average", value) && value.isInt()) {
    header.state.best_is_average = value.toInt() != 0;
  }
  return header;
}

namespace {

// Tensors stored as a list of names and a list of tensors; nullopt when the entries are absent.
std::optional<std::map<std::string, torch::Tensor>> read_named_tensors(
    torch::serialize::InputArchive& archive, const std::string& names_key,
    const std::string& tensors_key) {
  c10::IValue names_value, tensors_value;
  if (!archive.try_read(names_key, names_value) || !archive.try_read(tensors_key, tensors_value)) {
    return std::nullopt;
  }
  const auto names = names_value.toList();
  const auto tensors = tensors_value.toTensorList();
  std::map<std::string, torch::Tensor> stored;
  for (size_t i = 0; i < names.size(); ++i)
    stored[names.get(i).toStringRef()] = tensors.get(i);
  return stored;
}

}  // namespace

std::map<std::string, torch::Tensor> read_checkpoint_weights(const std::string& path) {
  auto archive = open_archive(path);
  auto stored = read_named_tensors(archive, "model_names", "model_tensors");
  if (!stored)
    throw std::runtime_error(fmt::format("checkpoint '{}' holds no model weights", path));
  return std::move(*stored);
}

std::map<std::string, torch::Tensor> read_checkpoint_average(const std::string& path) {
  auto archive = open_archive(path);
  return read_named_tensors(archive, "average_names", "average_tensors")
      .value_or(std::map<std::string, torch::Tensor>{});
}

std::vector<std::string> load_model_weights(const std::string& path, torch::nn::Module& model,
                                            bool allow_missing) {
  auto stored = read_checkpoint_weights(path);
  auto expected = named_state(model);
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it == stored.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream what;
      what << name << " (checkpoint " << it->second.sizes() << ", model " << tensor.sizes() << ")";
      misshaped.push_back(what.str());
    }
  }
  for (const auto& entry : stored) {
    if (!expected.count(entry.first)) unexpected.push_back(entry.first);
  }
  if ((!allow_missing && !missing.empty()) || !unexpected.empty() || !misshaped.empty()) {
    std::string message = fmt::format("checkpoint '{}' does not match the model:", path);
    if (!missing.empty()) message += fmt::format("\n  missing: {}", fmt::join(missing, ", "));
    if (!unexpected.empty())
      message += fmt::format("\n  unexpected: {}", fmt::join(unexpected, ", "));
    if (!misshaped.empty())
      message += fmt::format("\n  wrong shape: {}", fmt::join(misshaped, ", "));
    throw std::runtime_error(message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it != stored.end()) tensor.copy_(it->second);
  }
  return missing;
}

void load_optimizer_state(const std::string& path, torch::optim::Optimizer& optimizer) {
  auto archive = open_archive(path);
  torch::serialize::InputArchive optimizer_archive;
  if (!archive.try_read("optimizer", optimizer_archive)) {
    throw std::runtime_error(fmt::format("checkpoint '{}' holds no optimizer state", path));
  }
  optimizer.load(optimizer_archive);
  // The moments were read to the CPU; they belong on the parameters' device (a run resumed on a
  // GPU from a CPU checkpoint, or on the CPU from a GPU one). One model, one device. (The state's
  // key type differs between LibTorch versions, hence the walk over its values.)
  std::optional<torch::Device> device;
  for (const auto& group : optimizer.param_groups()) {
    if (!device && !group.params().empty()) device = group.params().front().device();
  }
  if (!device) return;
  for (auto& entry : optimizer.state()) {
    auto* state = dynamic_cast<torch::optim::AdamWParamState*>(entry.second.get());
    if (state == nullptr) throw std::logic_error("load_optimizer_state supports AdamW only");
    if (state->exp_avg().defined()) state->exp_avg(state->exp_avg().to(*device));
    if (state->exp_avg_sq().defined()) state->exp_avg_sq(state->exp_avg_sq().to(*device));
    if (state->max_exp_avg_sq().defined()) {
      state->max_exp_avg_sq(state->max_exp_avg_sq().to(*device));
    }
  }
}

namespace {

// Throws when a tensor holds NaN or Inf: a difference involving them is not a number, and a
// comparison that skipped it would call two broken checkpoints equal.
void require_finite(const torch::Tensor& tensor, const std::string& name, const std::string& path) {
  if (!tensor.is_floating_point() || tensor.numel() == 0) return;
  const auto nan = tensor.isnan().sum().item<std::int64_t>();
  const auto inf = tensor.isinf().sum().item<std::int64_t>();
  if (nan + inf > 0) {
    throw std::runtime_error(fmt::format(
        "'{}' holds non-finite values in '{}' ({} NaN, {} Inf of {}): weights cannot be compared",
        path, name, nan, inf, tensor.numel()));
  }
}

}  // namespace

WeightDifference weight_difference(const std::string& path_a, const std::string& path_b) {
  // Header first: a file that is no checkpoint fails with that message, not a missing tensor.
  read_checkpoint_header(path_a);
  read_checkpoint_header(path_b);
  const auto state_a = read_checkpoint_weights(path_a), state_b = read_checkpoint_weights(path_b);
  // Same names both ways: a tensor only one checkpoint holds is an architecture difference.
  for (const auto& [name, tensor] : state_b) {
    if (!state_a.count(name)) {
      throw std::runtime_error(
          fmt::format("'{}' and '{}' differ in architecture: '{}' is only in '{}'", path_a, path_b,
                      name, path_b));
    }
  }
  WeightDifference result;
  for (const auto& [name, tensor] : state_a) {
    auto it = state_b.find(name);
    if (it == state_b.end()) {
      throw std::runtime_error(
          fmt::format("'{}' and '{}' differ in architecture: '{}' is only in '{}'", path_a, path_b,
                      name, path_a));
    }
    if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream what;
      what << tensor.sizes() << " vs " << it->second.sizes();
      throw std::runtime_error(fmt::format("'{}' and '{}' differ in architecture at '{}' ({})",
                                           path_a, path_b, name, what.str()));
    }
    require_finite(tensor, name, path_a);
    require_finite(it->second, name, path_b);
    if (tensor.numel() == 0) continue;
    const auto first = tensor.to(torch::kDouble);
    const double difference = (first - it->second.to(torch::kDouble)).abs().max().item<double>();
    const double scale = first.abs().max().item<double>();
    const double relative = difference == 0 ? 0.0 : difference / std::max(scale, 1e-30);
    if (difference >= result.absolute) {
      result.absolute = difference;
      result.worst_absolute = name;
    }
    if (relative >= result.relative) {
      result.relative = relative;
      result.worst_relative = name;
    }
  }
  return result;
}

std::map<std::string, torch::Tensor> average_checkpoint_weights(
    const std::vector<std::string>& paths) {
  if (paths.empty()) throw std::invalid_argument("average_checkpoint_weights: no checkpoints");
  const auto first = read_checkpoint_weights(paths[0]);
  std::map<std::string, torch::Tensor> sums;
  for (const auto& [name, tensor] : first)
    sums[name] = tensor.is_floating_point() ? tensor.to(torch::kFloat64) : tensor.clone();
  for (std::size_t i = 1; i < paths.size(); ++i) {
    const auto weights = read_checkpoint_weights(paths[i]);
    for (const auto& [name, tensor] : weights) {
      const auto found = first.find(name);
      if (found == first.end()) {
        throw std::runtime_error(fmt::format("{}: tensor '{}' is not in {} (another architecture?)",
                                             paths[i], name, paths[0]));
      }
      if (!found->second.sizes().equals(tensor.sizes())) {
        throw std::runtime_error(fmt::format("{}: tensor '{}' has shape {}, {} has {}", paths[i],
                                             name, c10::str(tensor.sizes()), paths[0],
                                             c10::str(found->second.sizes())));
      }
      if (tensor.is_floating_point()) sums[name] += tensor.to(torch::kFloat64);
    }
    if (weights.size() != first.size()) {
      for (const auto& [name, tensor] : first) {
        if (!weights.count(name)) {
          throw std::runtime_error(
              fmt::format("{}: tensor '{}' of {} is missing", paths[i], name, paths[0]));
        }
      }
    }
  }
  std::map<std::string, torch::Tensor> out;
  const double count = static_cast<double>(paths.size());
  for (const auto& [name, sum] : sums) {
    const auto& original = first.at(name);
    out[name] = original.is_floating_point() ? (sum / count).to(original.scalar_type()) : sum;
  }
  return out;
}

}  // namespace shopclip
