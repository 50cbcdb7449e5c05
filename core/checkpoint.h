#pragma once
// Checkpoints: one file holding everything to resume training or to evaluate — the resolved
// config, the vocabulary, model weights (parameters and buffers by name), optimizer state and
// the training position. Format versioned; written to "<path>.tmp" then renamed (atomic).

#include <string>
#include <vector>

#include <map>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include "core/config.h"
#include "data/tokenizer.h"

namespace shopclip {

inline constexpr int kCheckpointFormatVersion = 1;

// Where training stands.
struct TrainState {
  int epochs_done = 0;              // completed epochs
  std::int64_t step = 0;            // optimizer steps taken
  std::int64_t schedule_steps = 0;  // total steps the LR schedule spans
  std::int64_t warmup_steps = -1;   // its warm-up (-1: not fixed yet, or a checkpoint from before
                                    // it was stored: derived from the config)
  double best_score = -1;           // best valid MeanRecall so far (-1 = none)
  int best_epoch = -1;
  int evals_since_best = 0;
  double elapsed_seconds = 0;  // training wall time before this process
  // With train.ema_decay: best.pt holds the weight average (it scored higher), not the raw
  // weights.
  bool best_is_average = false;
};

// model: any module (its parameters and buffers are stored by name, on the CPU); optimizer may
// be null (weights-only checkpoint, e.g. best.pt). average: the weight average of train.ema_decay
// by tensor name (core/train/weight_average.h), stored beside the weights, or null.
void save_checkpoint(const std::string& path, const Config& config, const data::Vocab& vocab,
                     torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                     const TrainState& state,
                     const std::map<std::string, torch::Tensor>* average = nullptr);

struct CheckpointHeader {
  Config config;
  data::Vocab vocab;
  TrainState state;
  bool has_optimizer = false;
};

// Reads config, vocabulary and state; throws std::runtime_error naming the file when it is not a
// shopclip checkpoint or has another format version.
CheckpointHeader read_checkpoint_header(const std::string& path);

// The stored weights (parameters and buffers) by name, CPU tensors.
std::map<std::string, torch::Tensor> read_checkpoint_weights(const std::string& path);

// The stored weight average (CPU tensors by name); empty when the checkpoint holds none.
std::map<std::string, torch::Tensor> read_checkpoint_average(const std::string& path);

// Copies the checkpoint's weights into model (onto each tensor's device). Throws
// std::runtime_error listing missing, unexpected and mis-shaped names; with allow_missing, the
// model's tensors that the checkpoint lacks keep their values instead (model.init: a reranker
// added to a trained dual encoder) and their names are returned.
std::vector<std::string> load_model_weights(const std::string& path, torch::nn::Module& model,
                                            bool allow_missing = false);
// Restores an AdamW optimizer's state, each moment on its parameter's device (a checkpoint
// written on a GPU resumes on the CPU and the other way round).
void load_optimizer_state(const std::string& path, torch::optim::Optimizer& optimizer);

// A module's parameters and buffers by name (the names a checkpoint stores).
std::map<std::string, torch::Tensor> named_state(torch::nn::Module& model);

// How far apart the weights (parameters and buffers) of two checkpoints of the same architecture
// are. `relative` divides each tensor's largest absolute difference by that tensor's largest
// absolute value in the first checkpoint, so tensors of very different scales (a running
// variance and an attention bias) are judged alike.
struct WeightDifference {
  double absolute = 0;
  std::string worst_absolute;  // the tensor where `absolute` occurs
  double relative = 0;
  std::string worst_relative;
};
// Throws std::runtime_error when the tensor names or shapes differ (either way round) or when
// either checkpoint holds a NaN or Inf anywhere: such weights are never "equal within tolerance".
WeightDifference weight_difference(const std::string& path_a, const std::string& path_b);

// The uniform average of several checkpoints' weights (a "model soup", Wortsman et al., ICML
// 2022): every floating-point tensor averaged (summed in float64, so a soup of identical
// checkpoints is that checkpoint bit for bit), other tensors (BatchNorm's step counter) taken
// from the first. Averaging only makes sense for checkpoints that share an initialisation (fine-
// tunes of one pretrained model); runs from different random starts average into a worse model.
// Throws std::runtime_error naming the file and tensor when names or shapes differ, and
// std::invalid_argument for an empty list.
std::map<std::string, torch::Tensor> average_checkpoint_weights(
    const std::vector<std::string>& paths);

}  // namespace shopclip
