// Retrieval with more than one model or more than one stage: `shopclip ensemble` (feature, score
// and rank fusion of several runs, weights tuned on one split and applied to another),
// `shopclip rerank` (re-scoring of one run's top K: a learned cross-attention reranker, or
// training-free QB-Norm and dual softmax) and
// `shopclip soup` (uniform and greedy weight averages of checkpoints). Each writes an output
// folder that `report` and `compare` accept like a run: config.yaml (the data it ran on),
// predictions/<split>.jsonl, eval/<split>.json when the split has ground truth, and a JSON record
// of what was done (ensemble.json, rerank.json, soup.json).
//
// Encoding runs on every rank (each its slice of the pool and of the queries, as `eval`);
// fusion, re-scoring, tuning and the files are rank 0's.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/device.h"
#include "core/eval/embeddings.h"
#include "core/eval/evaluate.h"
#include "core/eval/fusion.h"
#include "core/eval/learned_rerank.h"
#include "core/eval/metrics.h"
#include "core/eval/predictions.h"
#include "core/eval/rescore.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "data/embedding_file.h"
#include "data/error.h"
#include "data/files.h"
#include "data/muge.h"
#include "dist/launch.h"
#include "launch/commands.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kRecordFormatVersion = 1;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string default_checkpoint(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints" / "best.pt").string();
}

// A run's config for evaluating one of its checkpoints: its config.yaml with run.dir and the
// user's overrides, the model section from the checkpoint (the architecture is the checkpoint's).
Config run_config(const std::string& run_dir, const LoadedModel& loaded,
                  const std::vector<std::string>& overrides) {
  const std::string path = (fs::path(run_dir) / "config.yaml").string();
  if (!fs::exists(path)) {
    throw data::DataError(fmt::format("{}: missing; is {} a shopclip run folder?", path, run_dir));
  }
  std::vector<std::string> all = {"run.dir=" + run_dir};
  all.insert(all.end(), overrides.begin(), overrides.end());
  Config config = Config::load(path, all);
  config.model = loaded.config.model;
  return config;
}

// Ground truth from a separate file (the test split's held-back answers, as `compare --ref`):
// every query of the split must be in it, else DataError naming the first one missing.
void attach_reference(SplitData& split, const std::string& reference_path) {
  if (reference_path.empty()) return;
  data::BadRowLog bad_rows;
  const auto reference = data::read_queries(
      reference_path, data::schema_of_queries_file(reference_path), bad_rows, {});
  if (!bad_rows.bad_rows().empty()) {
    const auto& first = bad_rows.bad_rows().front();
    throw data::DataError(fmt::format("{}:{}: {}", first.file, first.line, first.reason));
  }
  std::map<std::int64_t, const data::Query*> by_id;
  for (const auto& query : reference.queries)
    by_id[query.id] = &query;
  for (auto& query : split.queries.queries) {
    const auto found = by_id.find(query.id);
    if (found == by_id.end()) {
      throw data::DataError(fmt::format("{}: has no answer for query {} of split '{}'",
                                        reference_path, query.id, split.name));
    }
    query.image_ids = found->second->image_ids;
  }
  split.has_ground_truth = !split.queries.queries.empty();
}

// One model's unit-norm embeddings of a split's queries and pool; every rank holds all rows.
struct SplitEmbeddings {
  SplitData split;
  torch::Tensor queries;  // float32 [Q, D]
  torch::Tensor pool;     // float32 [N, D]
  double query_seconds = 0, image_seconds = 0;
};

SplitEmbeddings encode_split(Encoder& encoder, const Config& config, const std::string& split,
                             dist::Communicator& comm, const std::string& reference = "") {
  SplitEmbeddings out;
  data::BadRowLog bad_rows;
  out.split = open_split(config, split, bad_rows);
  bad_rows.check_share(config.data.max_bad_share);
  attach_reference(out.split, reference);
  if (out.split.images->size() < config.eval.top_k) {
    throw data::DataError(fmt::format("split '{}': the pool has {} images, fewer than eval.top_k",
                                      split, out.split.images->size()));
  }
  std::vector<std::string> texts;
  for (const auto& query : out.split.queries.queries)
    texts.push_back(query.text);
  auto start = std::chrono::steady_clock::now();
  out.pool = encode_images_across_ranks(encoder, *out.split.images, config.eval.batch_size, comm);
  out.image_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  out.queries = encode_texts_across_ranks(encoder, texts, config.eval.batch_size, comm);
  out.query_seconds = seconds_since(start);
  // As evaluate_split: normalised once, only when the encoder does not, so a member alone ranks
  // exactly as `eval` does.
  if (!encoder.normalized()) {
    out.pool = unit_rows(out.pool);
    out.queries = unit_rows(out.queries);
  }
  return out;
}

// A run's checkpoint, loaded for encoding on this rank's device.
struct LoadedRun {
  std::string run_dir, checkpoint;
  Config config;
  LoadedModel loaded;
  std::unique_ptr<DualEncoderAdapter> encoder;
};

LoadedRun load_run(const std::string& run_dir, const std::string& checkpoint_arg,
                   const std::vector<std::string>& overrides, dist::Communicator& comm) {
  LoadedRun run;
  run.run_dir = run_dir;
  run.checkpoint = checkpoint_arg.empty() ? default_checkpoint(run_dir) : checkpoint_arg;
  if (!fs::exists(run.checkpoint)) {
    throw data::DataError(
        fmt::format("{}: no such checkpoint (run folder {})", run.checkpoint, run_dir));
  }
  run.loaded = load_model(run.checkpoint);
  run.config = run_config(run_dir, run.loaded, overrides);
  run.loaded.model->to(training_device(run.config.run.device, comm.local_rank()));
  run.encoder = std::make_unique<DualEncoderAdapter>(
      run.loaded.model, data::Tokenizer(run.loaded.vocab), run.config.model.text.context_length);
  return run;
}

std::vector<std::int64_t> query_ids(const SplitData& split) {
  std::vector<std::int64_t> ids;
  for (const auto& query : split.queries.queries)
    ids.push_back(query.id);
  return ids;
}

std::vector<data::Prediction> predictions_of(const std::vector<std::int64_t>& rows, int top_k,
                                             const SplitData& split) {
  return predictions_from_rows(rows, top_k, query_ids(split), split.images->ids());
}

// Pool rows of each query's relevant images (empty lists without ground truth).
std::vector<std::vector<std::int64_t>> relevant_rows(const SplitData& split) {
  std::vector<std::vector<std::int64_t>> out;
  for (const auto& query : split.queries.queries) {
    std::vector<std::int64_t> rows;
    for (const auto id : query.image_ids)
      if (const auto row = split.images->row_of(id)) rows.push_back(*row);
    out.push_back(std::move(rows));
  }
  return out;
}

// The output folder every command writes: config.yaml (so `report` and `compare` find the data),
// predictions and, with ground truth, the official score file. Returns the scores, if any.
std::optional<RecallScores> write_outputs(const std::string& out_dir, const Config& config,
                                          const SplitData& split,
                                          std::vector<data::Prediction> predictions) {
  fs::create_directories(out_dir);
  Config recorded = config;
  recorded.run.dir = out_dir;
  data::write_file_atomic((fs::path(out_dir) / "config.yaml").string(), recorded.to_yaml());
  EvalResult result;
  result.predictions = std::move(predictions);
  if (split.has_ground_truth)
    result.scores = muge_recall(split.queries.queries, result.predictions);
  write_eval_outputs(out_dir, split, result);
  return result.scores;
}

json scores_or_null(const std::optional<RecallScores>& scores) {
  return scores ? scores_json(*scores) : json(nullptr);
}

void log_scores(Logger& log, const std::string& what, const std::optional<RecallScores>& scores) {
  if (!scores) {
    log.info("{}: no ground truth in this split; wrote the predictions only", what);
    return;
  }
  log.info("{}: R@1 {:.2f} R@5 {:.2f} R@10 {:.2f} MeanRecall {:.2f}", what, scores->r1, scores->r5,
           scores->r10, scores->mean_recall);
}

void require_same_split(const SplitData& a, const SplitData& b, const std::string& run_a,
                        const std::string& run_b) {
  if (a.images->ids() != b.images->ids()) {
    throw data::DataError(fmt::format(
        "split '{}': runs {} and {} see different image pools (other data.root or prep?)", a.name,
        run_a, run_b));
  }
  if (query_ids(a) != query_ids(b)) {
    throw data::DataError(
        fmt::format("split '{}': runs {} and {} see different queries", a.name, run_a, run_b));
  }
}

// MeanRecall of rows [Q, top_k] on a split with ground truth.
double mean_recall_of(const std::vector<std::int64_t>& rows, int top_k, const SplitData& split) {
  return muge_recall(split.queries.queries, predictions_of(rows, top_k, split)).mean_recall;
}

// ---- ensemble --------------------------------------------------------------------------------

struct EnsembleSpec {
  std::vector<std::string> runs;
  std::vector<std::string> checkpoints;  // "" = the run's best.pt
  std::vector<double> weights;           // empty = equal (or tuned)
  std::string method = "feature";
  std::string split;  // default: the first run's data.valid_split
  std::string tune;   // a split with ground truth to tune weights on
  std::string search = "grid";
  double step = 0.1;
  int candidates = 100;
  double rrf_k = 60;
  std::string weights_from;  // an ensemble.json whose weights to apply
  std::string reference;     // ground truth for --split (its held-back answers)
  std::string out;
  std::vector<std::string> overrides;  // --set, applied to every member's config
};

struct EnsembleOptions {
  std::string file;
  EnsembleSpec spec;
  CLI::App* command = nullptr;  // to tell flags given from defaults
};

[[noreturn]] void refuse_key(const std::string& file, const YAML::Node& node,
                             const std::string& key, const std::string& why) {
  throw ConfigError(fmt::format("{}:{}: '{}': {}", file, node.Mark().line + 1, key, why));
}

// The YAML form of the command line: members (run, checkpoint, weight), and the options by
// their long names without dashes (method, split, tune, search, step, candidates, rrf_k,
// weights_from, out, set). Flags given on the command line win over the file.
EnsembleSpec read_ensemble_file(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: not valid YAML: {}", path, e.what()));
  }
  if (!root.IsMap()) throw ConfigError(path + ": expected a map at the top");
  EnsembleSpec spec;
  for (const auto& item : root) {
    const auto key = item.first.as<std::string>();
    const YAML::Node& value = item.second;
    try {
      if (key == "members") {
        if (!value.IsSequence()) refuse_key(path, value, key, "expected a list of members");
        for (const auto& member : value) {
          if (!member.IsMap()) refuse_key(path, member, key, "each member is a map with 'run'");
          std::string run, checkpoint;
          double weight = -1;
          for (const auto& field : member) {
            const auto name = field.first.as<std::string>();
            if (name == "run") {
              run = field.second.as<std::string>();
            } else if (name == "checkpoint") {
              checkpoint = field.second.as<std::string>();
            } else if (name == "weight") {
              weight = field.second.as<double>();
            } else {
              refuse_key(path, field.first, "members." + name,
                         "unknown member key (run, checkpoint, weight)");
            }
          }
          if (run.empty()) refuse_key(path, member, key, "a member without 'run'");
          spec.runs.push_back(run);
          spec.checkpoints.push_back(checkpoint);
          if (weight >= 0) spec.weights.push_back(weight);
        }
        if (!spec.weights.empty() && spec.weights.size() != spec.runs.size()) {
          refuse_key(path, value, key, "give every member a weight, or none");
        }
      } else if (key == "method") {
        spec.method = value.as<std::string>();
      } else if (key == "split") {
        spec.split = value.as<std::string>();
      } else if (key == "tune") {
        spec.tune = value.as<std::string>();
      } else if (key == "search") {
        spec.search = value.as<std::string>();
      } else if (key == "step") {
        spec.step = value.as<double>();
      } else if (key == "candidates") {
        spec.candidates = value.as<int>();
      } else if (key == "rrf_k") {
        spec.rrf_k = value.as<double>();
      } else if (key == "weights_from") {
        spec.weights_from = value.as<std::string>();
      } else if (key == "out") {
        spec.out = value.as<std::string>();
      } else if (key == "ref") {
        spec.reference = value.as<std::string>();
      } else if (key == "set") {
        for (const auto& entry : value)
          spec.overrides.push_back(entry.as<std::string>());
      } else {
        refuse_key(path, item.first, key,
                   "unknown key (members, method, split, tune, search, step, candidates, rrf_k, "
                   "weights_from, ref, out, set)");
      }
    } catch (const YAML::Exception& e) {
      refuse_key(path, value, key, fmt::format("wrong type ({})", e.what()));
    }
  }
  return spec;
}

// Weights stored in an earlier ensemble.json, for the same runs in the same order.
std::vector<double> weights_from_record(const std::string& path,
                                        const std::vector<std::string>& runs) {
  std::ifstream in(path);
  if (!in) throw data::DataError(fmt::format("{}: cannot open", path));
  json record;
  try {
    record = json::parse(in);
  } catch (const json::exception& e) {
    throw data::DataError(fmt::format("{}: not JSON: {}", path, e.what()));
  }
  if (!record.contains("members") || !record["members"].is_array()) {
    throw data::DataError(fmt::format("{}: no 'members' list; is it an ensemble.json?", path));
  }
  const auto& members = record["members"];
  if (members.size() != runs.size()) {
    throw data::DataError(
        fmt::format("{}: {} members, this ensemble has {}", path, members.size(), runs.size()));
  }
  std::vector<double> weights;
  for (std::size_t m = 0; m < runs.size(); ++m) {
    const std::string run = members[m].value("run", "");
    if (fs::path(run).lexically_normal() != fs::path(runs[m]).lexically_normal()) {
      throw data::DataError(
          fmt::format("{}: member {} is {}, this ensemble's is {}", path, m + 1, run, runs[m]));
    }
    weights.push_back(members[m].at("weight").get<double>());
  }
  return weights;
}

// Ranks for one weight vector: one FAISS search (feature) or the prepared candidate table.
class Fuser {
 public:
  Fuser(std::vector<FusionMember> members, FusionOptions options, int top_k)
      : members_(std::move(members)), options_(std::move(options)), top_k_(top_k) {
    if (options_.method != FusionMethod::kFeature) {
      if (options_.candidates < top_k_) {
        throw std::invalid_argument(fmt::format("--candidates {} is fewer than eval.top_k = {}",
                                                options_.candidates, top_k_));
      }
      table_ = build_candidate_table(members_, options_);
    }
  }
  std::vector<std::int64_t> rank(const std::vector<double>& weights,
                                 std::int64_t* completed = nullptr) {
    if (options_.method != FusionMethod::kFeature) {
      return rank_candidates(table_, options_.method, weights, options_.rrf_k, top_k_);
    }
    for (std::size_t m = 0; m < members_.size(); ++m)
      members_[m].weight = weights[m];
    FusionResult result = fuse_rankings(members_, options_, top_k_);
    if (completed) *completed = result.completed;
    return result.rows;
  }
  // Stage-1 candidates per query (two-stage methods only).
  const CandidateTable& table() const { return table_; }

 private:
  std::vector<FusionMember> members_;
  FusionOptions options_;
  int top_k_;
  CandidateTable table_;
};

std::vector<FusionMember> fusion_members(const std::vector<SplitEmbeddings>& embeddings) {
  std::vector<FusionMember> members;
  for (const auto& e : embeddings)
    members.push_back({e.queries, e.pool, 1.0});
  return members;
}

// The spec: --file, then the flags given on the command line over it; checked.
EnsembleSpec resolve_spec(const EnsembleOptions& options) {
  EnsembleSpec spec = options.file.empty() ? EnsembleSpec{} : read_ensemble_file(options.file);
  const EnsembleSpec& cli = options.spec;
  const auto given = [&](const char* flag) { return options.command->count(flag) > 0; };
  if (given("--run")) {
    spec.runs = cli.runs;
    spec.checkpoints.assign(cli.runs.size(), "");
    if (!given("--weights")) spec.weights.clear();
  }
  if (given("--checkpoint")) spec.checkpoints = cli.checkpoints;
  if (given("--weights")) spec.weights = cli.weights;
  if (given("--method")) spec.method = cli.method;
  if (given("--split")) spec.split = cli.split;
  if (given("--tune")) spec.tune = cli.tune;
  if (given("--search")) spec.search = cli.search;
  if (given("--step")) spec.step = cli.step;
  if (given("--candidates")) spec.candidates = cli.candidates;
  if (given("--rrf-k")) spec.rrf_k = cli.rrf_k;
  if (given("--weights-from")) spec.weights_from = cli.weights_from;
  if (given("--out")) spec.out = cli.out;
  if (given("--ref")) spec.reference = cli.reference;
  spec.overrides.insert(spec.overrides.end(), cli.overrides.begin(), cli.overrides.end());

  if (spec.runs.size() < 2) {
    throw std::invalid_argument("ensemble: give at least two members (--run A --run B ...)");
  }
  if (spec.checkpoints.size() != spec.runs.size()) {
    throw std::invalid_argument(fmt::format("ensemble: {} --checkpoint for {} --run",
                                            spec.checkpoints.size(), spec.runs.size()));
  }
  if (spec.out.empty()) throw std::invalid_argument("ensemble: name the output folder (--out)");
  const int sources = (spec.weights.empty() ? 0 : 1) + (spec.tune.empty() ? 0 : 1) +
                      (spec.weights_from.empty() ? 0 : 1);
  if (sources > 1) {
    throw std::invalid_argument(
        "ensemble: give weights one way: --weights, --tune or --weights-from");
  }
  if (!spec.weights.empty() && spec.weights.size() != spec.runs.size()) {
    throw std::invalid_argument(
        fmt::format("ensemble: {} weights for {} members", spec.weights.size(), spec.runs.size()));
  }
  return spec;
}

// Rank 0: the weights that score best on the tuning split's embeddings; sets `weights` and
// returns the record's "tuning" entry.
json tune_ensemble_weights(const std::vector<SplitEmbeddings>& tune, const EnsembleSpec& spec,
                           const FusionOptions& fusion, int top_k, std::vector<double>& weights,
                           Logger& log) {
  const SplitData& tune_split = tune[0].split;
  if (!tune_split.has_ground_truth) {
    throw data::DataError(
        fmt::format("ensemble: --tune {}: the split has no ground truth to tune on", spec.tune));
  }
  const WeightSearch search = parse_weight_search(spec.search);
  Fuser fuser(fusion_members(tune), fusion, top_k);
  const auto start = std::chrono::steady_clock::now();
  const WeightTuning tuned = tune_weights(
      static_cast<int>(tune.size()),
      [&](const std::vector<double>& w) {
        return mean_recall_of(fuser.rank(w), top_k, tune_split);
      },
      search, spec.step);
  weights = tuned.weights;
  log.info("ensemble: weights tuned on {} ({} search, {} settings): {} -> MeanRecall {:.2f}",
           spec.tune, weight_search_name(search), tuned.evaluated, fmt::join(weights, ", "),
           tuned.score);
  return {{"split", spec.tune},         {"search", weight_search_name(search)},
          {"step", spec.step},          {"evaluated", tuned.evaluated},
          {"mean_recall", tuned.score}, {"seconds", seconds_since(start)}};
}

// The "members" entry of ensemble.json: each member's checkpoint, weight and its own scores on
// the split (through the same index), for the comparison with the ensemble.
json member_records(const EnsembleSpec& spec, const std::vector<LoadedRun>& runs,
                    const std::vector<SplitEmbeddings>& embeddings,
                    const std::vector<double>& weights, const std::string& index, int top_k,
                    Logger& log) {
  const SplitData& split = embeddings[0].split;
  json members = json::array();
  for (std::size_t m = 0; m < runs.size(); ++m) {
    const auto& e = embeddings[m];
    std::optional<RecallScores> own;
    if (split.has_ground_truth) {
      own =
          muge_recall(split.queries.queries,
                      predictions_of(search_top_k(index, e.queries, e.pool, top_k), top_k, split));
      log_scores(log, fmt::format("  member {} alone ({})", m + 1, spec.runs[m]), own);
    }
    members.push_back({{"run", spec.runs[m]},
                       {"checkpoint", runs[m].checkpoint},
                       {"xxh64", fmt::format("{:016x}", data::xxh64_file(runs[m].checkpoint))},
                       {"weight", weights[m]},
                       {"dim", e.queries.size(1)},
                       {"scores", scores_or_null(own)}});
  }
  return members;
}

// The "stage1" entry of ensemble.json for the two-stage methods: list length, mean candidates
// per query and, with ground truth, the ceiling (the share of queries with a relevant candidate).
json stage_one_record(const CandidateTable& table, const SplitData& split, Logger& log) {
  double total = 0;
  for (const auto& list : table.rows)
    total += static_cast<double>(list.size());
  const auto queries = static_cast<double>(table.rows.size());
  json stage1 = {{"list_length", table.list_length},
                 {"mean_candidates", queries > 0 ? total / queries : 0}};
  if (split.has_ground_truth) {
    const double recall = candidate_recall(table.rows, relevant_rows(split));
    stage1["recall"] = recall;
    log.info(
        "ensemble: stage 1 (union of {} lists of {}) holds a relevant image for {:.2f}% of "
        "queries",
        table.members, table.list_length, recall);
  }
  return stage1;
}

int run_ensemble(const EnsembleOptions& options, CommandContext& context) {
  Logger& log = context.log;
  dist::Communicator& comm = context.comm;
  const EnsembleSpec spec = resolve_spec(options);
  FusionOptions fusion;
  fusion.method = parse_fusion_method(spec.method);
  fusion.candidates = spec.candidates;
  fusion.rrf_k = spec.rrf_k;
  parse_weight_search(spec.search);  // refuse a bad name before encoding anything

  std::vector<LoadedRun> runs;
  for (std::size_t m = 0; m < spec.runs.size(); ++m)
    runs.push_back(load_run(spec.runs[m], spec.checkpoints[m], spec.overrides, comm));
  const Config& config = runs[0].config;
  torch::set_num_threads(dist::threads_for_this_rank(config.run.threads, comm.local_world_size()));
  const std::string split = spec.split.empty() ? config.data.valid_split : spec.split;
  if (!spec.tune.empty() && spec.tune == split) {
    throw std::invalid_argument(fmt::format(
        "ensemble: --tune {} --split {}: weights tuned on the split they are scored on report an "
        "optimistic score; tune on another split (valid) and apply them to this one",
        spec.tune, split));
  }
  fusion.index = config.eval.index;
  const int top_k = config.eval.top_k;
  const auto encode_all = [&](const std::string& name, const std::string& reference) {
    std::vector<SplitEmbeddings> out;
    for (std::size_t m = 0; m < runs.size(); ++m) {
      log.info("ensemble: encoding {} with member {} ({})", name, m + 1, runs[m].checkpoint);
      out.push_back(encode_split(*runs[m].encoder, runs[m].config, name, comm, reference));
      if (m > 0) require_same_split(out[0].split, out[m].split, spec.runs[0], spec.runs[m]);
    }
    return out;
  };

  std::vector<double> weights = spec.weights;
  json tuning = nullptr;
  if (!spec.tune.empty()) {
    const auto tune = encode_all(spec.tune, "");
    if (comm.is_main()) tuning = tune_ensemble_weights(tune, spec, fusion, top_k, weights, log);
  } else if (!spec.weights_from.empty()) {
    weights = weights_from_record(spec.weights_from, spec.runs);
  }
  if (weights.empty()) weights.assign(runs.size(), 1.0);

  const auto embeddings = encode_all(split, spec.reference);
  if (!comm.is_main()) return 0;
  const SplitData& data_split = embeddings[0].split;
  const auto start = std::chrono::steady_clock::now();
  Fuser fuser(fusion_members(embeddings), fusion, top_k);
  std::int64_t completed = 0;
  const auto rows = fuser.rank(weights, &completed);
  const double fuse_seconds = seconds_since(start);
  const auto scores =
      write_outputs(spec.out, config, data_split, predictions_of(rows, top_k, data_split));
  log_scores(log, fmt::format("ensemble {} on {}", spec.method, split), scores);

  double query_seconds = 0;
  for (const auto& e : embeddings)
    query_seconds += e.query_seconds;
  const auto per_query = [&](double seconds) {
    return data_split.queries.queries.empty()
               ? 0.0
               : 1000 * seconds / static_cast<double>(data_split.queries.queries.size());
  };
  json record = {
      {"format_version", kRecordFormatVersion},
      {"kind", "ensemble"},
      {"method", fusion_method_name(fusion.method)},
      {"split", split},
      {"members", member_records(spec, runs, embeddings, weights, fusion.index, top_k, log)},
      {"weights_source", !spec.tune.empty()           ? "tuned"
                         : !spec.weights_from.empty() ? "file"
                         : !spec.weights.empty()      ? "given"
                                                      : "equal"},
      {"weights_file", spec.weights_from},
      {"tuning", tuning},
      {"index", fusion.index},
      {"top_k", top_k},
      {"scores", scores_or_null(scores)},
      {"completed_queries", completed},
      {"timing",
       {{"fuse_seconds", fuse_seconds},
        {"fuse_ms_per_query", per_query(fuse_seconds)},
        {"encode_queries_ms_per_query", per_query(query_seconds)}}}};
  if (fusion.method != FusionMethod::kFeature) {
    record["candidates"] = fusion.candidates;
    if (fusion.method == FusionMethod::kReciprocalRank) record["rrf_k"] = fusion.rrf_k;
    record["stage1"] = stage_one_record(fuser.table(), data_split, log);
  }
  data::write_file_atomic((fs::path(spec.out) / "ensemble.json").string(), record.dump(2) + "\n");
  log.info("ensemble: wrote {}/predictions/{}.jsonl and {}/ensemble.json", spec.out, split,
           spec.out);
  return 0;
}

// ---- rerank ----------------------------------------------------------------------------------

struct RerankOptions {
  std::vector<std::string> runs;  // one run, or several fused by features (stage 1)
  std::vector<double> weights;    // their feature-fusion weights (default equal)
  std::string split, out;
  std::string reference;  // ground truth for --split (its held-back answers)
  std::string method = "qb-norm";
  std::string bank;  // the bank's split (default data.train_split)
  double beta = 20;
  std::vector<double> beta_grid = {5, 10, 20, 30, 50, 100};
  std::string tune;  // a split with ground truth to pick beta on
  int activation_k = 1;
  int candidates = 100;
  bool transductive = false;
  std::vector<std::string> overrides;
  // learned: the run whose reranker scores the candidates (default: the first --run), the weight
  // of its logit in s_dual + lambda s_rerank, and the grid --tune picks lambda from.
  std::string reranker;
  double lambda = 0.05;
  std::vector<double> lambda_grid = {0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1};
  int queries_per_forward = 1;
};

void check_rerank_options(const RerankOptions& options) {
  if (options.method != "qb-norm" && options.method != "dual-softmax" &&
      options.method != "learned") {
    throw std::invalid_argument(fmt::format(
        "rerank: unknown --method '{}' (qb-norm, dual-softmax, learned)", options.method));
  }
  if (!options.reranker.empty() && options.method != "learned") {
    throw std::invalid_argument("rerank: --reranker is for --method learned");
  }
  if (options.queries_per_forward < 1) {
    throw std::invalid_argument("rerank: --queries-per-forward must be >= 1");
  }
  if (options.method == "dual-softmax" && !options.transductive) {
    throw std::invalid_argument(
        "rerank: dual-softmax ranks each query with the help of every other evaluated query "
        "(transductive), which a search box never has; pass --transductive to run it anyway");
  }
  if (options.out.empty()) throw std::invalid_argument("rerank: name the output folder (--out)");
  if (options.runs.empty()) throw std::invalid_argument("rerank: name a run (--run)");
  if (!options.weights.empty() && options.weights.size() != options.runs.size()) {
    throw std::invalid_argument(
        fmt::format("rerank: {} weights for {} runs", options.weights.size(), options.runs.size()));
  }
}

// Every run's embeddings of a split; with several runs, fused by weighted concatenation (the
// feature ensemble's vectors: the weights on the queries, the pool unweighted). The split data
// is the first run's.
SplitEmbeddings encode_stage_one(std::vector<LoadedRun>& runs, const std::vector<double>& weights,
                                 const std::string& split, dist::Communicator& comm,
                                 const std::string& reference) {
  std::vector<SplitEmbeddings> each;
  for (auto& run : runs) {
    each.push_back(encode_split(*run.encoder, run.config, split, comm, reference));
    if (each.size() > 1) {
      require_same_split(each[0].split, each.back().split, runs[0].run_dir, run.run_dir);
    }
  }
  std::vector<torch::Tensor> queries, pool;
  for (const auto& e : each) {
    queries.push_back(e.queries);
    pool.push_back(e.pool);
  }
  SplitEmbeddings out = std::move(each[0]);
  out.queries = weighted_concat(queries, weights);
  out.pool = weighted_concat(pool, {});
  for (std::size_t m = 1; m < each.size(); ++m) {
    out.query_seconds += each[m].query_seconds;
    out.image_seconds += each[m].image_seconds;
  }
  return out;
}

// QB-Norm's bank: the bank split's queries encoded by every run, weighted as the queries are.
torch::Tensor encode_bank(std::vector<LoadedRun>& runs, const std::vector<double>& weights,
                          const std::string& bank_split, dist::Communicator& comm, Logger& log) {
  const Config& config = runs[0].config;
  data::QuerySchema schema;
  const std::string path = data::find_queries_file(config.data.root, bank_split, &schema);
  data::BadRowLog bad_rows;
  data::QueryReadOptions read;
  read.require_image_ids = false;
  const auto bank_queries = data::read_queries(path, schema, bad_rows, read);
  std::vector<std::string> texts;
  for (const auto& query : bank_queries.queries)
    texts.push_back(query.text);
  log.info("rerank: encoding the query bank ({} queries of {})", texts.size(), bank_split);
  std::vector<torch::Tensor> each;
  for (auto& run : runs) {
    each.push_back(encode_texts_across_ranks(*run.encoder, texts, config.eval.batch_size, comm));
    if (!run.encoder->normalized()) each.back() = unit_rows(each.back());
  }
  return weighted_concat(each, weights);
}

// Stage 1: the top min(candidates, pool) of every query, [Q, k] with k returned.
std::vector<std::int64_t> stage_one(const SplitEmbeddings& e, const std::string& index,
                                    int candidates, int& k) {
  k = static_cast<int>(std::min<std::int64_t>(candidates, e.pool.size(0)));
  return search_top_k(index, e.queries, e.pool, k);
}

// Stage 2 with `beta`: QB-Norm's bank statistics (they depend on the pool only, so a service
// computes them once per pool and they are timed apart), then the re-scoring of every query.
struct Rescored {
  RescoreResult result;
  double bank_seconds = 0, rescore_seconds = 0;
};

Rescored rescore(const RerankOptions& options, const SplitEmbeddings& e, const torch::Tensor& bank,
                 const std::vector<std::int64_t>& candidates, int k, double beta, int top_k) {
  Rescored out;
  auto start = std::chrono::steady_clock::now();
  std::optional<BankNormaliser> normaliser;
  if (options.method == "qb-norm") {
    normaliser = bank_normaliser(bank, e.pool, beta, options.activation_k);
  }
  out.bank_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  out.result = normaliser ? qb_norm_rerank(e.queries, e.pool, candidates, k, *normaliser, top_k)
                          : dual_softmax_rerank(e.queries, e.pool, candidates, k, beta, top_k);
  out.rescore_seconds = seconds_since(start);
  return out;
}

// Rank 0: the beta of options.beta_grid that scores best on the tuning split; sets `beta` and
// returns the record's "tuning" entry.
json tune_beta(const RerankOptions& options, const SplitEmbeddings& tune, const torch::Tensor& bank,
               const std::string& index, int top_k, double& beta, Logger& log) {
  if (!tune.split.has_ground_truth) {
    throw data::DataError(fmt::format("rerank: --tune {}: no ground truth", options.tune));
  }
  int k = 0;
  const auto candidates = stage_one(tune, index, options.candidates, k);
  json tried = json::array();
  double best = -1;
  for (const double b : options.beta_grid) {
    const double score = mean_recall_of(
        rescore(options, tune, bank, candidates, k, b, top_k).result.rows, top_k, tune.split);
    tried.push_back({{"beta", b}, {"mean_recall", score}});
    log.info("rerank: beta {} on {}: MeanRecall {:.2f}", b, options.tune, score);
    if (score > best) {
      best = score;
      beta = b;
    }
  }
  return {{"split", options.tune}, {"tried", tried}, {"beta", beta}, {"mean_recall", best}};
}

// The "stage1" entry of rerank.json: K and, with ground truth, stage 1's own scores (its first
// top_k) and its ceiling (a relevant image among the K).
json rerank_stage_one_record(const SplitEmbeddings& e, const std::vector<std::int64_t>& candidates,
                             int k, int top_k, Logger& log) {
  json stage1 = {{"candidates", k}};
  if (!e.split.has_ground_truth) return stage1;
  const std::int64_t queries = e.queries.size(0);
  std::vector<std::int64_t> first(queries * top_k);
  std::vector<std::vector<std::int64_t>> lists(queries);
  for (std::int64_t q = 0; q < queries; ++q) {
    std::copy_n(candidates.begin() + q * k, top_k, first.begin() + q * top_k);
    lists[q].assign(candidates.begin() + q * k, candidates.begin() + (q + 1) * k);
  }
  const auto plain = muge_recall(e.split.queries.queries, predictions_of(first, top_k, e.split));
  log_scores(log, "  stage 1 alone", plain);
  const double recall = candidate_recall(lists, relevant_rows(e.split));
  log.info("rerank: stage 1's top {} holds a relevant image for {:.2f}% of queries (the ceiling)",
           k, recall);
  stage1["scores"] = scores_json(plain);
  stage1["recall"] = recall;
  return stage1;
}

// ---- learned reranker ----

// The reranker's image tokens of a split's pool, cached in <run>/token_cache/<split>.h5 (fp16,
// data/embedding_file.h, [N, T * C] with T and C as attributes): reused when the file was made by
// the same checkpoint (XXH64) for the same images in the same order, else encoded across ranks
// and written by rank 0. Every rank gets the tokens; the record says which happened.
struct PoolTokens {
  torch::Tensor tokens;  // float16 [N, T, C]
  json record;
};

PoolTokens pool_tokens_for(LoadedRun& run, const SplitEmbeddings& e, const std::string& split,
                           dist::Communicator& comm, Logger& log) {
  const auto start = std::chrono::steady_clock::now();
  const std::string file = (fs::path(run.run_dir) / "token_cache" / (split + ".h5")).string();
  const std::string hash = fmt::format("{:016x}", data::xxh64_file(run.checkpoint));
  const auto& ids = e.split.images->ids();
  PoolTokens out;
  std::error_code ec;
  if (fs::exists(file, ec)) {
    const auto attributes = data::read_embedding_attributes(file);
    const auto get = [&](const char* key) {
      auto it = attributes.find(key);
      return it == attributes.end() ? std::string() : it->second;
    };
    if (get("checkpoint_xxh64") == hash && get("split") == split) {
      auto table = data::read_embedding_file(file);
      const auto stored_ids = table.ids.contiguous();
      const bool same_images =
          stored_ids.numel() == static_cast<std::int64_t>(ids.size()) &&
          std::equal(ids.begin(), ids.end(), stored_ids.data_ptr<std::int64_t>());
      if (same_images) {
        const auto tokens = std::stoll(get("tokens")), width = std::stoll(get("width"));
        out.tokens = table.embeddings.view({-1, tokens, width});
        log.info("rerank: the pool's reranker tokens from {} ({} images)", file, ids.size());
      }
    }
    if (!out.tokens.defined())
      log.info("rerank: {} is stale (another model or pool); redoing", file);
  }
  const bool reused = out.tokens.defined();
  if (!reused) {
    out.tokens = encode_pool_tokens_across_ranks(run.loaded.model, *e.split.images,
                                                 run.config.eval.batch_size, comm);
    if (comm.is_main()) {
      fs::create_directories(fs::path(file).parent_path());
      data::write_embedding_file(file, torch::tensor(ids, torch::kLong), out.tokens.flatten(1),
                                 {{"checkpoint", run.checkpoint},
                                  {"checkpoint_xxh64", hash},
                                  {"split", split},
                                  {"tokens", std::to_string(out.tokens.size(1))},
                                  {"width", std::to_string(out.tokens.size(2))}});
      log.info("rerank: wrote the pool's reranker tokens ({} x {} x {}, fp16) to {}",
               out.tokens.size(0), out.tokens.size(1), out.tokens.size(2), file);
    }
  }
  out.record = {{"file", file},
                {"reused", reused},
                {"images", out.tokens.size(0)},
                {"tokens", out.tokens.size(1)},
                {"width", out.tokens.size(2)},
                {"seconds", seconds_since(start)}};
  return out;
}

// The reranker's logits [Q, K] of a split's stage-1 candidates and the seconds they took (the
// queries' token states and the reranker's forward passes: the cost stage 2 adds per query).
struct LearnedLogits {
  torch::Tensor logits;
  double seconds = 0;
};

LearnedLogits learned_logits(const RerankOptions& options, LoadedRun& reranker,
                             const SplitEmbeddings& e, const torch::Tensor& pool_tokens,
                             const std::vector<std::int64_t>& candidates, int k) {
  std::vector<std::string> texts;
  for (const auto& query : e.split.queries.queries)
    texts.push_back(query.text);
  const auto start = std::chrono::steady_clock::now();
  LearnedLogits out;
  out.logits = rerank_logits(reranker.loaded.model, tokenize(*reranker.encoder, texts), pool_tokens,
                             candidates, k, options.queries_per_forward);
  out.seconds = seconds_since(start);
  return out;
}

// Rank 0: the lambda of options.lambda_grid that scores best on the tuning split (ties: the one
// tried first); sets `lambda` and returns the record's "tuning" entry.
json tune_lambda(const RerankOptions& options, const SplitEmbeddings& tune,
                 const std::vector<std::int64_t>& candidates, int k, const torch::Tensor& logits,
                 int top_k, double& lambda, Logger& log) {
  if (!tune.split.has_ground_truth) {
    throw data::DataError(fmt::format("rerank: --tune {}: no ground truth", options.tune));
  }
  json tried = json::array();
  double best = -1;
  for (const double l : options.lambda_grid) {
    const auto rows = learned_rerank(tune.queries, tune.pool, candidates, k, logits, l, top_k).rows;
    const double score = mean_recall_of(rows, top_k, tune.split);
    tried.push_back({{"lambda", l}, {"mean_recall", score}});
    log.info("rerank: lambda {} on {}: MeanRecall {:.2f}", l, options.tune, score);
    if (score > best) {
      best = score;
      lambda = l;
    }
  }
  return {{"split", options.tune}, {"tried", tried}, {"lambda", lambda}, {"mean_recall", best}};
}

// learned: the run whose reranker scores — the first stage-1 run unless --reranker names
// another (then loaded into `other`); checked to have a reranker and stage 1's resolution.
LoadedRun& reranker_run(const RerankOptions& options, LoadedRun& first,
                        std::optional<LoadedRun>& other, dist::Communicator& comm) {
  LoadedRun* reranker = &first;
  if (!options.reranker.empty() && options.reranker != options.runs[0]) {
    other = load_run(options.reranker, "", options.overrides, comm);
    reranker = &*other;
  }
  if (!reranker->loaded.model->reranker()) {
    throw std::invalid_argument(fmt::format(
        "rerank: {} has no learned reranker (its model.reranker.layers is 0); train one with "
        "model.reranker.layers > 0 and train.rerank_weight > 0 (README, \"Ensembles, "
        "re-ranking and soups\")",
        reranker->checkpoint));
  }
  if (reranker->config.model.image.resolution != first.config.model.image.resolution) {
    throw std::invalid_argument(fmt::format(
        "rerank: the reranker's run takes {} px images, stage 1's {} px; they read one pool",
        reranker->config.model.image.resolution, first.config.model.image.resolution));
  }
  return *reranker;
}

int run_rerank(const RerankOptions& options, CommandContext& context) {
  Logger& log = context.log;
  dist::Communicator& comm = context.comm;
  check_rerank_options(options);
  std::vector<double> weights = options.weights;
  if (weights.empty()) weights.assign(options.runs.size(), 1.0);
  std::vector<LoadedRun> runs;
  for (const auto& run_dir : options.runs)
    runs.push_back(load_run(run_dir, "", options.overrides, comm));
  const Config& config = runs[0].config;
  torch::set_num_threads(dist::threads_for_this_rank(config.run.threads, comm.local_world_size()));
  const std::string split = options.split.empty() ? config.data.valid_split : options.split;
  if (!options.tune.empty() && options.tune == split) {
    throw std::invalid_argument(fmt::format(
        "rerank: --tune {} --split {}: tune beta on another split (valid) and apply it here",
        options.tune, split));
  }
  const int top_k = config.eval.top_k;
  if (options.candidates < top_k) {
    throw std::invalid_argument(fmt::format("rerank: --candidates {} is fewer than eval.top_k = {}",
                                            options.candidates, top_k));
  }
  // The bank: another split's queries, never the evaluated ones (QB-Norm only).
  torch::Tensor bank;
  const std::string bank_split = options.bank.empty() ? config.data.train_split : options.bank;
  if (options.method == "qb-norm") {
    if (bank_split == split) {
      throw std::invalid_argument(
          fmt::format("rerank: the query bank ({}) must not be the evaluated split", bank_split));
    }
    bank = encode_bank(runs, weights, bank_split, comm, log);
  }
  std::optional<LoadedRun> other_reranker;
  LoadedRun* reranker =
      options.method == "learned" ? &reranker_run(options, runs[0], other_reranker, comm) : nullptr;

  double beta = options.beta, lambda = options.lambda;
  json tuning = nullptr;
  if (!options.tune.empty()) {
    const SplitEmbeddings tune = encode_stage_one(runs, weights, options.tune, comm, "");
    if (reranker != nullptr) {
      const PoolTokens tokens = pool_tokens_for(*reranker, tune, options.tune, comm, log);
      if (comm.is_main()) {
        int k = 0;
        const auto candidates = stage_one(tune, config.eval.index, options.candidates, k);
        const auto logits = learned_logits(options, *reranker, tune, tokens.tokens, candidates, k);
        tuning = tune_lambda(options, tune, candidates, k, logits.logits, top_k, lambda, log);
      }
    } else if (comm.is_main()) {
      tuning = tune_beta(options, tune, bank, config.eval.index, top_k, beta, log);
    }
  }

  const SplitEmbeddings e = encode_stage_one(runs, weights, split, comm, options.reference);
  PoolTokens pool_tokens;
  if (reranker != nullptr) pool_tokens = pool_tokens_for(*reranker, e, split, comm, log);
  if (!comm.is_main()) return 0;
  int k = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto candidates = stage_one(e, config.eval.index, options.candidates, k);
  const double stage1_seconds = seconds_since(start);
  Rescored rescored;
  if (reranker != nullptr) {
    const auto logits = learned_logits(options, *reranker, e, pool_tokens.tokens, candidates, k);
    const auto combine_start = std::chrono::steady_clock::now();
    rescored.result =
        learned_rerank(e.queries, e.pool, candidates, k, logits.logits, lambda, top_k);
    rescored.rescore_seconds = logits.seconds + seconds_since(combine_start);
  } else {
    rescored = rescore(options, e, bank, candidates, k, beta, top_k);
  }
  const RescoreResult& result = rescored.result;
  const auto scores =
      write_outputs(options.out, config, e.split, predictions_of(result.rows, top_k, e.split));
  log_scores(log, fmt::format("rerank {} on {}", options.method, split), scores);

  const auto num_queries = static_cast<double>(e.queries.size(0));
  json record = {{"format_version", kRecordFormatVersion},
                 {"kind", "rerank"},
                 {"method", options.method},
                 {"transductive", options.method == "dual-softmax"},
                 {"runs", options.runs},
                 {"weights", weights},
                 {"split", split},
                 {"tuning", tuning},
                 {"index", config.eval.index},
                 {"top_k", top_k},
                 {"stage1", rerank_stage_one_record(e, candidates, k, top_k, log)},
                 {"rescored_queries", result.rescored_queries},
                 {"scores", scores_or_null(scores)},
                 {"timing",
                  {{"stage1_seconds", stage1_seconds},
                   {"bank_seconds", rescored.bank_seconds},
                   {"rescore_seconds", rescored.rescore_seconds},
                   {"rescore_ms_per_query",
                    num_queries > 0 ? 1000 * rescored.rescore_seconds / num_queries : 0}}}};
  if (reranker != nullptr) {
    const auto& rc = reranker->config.model.reranker;
    record["lambda"] = lambda;
    record["reranker"] = {{"run", reranker->run_dir},
                          {"checkpoint", reranker->checkpoint},
                          {"layers", rc.layers},
                          {"width", rc.width},
                          {"heads", rc.heads},
                          {"image_tokens", rc.image_tokens},
                          {"queries_per_forward", options.queries_per_forward},
                          {"token_cache", pool_tokens.record}};
  } else {
    record["beta"] = beta;
  }
  if (options.method == "qb-norm") {
    record["bank"] = {
        {"split", bank_split}, {"queries", bank.size(0)}, {"activation_k", options.activation_k}};
  }
  data::write_file_atomic((fs::path(options.out) / "rerank.json").string(), record.dump(2) + "\n");
  log.info("rerank: {} of {} queries re-scored; wrote {}/predictions/{}.jsonl and rerank.json",
           result.rescored_queries, e.queries.size(0), options.out, split);
  return 0;
}

// ---- soup ------------------------------------------------------------------------------------

struct SoupOptions {
  std::vector<std::string> runs;
  std::string method = "greedy";
  std::string split;  // default data.valid_split
  std::string out;
  std::vector<std::string> overrides;
};

void set_weights(DualEncoder& model, const std::map<std::string, torch::Tensor>& weights) {
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : named_state(*model)) {
    const auto found = weights.find(name);
    if (found == weights.end()) {
      throw std::runtime_error(fmt::format("soup: the average has no tensor '{}'", name));
    }
    tensor.copy_(found->second);
  }
}

// Scores a soup of the given checkpoints (leaving it in the model) on the soup's split.
using SoupEvaluator = std::function<EvalResult(const std::vector<std::string>&)>;

// Greedy soup (Wortsman et al.): the checkpoints by their own MeanRecall, best first; each is
// added if the soup's MeanRecall does not drop. Sets `kept` and the record's "ingredients";
// returns the evaluation of the soup of `kept`.
EvalResult greedy_soup(const std::vector<std::string>& checkpoints, const SoupEvaluator& evaluate,
                       std::vector<std::string>& kept, json& ingredients, Logger& log) {
  std::vector<EvalResult> alone;
  for (const auto& path : checkpoints) {
    alone.push_back(evaluate({path}));
    log.info("soup: {} alone: MeanRecall {:.2f}", path, alone.back().scores->mean_recall);
  }
  std::vector<std::size_t> order(checkpoints.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return alone[a].scores->mean_recall > alone[b].scores->mean_recall;
  });
  kept = {checkpoints[order[0]]};
  EvalResult best = alone[order[0]];
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t c = order[i];
    const double own = alone[c].scores->mean_recall;
    if (i == 0) {
      ingredients.push_back({{"checkpoint", checkpoints[c]},
                             {"alone", own},
                             {"soup_mean_recall", own},
                             {"kept", true}});
      continue;
    }
    auto trial = kept;
    trial.push_back(checkpoints[c]);
    EvalResult result = evaluate(trial);
    const double score = result.scores->mean_recall;
    const double current = best.scores->mean_recall;
    const bool keep = score >= current;
    log.info("soup: adding {}: MeanRecall {:.2f} (soup so far {:.2f}) -> {}", checkpoints[c], score,
             current, keep ? "kept" : "left out");
    ingredients.push_back({{"checkpoint", checkpoints[c]},
                           {"alone", own},
                           {"soup_mean_recall", score},
                           {"kept", keep}});
    if (keep) {
      kept = std::move(trial);
      best = std::move(result);
    }
  }
  return best;
}

int run_soup(const SoupOptions& options, CommandContext& context) {
  Logger& log = context.log;
  dist::Communicator& comm = context.comm;
  if (options.runs.size() < 2) throw std::invalid_argument("soup: give at least two --run");
  if (options.method != "uniform" && options.method != "greedy") {
    throw std::invalid_argument(
        fmt::format("soup: unknown --method '{}' (uniform, greedy)", options.method));
  }
  if (options.out.empty()) throw std::invalid_argument("soup: name the output folder (--out)");
  std::vector<std::string> checkpoints;
  for (const auto& run : options.runs)
    checkpoints.push_back(default_checkpoint(run));
  // The first run's model is the container every average is loaded into.
  LoadedRun base = load_run(options.runs[0], "", options.overrides, comm);
  const Config& config = base.config;
  torch::set_num_threads(dist::threads_for_this_rank(config.run.threads, comm.local_world_size()));
  const std::string split = options.split.empty() ? config.data.valid_split : options.split;
  data::BadRowLog bad_rows;
  const SplitData data_split = open_split(config, split, bad_rows);
  bad_rows.check_share(config.data.max_bad_share);
  if (options.method == "greedy" && !data_split.has_ground_truth) {
    throw data::DataError(
        fmt::format("soup: greedy needs ground truth; split '{}' has none", split));
  }
  DualEncoder& model = base.encoder->model();
  const SoupEvaluator evaluate = [&](const std::vector<std::string>& ingredients) {
    set_weights(model, average_checkpoint_weights(ingredients));
    return evaluate_split(*base.encoder, data_split, config, comm);
  };
  json ingredients = json::array();
  std::vector<std::string> kept;
  EvalResult final_result;
  if (options.method == "uniform") {
    kept = checkpoints;
    final_result = evaluate(kept);
    for (const auto& path : checkpoints)
      ingredients.push_back({{"checkpoint", path}, {"kept", true}});
  } else {
    final_result = greedy_soup(checkpoints, evaluate, kept, ingredients, log);
    // The model holds the last soup tried, which may have been left out.
    set_weights(model, average_checkpoint_weights(kept));
  }
  if (!comm.is_main()) return 0;
  fs::create_directories(fs::path(options.out) / "checkpoints");
  Config recorded = config;
  recorded.run.dir = options.out;
  const std::string checkpoint = (fs::path(options.out) / "checkpoints" / "best.pt").string();
  TrainState state;
  if (final_result.scores) state.best_score = final_result.scores->mean_recall;
  save_checkpoint(checkpoint, recorded, base.loaded.vocab, *model, nullptr, state);
  const auto scores = write_outputs(options.out, config, data_split, final_result.predictions);
  log_scores(log,
             fmt::format("soup ({}, {} of {} checkpoints) on {}", options.method, kept.size(),
                         checkpoints.size(), split),
             scores);
  json record = {{"format_version", kRecordFormatVersion},
                 {"kind", "soup"},
                 {"method", options.method},
                 {"split", split},
                 {"ingredients", ingredients},
                 {"kept", kept},
                 {"checkpoint", checkpoint},
                 {"scores", scores_or_null(scores)}};
  data::write_file_atomic((fs::path(options.out) / "soup.json").string(), record.dump(2) + "\n");
  log.info("soup: wrote {} (every command takes it: shopclip eval --run {})", checkpoint,
           options.out);
  return 0;
}

}  // namespace

void register_ensemble_commands(CommandRegistry& commands) {
  auto ensemble = std::make_shared<EnsembleOptions>();
  CLI::App* ensemble_cmd = commands.add(
      "ensemble",
      "fuse several runs' rankings (feature, score, rrf, borda), weights given or tuned on valid",
      Processes::kMany,
      [ensemble](CommandContext& context) { return run_ensemble(*ensemble, context); });
  ensemble->command = ensemble_cmd;
  auto& spec = ensemble->spec;
  ensemble_cmd->add_option(
      "--file", ensemble->file,
      "YAML file with the same settings (members: [{run, checkpoint, weight}], "
      "method, split, tune, ...); flags win over it");
  ensemble_cmd->add_option("--run", spec.runs, "a member's run folder (repeat: --run A --run B)");
  ensemble_cmd->add_option("--checkpoint", spec.checkpoints,
                           "each member's checkpoint, in --run order (default its best.pt)");
  ensemble_cmd->add_option("--method", spec.method, "feature | score | rrf | borda")
      ->capture_default_str();
  ensemble_cmd->add_option("--weights", spec.weights, "one weight per member (comma-separated)")
      ->delimiter(',');
  ensemble_cmd->add_option("--tune", spec.tune,
                           "tune the weights on this split (valid), then apply them to --split");
  ensemble_cmd->add_option("--search", spec.search, "weight search: grid | coordinate")
      ->capture_default_str();
  ensemble_cmd->add_option("--step", spec.step, "weight grid step")->capture_default_str();
  ensemble_cmd->add_option("--weights-from", spec.weights_from,
                           "apply the weights recorded in an earlier ensemble.json");
  ensemble_cmd->add_option("--split", spec.split, "split to rank (default data.valid_split)");
  ensemble_cmd
      ->add_option("--candidates", spec.candidates,
                   "each member's stage-1 list (score, rrf, borda)")
      ->capture_default_str();
  ensemble_cmd->add_option("--rrf-k", spec.rrf_k, "reciprocal rank fusion constant")
      ->capture_default_str();
  ensemble_cmd->add_option("--ref", spec.reference,
                           "ground truth of --split when its query file has none (test answers)");
  ensemble_cmd->add_option("--out", spec.out, "output folder (predictions, eval, ensemble.json)");
  ensemble_cmd->add_option("--set", spec.overrides,
                           "key=value applied to every member's config (e.g. eval.index=HNSW32)");

  auto rerank = std::make_shared<RerankOptions>();
  CLI::App* rerank_cmd = commands.add(
      "rerank",
      "re-score a run's (or a feature-fused ensemble's) top K: a learned cross-attention "
      "reranker, or training-free (qb-norm; dual-softmax, transductive)",
      Processes::kMany, [rerank](CommandContext& context) { return run_rerank(*rerank, context); });
  rerank_cmd
      ->add_option("--run", rerank->runs,
                   "run folder (its best.pt); several: stage 1 fuses them by features")
      ->required();
  rerank_cmd->add_option("--weights", rerank->weights, "feature-fusion weights of several runs")
      ->delimiter(',');
  rerank_cmd->add_option("--split", rerank->split, "split to rank (default data.valid_split)");
  rerank_cmd->add_option("--method", rerank->method, "qb-norm | dual-softmax | learned")
      ->capture_default_str();
  rerank_cmd->add_option("--candidates", rerank->candidates, "stage-1 list length K")
      ->capture_default_str();
  rerank_cmd->add_option("--bank", rerank->bank,
                         "qb-norm's query bank: this split's queries (default data.train_split)");
  rerank_cmd->add_option("--beta", rerank->beta, "inverse temperature")->capture_default_str();
  rerank_cmd->add_option("--tune", rerank->tune,
                         "pick beta (lambda for learned) from its grid on this split (valid), then "
                         "apply it");
  rerank_cmd->add_option("--beta-grid", rerank->beta_grid, "betas tried by --tune")->delimiter(',');
  rerank_cmd
      ->add_option("--activation-k", rerank->activation_k,
                   "qb-norm: an image is a hub candidate when among a bank query's top k")
      ->capture_default_str();
  rerank_cmd->add_flag("--transductive", rerank->transductive,
                       "allow dual-softmax, which uses the other evaluated queries");
  rerank_cmd->add_option("--ref", rerank->reference,
                         "ground truth of --split when its query file has none (test answers)");
  rerank_cmd->add_option("--out", rerank->out, "output folder (predictions, eval, rerank.json)");
  rerank_cmd->add_option("--set", rerank->overrides, "key=value applied to the run's config");
  rerank_cmd->add_option("--reranker", rerank->reranker,
                         "learned: the run whose reranker scores (default: the first --run)");
  rerank_cmd->add_option("--lambda", rerank->lambda, "learned: s_dual + lambda * s_rerank")
      ->capture_default_str();
  rerank_cmd->add_option("--lambda-grid", rerank->lambda_grid, "lambdas tried by --tune")
      ->delimiter(',');
  rerank_cmd
      ->add_option("--queries-per-forward", rerank->queries_per_forward,
                   "learned: queries whose candidate pairs share one reranker forward (1 = one "
                   "request at a time, as a search box)")
      ->capture_default_str();

  auto soup = std::make_shared<SoupOptions>();
  CLI::App* soup_cmd = commands.add(
      "soup", "average checkpoints that share an initialisation (uniform or greedy on valid)",
      Processes::kMany, [soup](CommandContext& context) { return run_soup(*soup, context); });
  soup_cmd->add_option("--run", soup->runs, "an ingredient's run folder (its best.pt; repeat)")
      ->required();
  soup_cmd->add_option("--method", soup->method, "uniform | greedy")->capture_default_str();
  soup_cmd->add_option("--split", soup->split,
                       "split that greedy judges by and the soup is scored on (default valid)");
  soup_cmd->add_option("--out", soup->out, "output folder: a run folder with checkpoints/best.pt");
  soup_cmd->add_option("--set", soup->overrides, "key=value applied to the configs");
}

}  // namespace shopclip
