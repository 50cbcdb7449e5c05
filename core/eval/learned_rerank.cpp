#include "core/eval/learned_rerank.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/eval/embeddings.h"
#include "data/loader.h"

namespace shopclip {
namespace {

void require_reranker(DualEncoder& model, const char* who) {
  if (!model->reranker()) {
    throw std::invalid_argument(
        fmt::format("{}: the model has no reranker (train one with model.reranker.layers > 0 and "
                    "train.rerank_weight > 0)",
                    who));
  }
}

torch::Device device_of(DualEncoder& model) {
  return model->parameters().front().device();
}

}  // namespace

torch::Tensor encode_pool_tokens(DualEncoder& model, const data::ImageStore& images, int batch_size,
                                 std::int64_t begin, std::int64_t end) {
  require_reranker(model, "encode_pool_tokens");
  const int resolution = model->config().image.resolution;
  if (images.resolution() != resolution) {
    throw std::invalid_argument(
        fmt::format("encode_pool_tokens: the images were prepared at {} px, the model takes {} px",
                    images.resolution(), resolution));
  }
  if (batch_size < 1) throw std::invalid_argument("encode_pool_tokens: batch_size must be >= 1");
  if (end < 0) end = images.size();
  torch::InferenceMode inference;
  const auto device = device_of(model);
  std::vector<torch::Tensor> parts;
  for (std::int64_t first = begin; first < end; first += batch_size) {
    const std::int64_t last = std::min<std::int64_t>(end, first + batch_size);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(last - first));
    std::iota(rows.begin(), rows.end(), first);
    const auto pixels = data::normalize_pixels(images.read(rows)).to(device);
    parts.push_back(model->image_tokens(pixels).to(torch::kCPU, torch::kFloat16));
  }
  if (parts.empty()) {
    // The token shape of an empty slice: one forward on a blank image tells it.
    const auto probe = model->image_tokens(torch::zeros({1, 3, resolution, resolution}, device));
    return torch::empty({0, probe.size(1), probe.size(2)}, torch::kFloat16);
  }
  return torch::cat(parts).contiguous();
}

torch::Tensor encode_pool_tokens_across_ranks(DualEncoder& model, const data::ImageStore& images,
                                              int batch_size, dist::Communicator& comm) {
  const auto [begin, end] = rank_slice(images.size(), comm.rank(), comm.world_size());
  const auto mine = encode_pool_tokens(model, images, batch_size, begin, end);
  // gather_embeddings moves float32 rows: [n, T, C] travels as [n, T * C].
  const auto all = gather_embeddings(comm, mine.flatten(1).to(torch::kFloat32));
  return all.view({-1, mine.size(1), mine.size(2)}).to(torch::kFloat16).contiguous();
}

torch::Tensor rerank_logits(DualEncoder& model, const torch::Tensor& tokens,
                            const torch::Tensor& pool_tokens,
                            const std::vector<std::int64_t>& candidates, int k,
                            int queries_per_forward) {
  require_reranker(model, "rerank_logits");
  const std::int64_t num_queries = tokens.size(0);
  if (tokens.dim() != 2 || k < 1 ||
      static_cast<std::int64_t>(candidates.size()) != num_queries * k) {
    throw std::invalid_argument(
        fmt::format("rerank_logits: tokens {} and {} candidates do not make [Q, K = {}]",
                    c10::str(tokens.sizes()), candidates.size(), k));
  }
  if (pool_tokens.dim() != 3) {
    throw std::invalid_argument(fmt::format("rerank_logits: pool tokens must be [N, T, C], got {}",
                                            c10::str(pool_tokens.sizes())));
  }
  for (const auto row : candidates) {
    if (row < 0 || row >= pool_tokens.size(0)) {
      throw std::invalid_argument(fmt::format(
          "rerank_logits: candidate row {} outside the pool of {}", row, pool_tokens.size(0)));
    }
  }
  if (queries_per_forward < 1) queries_per_forward = 1;
  torch::InferenceMode inference;
  const auto device = device_of(model);
  auto reranker = model->reranker();
  const auto rows = torch::tensor(candidates, torch::kLong);
  auto logits = torch::empty({num_queries, k}, torch::kFloat32);
  for (std::int64_t first = 0; first < num_queries; first += queries_per_forward) {
    const std::int64_t count = std::min<std::int64_t>(queries_per_forward, num_queries - first);
    const auto query_tokens = tokens.narrow(0, first, count).to(device);
    // [count, L, W] -> each query's states repeated for its K candidates: [count * K, L, W].
    const auto states = model->text_token_states(query_tokens).repeat_interleave(k, 0);
    const auto padding = query_tokens.eq(model->pad_id()).repeat_interleave(k, 0);
    const auto images = pool_tokens.index_select(0, rows.narrow(0, first * k, count * k))
                            .to(device, torch::kFloat32);
    logits.narrow(0, first, count)
        .copy_(reranker->forward(states, padding, images).view({count, k}).cpu());
  }
  return logits;
}

}  // namespace shopclip
