#pragma once
// Offline hard-negative mining, ANCE-style (Xiong et al., 2021): every train.mine_every epochs the
// current model encodes the training images and queries (each rank its slice), rank 0 searches
// an exact index of the images for every query, and keeps, per query, the candidates ranked
// mine_skip .. mine_depth - 1 that are not known positives. The lists feed the hard-negative
// batch sampler (data/loader.h HardNegativeBatchSampler).
//
// MUGE's training labels are incomplete (1-2 images per query where valid lists ~6), so the
// nearest "negatives" are often unlabelled positives: a candidate is also dropped when its score
// is above mine_max_ratio of the query's best positive score, and queries with the same text
// share their positives.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "core/eval/retrieval.h"
#include "core/log.h"
#include "core/model/dual_encoder.h"
#include "core/train/train_data.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"

namespace shopclip {

// Image rows mined for each query row (TrainData::queries order), best first.
using MinedNegatives = std::vector<std::vector<std::int64_t>>;

struct MiningRules {
  int skip = 0;             // ranks before this are never taken (the very top: likely positives)
  int depth = 50;           // ranks from this on are never taken
  double max_ratio = 0.95;  // drop candidates scoring above max_ratio x the best positive's score
};

// The rules applied to search results: for query q, rows[q * k + r] and scores[q * k + r] are its
// rank-r result (row -1 = none). positives[q]: the image rows relevant to q (same-text queries'
// included). positive_scores[q]: the best score among them (only used when q has positives).
MinedNegatives select_negatives(const std::vector<std::int64_t>& rows,
                                const std::vector<float>& scores, int k,
                                const std::vector<std::vector<std::int64_t>>& positives,
                                const std::vector<float>& positive_scores,
                                const MiningRules& rules);

// Each query's positives: the images of its pairs and the ground truth beyond them (`relevant`:
// query * num_images + image row), shared by every query with the same text. Sorted image rows,
// indexed like `texts` (one text per query row).
std::vector<std::vector<std::int64_t>> query_positives(
    const std::vector<std::string>& texts, const std::vector<data::TrainPair>& pairs,
    const std::unordered_set<std::int64_t>& relevant, std::int64_t num_images);

// train.mine_skip, mine_depth and mine_max_ratio.
MiningRules mining_rules(const TrainConfig& config);

// For each query q, the largest inner product of texts[q] with images[row] over its positives'
// rows (-inf for a query without positives). images float [N, D], texts float [Q, D], on the CPU.
std::vector<float> best_positive_scores(const torch::Tensor& images, const torch::Tensor& texts,
                                        const std::vector<std::vector<std::int64_t>>& positives);

// The search and selection for given embeddings of every training image (store rows) and query
// (query rows), unit rows on the CPU: rank 0 searches an exact sharded index and applies the
// rules, then broadcasts the lists. Collective; only rank 0's embeddings are read. Used with the
// current model's embeddings (mine_hard_negatives) and with a teacher's (distill). index: an
// exact index over `images` (row r = store row r) to search instead of building one (the
// teacher cache's saved index); read on rank 0 only, may be null.
MinedNegatives select_hard_negatives(const torch::Tensor& images, const torch::Tensor& texts,
                                     const TrainData& data, const MiningRules& rules,
                                     dist::Communicator& comm,
                                     const EmbeddingIndex* index = nullptr);

struct MiningResult {
  MinedNegatives negatives;  // the same on every rank
  double seconds = 0;
};

// Encodes (every rank its slice), searches and selects on rank 0, broadcasts the lists. Collective:
// every rank calls it. The model is left in evaluation mode.
MiningResult mine_hard_negatives(DualEncoder& model, const data::Tokenizer& tokenizer,
                                 const TrainData& data, const Config& config,
                                 dist::Communicator& comm);

// The lists of one mining, stored so a resumed run continues with the same batches:
// <run_dir>/mined_negatives.pt (format versioned; written atomically).
void save_mined_negatives(const std::string& path, int epoch, const MinedNegatives& negatives);
// The stored lists when the file exists and was mined at `epoch`, else nullopt-like empty pointer.
std::shared_ptr<const MinedNegatives> load_mined_negatives(const std::string& path, int epoch);

}  // namespace shopclip
