#pragma once
// The reproducibility record of a run (README, "Reproducibility: provenance.json and
// `shopclip reproduce`"): what produced a run directory (command, times, exit status, source
// tree, build, libraries, machine, processes, seeds, resolved config, input files with content
// hashes), written by rank 0 as JSON when the run starts and again when it ends.
//
// Format (format "shopclip-provenance", format_version 1): see ProvenanceRecorder.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shopclip {

struct Config;
namespace dist {
class Communicator;
}

// A file a run reads, by what it is for ("train images", "vocab", ...).
struct InputFile {
  std::string role;
  std::string path;
};

// A file's identity: absolute path, size in bytes and the XXH64 of its bytes (16 hex digits).
struct FileFingerprint {
  std::string path;
  std::uintmax_t size = 0;
  std::string xxh64;
};

// Where hashes are cached: $SHOPCLIP_CACHE_DIR, else $XDG_CACHE_HOME/shopclip, else
// $HOME/.cache/shopclip.
std::string provenance_cache_dir();

// Fingerprint of a file. Hashes are cached in <provenance_cache_dir()>/file_hashes.json by
// absolute path, size and modification time, so a large file is read once, not on every run; a
// file rewritten in place changes its modification time and is hashed again. use_cache = false
// always reads the file. Throws std::runtime_error naming the file when it cannot be read.
FileFingerprint fingerprint_file(const std::string& path, bool use_cache = true);

// The files a training run with this config reads and that exist: each split's images and
// queries, each prep manifest, the vocab, Chinese-CLIP model files and pretrained weights.
std::vector<InputFile> training_inputs(const Config& config);

// The files an evaluation of `split` reads: its images, queries and prep manifest, the checkpoint.
std::vector<InputFile> evaluation_inputs(const Config& config, const std::string& split,
                                         const std::string& checkpoint);

// The source tree's git state: commit, branch, dirty (tracked files changed), and when dirty the
// uncommitted diff (`git diff HEAD`) written to diff_path. {"error": ...} when source_dir is not a
// git work tree or git is missing.
nlohmann::ordered_json git_state(const std::string& source_dir, const std::string& diff_path);

// The source tree this binary was built from: $SHOPCLIP_SOURCE_DIR, else the CMake source folder.
std::string source_tree();

// Records one run. Every rank constructs it (host names are gathered from all ranks); rank 0
// writes `record_path` (and the diff beside it when the tree is dirty) with "status": "running",
// then again from finish(). Fields: format, format_version, command (argv), working_directory,
// started, ended, status, exit_status, error; git; build, libraries, machine (as `shopclip
// version`); processes (launcher, world_size, ranks_per_node, threads_per_rank, hosts by rank,
// cuda_devices); seeds (run.seed and how each stream derives from it); config (the resolved
// YAML) and config_xxh64; inputs (role, path, size, xxh64).
class ProvenanceRecorder {
 public:
  ProvenanceRecorder(std::string record_path, const std::vector<std::string>& command,
                     const Config& config, const std::vector<InputFile>& inputs,
                     dist::Communicator& comm);
  // Rewrites the record with the end time, "finished" or "failed", the exit status and the
  // error message (empty when none).
  void finish(int exit_status, const std::string& error = "");

 private:
  void write() const;

  std::string path_;
  nlohmann::ordered_json record_;
  bool writes_ = false;
};

// The recorded inputs whose file now differs (missing, other size, other content), one message
// each naming the file. Hashes are recomputed (no cache): a check must read the bytes.
std::vector<std::string> changed_inputs(const nlohmann::json& record);

}  // namespace shopclip
