#pragma once
// Retrieval evaluation of a dual encoder on one split: encode the split's image pool and its
// queries, search with FAISS (eval.index), write predictions and, when the split has ground
// truth, MUGE scores in the official output shape.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "core/eval/metrics.h"
#include "core/log.h"
#include "core/model/dual_encoder.h"
#include "data/muge.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"

namespace shopclip {

// A split's prepared image pool and its queries.
struct SplitData {
  std::string name;
  std::unique_ptr<data::ImageStore> images;
  data::QuerySet queries;
  bool has_ground_truth = false;  // every query lists its relevant images
};

// Opens <prep_dir>/<split> (refusing shards made with other preprocessing parameters) and reads
// the split's query file, skipping and logging bad rows (including queries that point at an
// image the pool lacks) into `bad_rows`. The test split may list no image ids; other splits must.
SplitData open_split(const Config& config, const std::string& split, data::BadRowLog& bad_rows);

// Adds the bad rows prep recorded for a split (its bad_rows.jsonl and row count) to a log.
void add_prep_bad_rows(const Config& config, const std::string& split, data::BadRowLog& bad_rows);

// Logs bad rows (the first few to the terminal, all to the log file), writes them all to
// report_path (JSON lines) and throws DataError when a file's share exceeds data.max_bad_share.
void report_bad_rows(const data::BadRowLog& bad_rows, const Config& config,
                     const std::string& report_path, Logger& log);

// Encodes the store's rows [begin, end) (end < 0: to the last row) in row order: float32
// [rows, D] on CPU, unit norm.
torch::Tensor encode_images(DualEncoder& model, const data::ImageStore& images, int batch_size,
                            std::int64_t begin = 0, std::int64_t end = -1);
// Encodes texts: float32 [Q, D] on CPU, unit norm.
torch::Tensor encode_texts(DualEncoder& model, const data::Tokenizer& tokenizer,
                           const std::vector<std::string>& texts, int context_length,
                           int batch_size);
// Token ids for texts: int64 [Q, context_length].
torch::Tensor tokenize_all(const data::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                           int context_length);

struct EvalResult {
  std::vector<data::Prediction> predictions;  // on rank 0 only
  std::optional<RecallScores> scores;         // set when the split has ground truth, on every rank
  double encode_seconds = 0;
  double search_seconds = 0;
};

// Encodes, searches (top eval.top_k) and scores. The model is put in eval mode and restored.
// With several ranks, every rank encodes its contiguous slice of the pool and of the queries;
// rank 0 gathers them, builds one FAISS index shard per rank (faiss::IndexShards), searches and
// scores; every rank receives the scores. Results equal the single-process evaluation.
EvalResult evaluate_split(DualEncoder& model, const data::Tokenizer& tokenizer,
                          const SplitData& split, const Config& config, dist::Communicator& comm);

// Writes <run_dir>/predictions/<split>.jsonl (in the split's schema) and, with scores,
// <run_dir>/eval/<split>.json in the official output shape.
void write_eval_outputs(const std::string& run_dir, const SplitData& split,
                        const EvalResult& result);

}  // namespace shopclip
