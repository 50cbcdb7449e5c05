#include "launch/provenance.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <xxhash.h>

#include "core/config.h"
#include "data/files.h"
#include "data/muge.h"
#include "dist/communicator.h"
#include "dist/launch.h"
#include "launch/version.h"
#include "shopclip_build_config.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr const char* kFormat = "shopclip-provenance";
constexpr int kFormatVersion = 1;

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string hex64(std::uint64_t value) {
  return fmt::format("{:016x}", value);
}

std::int64_t modification_ns(const fs::path& path) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             fs::last_write_time(path).time_since_epoch())
      .count();
}

// The output of a command (stdout), and whether it exited with status 0.
std::pair<std::string, bool> capture(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) return {"", false};
  std::string out;
  std::array<char, 4096> buffer{};
  size_t read = 0;
  while ((read = fread(buffer.data(), 1, buffer.size(), pipe.get())) > 0)
    out.append(buffer.data(), read);
  const int status = pclose(pipe.release());
  return {out, status == 0};
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text)
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string this_host() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// Every rank's host name, in rank order (a collective: every rank calls it).
std::vector<std::string> gather_hosts(dist::Communicator& comm) {
  constexpr int kWidth = 128;
  auto mine = torch::zeros({1, kWidth}, torch::kUInt8);
  const std::string host = this_host().substr(0, kWidth - 1);
  std::copy(host.begin(), host.end(), mine.data_ptr<std::uint8_t>());
  const auto all = comm.all_gather(mine).contiguous();
  std::vector<std::string> hosts;
  for (std::int64_t r = 0; r < all.size(0); ++r)
    hosts.emplace_back(reinterpret_cast<const char*>(all[r].data_ptr<std::uint8_t>()));
  return hosts;
}

// The launcher as the process group saw it ("mpirun", "srun"), with the Slurm job when there is
// one.
std::string launcher_name() {
  const std::string launcher = dist::detect_launch().launcher;
  std::string name = launcher == "none" ? "single process" : launcher;
  if (const char* job = std::getenv("SLURM_JOB_ID"); job != nullptr) {
    name += fmt::format(" (Slurm job {})", job);
  }
  return name;
}

}  // namespace

std::string provenance_cache_dir() {
  if (const char* dir = std::getenv("SHOPCLIP_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return (fs::path(xdg) / "shopclip").string();
  }
  const char* home = std::getenv("HOME");
  return (fs::path(home != nullptr ? home : "/tmp") / ".cache" / "shopclip").string();
}

FileFingerprint fingerprint_file(const std::string& path, bool use_cache) {
  std::error_code error;
  const fs::path absolute = fs::absolute(path);
  const auto size = fs::file_size(absolute, error);
  if (error) {
    throw std::runtime_error(fmt::format("cannot read '{}': {}", path, error.message()));
  }
  const std::int64_t mtime = modification_ns(absolute);
  const fs::path cache_path = fs::path(provenance_cache_dir()) / "file_hashes.json";
  json cache = json::object();
  if (use_cache && fs::exists(cache_path)) {
    try {
      cache = json::parse(data::read_whole_file(cache_path.string()));
    } catch (const std::exception&) {
      cache = json::object();  // a damaged cache is rebuilt, never trusted
    }
    const auto it = cache.find(absolute.string());
    if (it != cache.end() && it->value("size", std::uintmax_t{0}) == size &&
        it->value("mtime_ns", std::int64_t{-1}) == mtime && it->contains("xxh64")) {
      return {absolute.string(), size, (*it)["xxh64"].get<std::string>()};
    }
  }
  const FileFingerprint fingerprint{absolute.string(), size,
                                    hex64(data::xxh64_file(absolute.string()))};
  if (use_cache) {
    cache[absolute.string()] = {{"size", size}, {"mtime_ns", mtime}, {"xxh64", fingerprint.xxh64}};
    try {
      fs::create_directories(cache_path.parent_path());
      // Several processes may update the cache at once: each write is whole (temporary file and
      // rename), so the worst case is a lost entry, hashed again next time.
      const std::string temporary = fmt::format("{}.{}.tmp", cache_path.string(), ::getpid());
      std::ofstream(temporary) << cache.dump();
      fs::rename(temporary, cache_path);
    } catch (const std::exception&) {
      // A cache that cannot be written costs time, not correctness.
    }
  }
  return fingerprint;
}

std::vector<InputFile> training_inputs(const Config& config) {
  std::vector<InputFile> inputs;
  auto add = [&](const std::string& role, const std::string& path) {
    if (!path.empty() && fs::is_regular_file(path)) inputs.push_back({role, path});
  };
  for (const std::string& split : {config.data.train_split, config.data.valid_split}) {
    const data::SplitFiles files = data::find_split_files(config.data.root, split);
    add(split + " images", files.images);
    add(split + " queries", files.queries());
    add(split + " prep manifest",
        (fs::path(config.prep_split_dir(split)) / "manifest.json").string());
  }
  add("vocab", config.model.text.vocab);
  add("Chinese-CLIP vision config", config.model.chinese_clip.vision_config);
  add("Chinese-CLIP text config", config.model.chinese_clip.text_config);
  add("pretrained weights", config.model.chinese_clip.weights);
  add("initial weights (model.init)", config.model.init);
  if (config.distill.active()) {
    // The teacher and every file of its cache: a changed cache changes what the student learns.
    std::error_code ec;
    const fs::path teacher = config.distill.teacher;
    add("teacher checkpoint", fs::is_directory(teacher, ec)
                                  ? (teacher / "checkpoints" / "best.pt").string()
                                  : teacher.string());
    const fs::path cache = config.distill.teacher_cache;
    add("teacher cache manifest", (cache / "manifest.json").string());
    std::vector<std::string> parts;
    if (fs::is_directory(cache, ec)) {
      for (const auto& entry : fs::directory_iterator(cache, ec))
        if (entry.path().extension() == ".h5") parts.push_back(entry.path().string());
    }
    std::sort(parts.begin(), parts.end());
    for (const auto& part : parts)
      add("teacher cache part", part);
  }
  return inputs;
}

std::vector<InputFile> evaluation_inputs(const Config& config, const std::string& split,
                                         const std::string& checkpoint) {
  std::vector<InputFile> inputs;
  const data::SplitFiles files = data::find_split_files(config.data.root, split);
  for (const auto& [role, path] : std::vector<std::pair<std::string, std::string>>{
           {split + " images", files.images},
           {split + " queries", files.queries()},
           {split + " prep manifest",
            (fs::path(config.prep_split_dir(split)) / "manifest.json").string()},
           {"checkpoint", checkpoint}}) {
    if (!path.empty() && fs::is_regular_file(path)) inputs.push_back({role, path});
  }
  return inputs;
}

std::string source_tree() {
  if (const char* dir = std::getenv("SHOPCLIP_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  return SHOPCLIP_SOURCE_TREE;
}

ordered_json git_state(const std::string& source_dir, const std::string& diff_path) {
  const std::string git = "git -C " + shell_quote(source_dir) + " ";
  const auto [commit, is_repo] = capture(git + "rev-parse HEAD 2>/dev/null");
  if (!is_repo) {
    return {{"source_tree", source_dir},
            {"error", "not a git work tree (or git is not installed)"}};
  }
  const std::string branch =
      trimmed(capture(git + "rev-parse --abbrev-ref HEAD 2>/dev/null").first);
  const std::string changes =
      capture(git + "status --porcelain --untracked-files=no 2>/dev/null").first;
  const bool dirty = !trimmed(changes).empty();
  ordered_json state{{"source_tree", source_dir},
                     {"commit", trimmed(commit)},
                     {"branch", branch},
                     {"dirty", dirty}};
  if (dirty && !diff_path.empty()) {
    data::write_file_atomic(diff_path, capture(git + "diff HEAD 2>/dev/null").first);
    state["diff"] = fs::path(diff_path).filename().string();
  }
  return state;
}

ProvenanceRecorder::ProvenanceRecorder(std::string record_path,
                                       const std::vector<std::string>& command,
                                       const Config& config, const std::vector<InputFile>& inputs,
                                       dist::Communicator& comm)
    : path_(std::move(record_path)), writes_(comm.is_main()) {
  const std::vector<std::string> hosts = gather_hosts(comm);
  if (!writes_) return;
  fs::create_directories(fs::path(path_).parent_path());  // before the diff is written there
  const std::string yaml = config.to_yaml();
  ordered_json input_records = ordered_json::array();
  for (const auto& input : inputs) {
    const FileFingerprint fingerprint = fingerprint_file(input.path);
    input_records.push_back({{"role", input.role},
                             {"path", fingerprint.path},
                             {"size", fingerprint.size},
                             {"xxh64", fingerprint.xxh64}});
  }
  const ordered_json machine = build_and_machine();
  std::string diff_path = fs::path(path_).replace_extension(".diff").string();
  record_ = {{"format", kFormat},
             {"format_version", kFormatVersion},
             {"command", command},
             {"working_directory", fs::current_path().string()},
             {"started", utc_now()},
             {"ended", nullptr},
             {"status", "running"},
             {"exit_status", nullptr},
             {"error", nullptr},
             {"git", git_state(source_tree(), diff_path)},
             {"build", machine["build"]},
             {"libraries", machine["libraries"]},
             {"machine", machine["machine"]},
             {"processes",
              {{"launcher", launcher_name()},
               {"world_size", comm.world_size()},
               {"ranks_per_node", comm.local_world_size()},
               {"threads_per_rank", torch::get_num_threads()},
               {"hosts", hosts},
               {"cuda_devices",
                torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0}}},
             {"seeds",
              {{"run.seed", config.run.seed},
               {"derivation",
                "every rank seeds LibTorch's generator with run.seed (the same initial weights "
                "everywhere); the loader's shuffle and per-sample augmentations use counter-based "
                "generators derived from run.seed and the epoch or the sample "
                "(data/loader.cpp), none from the rank or the world size"}}},
             {"config_xxh64", hex64(XXH64(yaml.data(), yaml.size(), 0))},
             {"config", yaml},
             {"inputs", input_records}};
  write();
}

void ProvenanceRecorder::finish(int exit_status, const std::string& error) {
  if (!writes_) return;
  record_["ended"] = utc_now();
  record_["status"] = exit_status == 0 ? "finished" : "failed";
  record_["exit_status"] = exit_status;
  record_["error"] = error.empty() ? ordered_json(nullptr) : ordered_json(error);
  write();
}

void ProvenanceRecorder::write() const {
  fs::create_directories(fs::path(path_).parent_path());
  data::write_file_atomic(path_, record_.dump(2) + "\n");
}

std::vector<std::string> changed_inputs(const json& record) {
  std::vector<std::string> changes;
  for (const auto& input : record.at("inputs")) {
    const std::string path = input.at("path").get<std::string>();
    const std::string role = input.at("role").get<std::string>();
    if (!fs::is_regular_file(path)) {
      changes.push_back(fmt::format("{} ({}) is missing", path, role));
      continue;
    }
    const FileFingerprint now = fingerprint_file(path, /*use_cache=*/false);
    if (now.size != input.at("size").get<std::uintmax_t>()) {
      changes.push_back(fmt::format("{} ({}) has {} bytes, the run read {}", path, role, now.size,
                                    input.at("size").get<std::uintmax_t>()));
    } else if (now.xxh64 != input.at("xxh64").get<std::string>()) {
      changes.push_back(fmt::format("{} ({}) has other content (XXH64 {}, the run read {})", path,
                                    role, now.xxh64, input.at("xxh64").get<std::string>()));
    }
  }
  return changes;
}

}  // namespace shopclip
