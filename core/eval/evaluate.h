#pragma once
// Retrieval evaluation of an Encoder (core/model/encoder.h) on one split: encode the split's
// image pool and its queries, search with FAISS (eval.index), write predictions and, when the
// split has ground truth, MUGE scores in the official output shape.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "core/eval/embeddings.h"
#include "core/eval/index_store.h"
#include "core/eval/metrics.h"
#include "core/log.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoder.h"
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

// Token ids for texts: int64 [Q, context_length]. (Kept for core/train; new code uses
// tokenize(encoder, texts) from core/model/encoder.h or Tokenizer::encode_batch.)
torch::Tensor tokenize_all(const data::Tokenizer& tokenizer, const std::vector<std::string>& texts,
                           int context_length);

struct EvalResult {
  std::vector<data::Prediction> predictions;  // on rank 0 only
  std::optional<RecallScores> scores;         // set when the split has ground truth, on every rank
  double encode_seconds = 0;
  double search_seconds = 0;
  // Queries for which eval.index found fewer than top_k distinct images, completed with the exact
  // ranking (core/eval/predictions.h); 0 with an exact index. On rank 0 only.
  std::int64_t completed_queries = 0;
};

// Encodes, searches (top eval.top_k with eval.index) and scores, through any Encoder; its
// embeddings are L2-normalised first when it does not return unit-norm ones, so the search ranks
// by cosine similarity. Every query gets exactly eval.top_k distinct image ids, also when an
// approximate index finds fewer (core/eval/predictions.h says how they are completed).
// With several ranks, every rank encodes its contiguous slice of the pool and of the queries;
// rank 0 gathers them, builds one FAISS index shard per rank (faiss::IndexShards), searches and
// scores; every rank receives the scores. Results equal the single-process evaluation.
// The index applies eval.search_params. With `saved` (a saved index of the split's pool,
// core/eval/index_store.h; the caller checked that it belongs to the encoder's model), the pool is
// not encoded: rank 0 searches the saved index and completes from its stored vectors; its image
// ids must be the split's, in order (DataError otherwise).
// Throws DataError when the pool has fewer than eval.top_k images.
EvalResult evaluate_split(Encoder& encoder, const SplitData& split, const Config& config,
                          dist::Communicator& comm, const SavedIndex* saved = nullptr);
// The same for shopclip's DualEncoder with its tokenizer at model.text.context_length (what the
// trainer calls; equal to evaluate_split(DualEncoderAdapter(model, tokenizer, ...), ...)).
EvalResult evaluate_split(DualEncoder& model, const data::Tokenizer& tokenizer,
                          const SplitData& split, const Config& config, dist::Communicator& comm);

// The index of a pool (float32 [N, D], contiguous, CPU) as evaluation builds it: eval.index, in
// `shards` shards of contiguous rows (rank_slice; 1 = one plain index), eval.search_params
// applied. Rows are pool rows.
EmbeddingIndex build_pool_index(const Config& config, const torch::Tensor& pool, int shards);

// Writes <run_dir>/predictions/<split>.jsonl (in the split's schema) and, with scores,
// <run_dir>/eval/<split>.json in the official output shape.
void write_eval_outputs(const std::string& run_dir, const SplitData& split,
                        const EvalResult& result);

}  // namespace shopclip
