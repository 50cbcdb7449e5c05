#include "core/eval/embeddings.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/nn/functional/normalization.h>
#include <torch/torch.h>

#include "data/loader.h"

namespace shopclip {
namespace {

void check_batch_size(int batch_size) {
  if (batch_size <= 0) {
    throw std::invalid_argument(
        fmt::format("encoding batch size must be positive, got {}", batch_size));
  }
}

// Concatenated parts, or an empty [0, D] when there were none.
torch::Tensor concat(const std::vector<torch::Tensor>& parts, std::int64_t dim) {
  if (parts.empty()) return torch::empty({0, dim}, torch::kFloat32);
  return torch::cat(parts).contiguous();
}

}  // namespace

torch::Tensor encode_pixels(Encoder& encoder, const torch::Tensor& pixels) {
  const int r = encoder.image_resolution();
  if (pixels.dim() != 4 || pixels.size(1) != r || pixels.size(2) != r || pixels.size(3) != 3 ||
      pixels.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument(
        fmt::format("encode_pixels: the encoder takes uint8 [B, {}, {}, 3] pixels, got {} {}", r, r,
                    c10::toString(pixels.scalar_type()), c10::str(pixels.sizes())));
  }
  return encoder.encode_images(data::normalize_pixels(pixels));
}

torch::Tensor encode_images(Encoder& encoder, const data::ImageStore& images, int batch_size,
                            std::int64_t begin, std::int64_t end) {
  check_batch_size(batch_size);
  if (images.resolution() != encoder.image_resolution()) {
    throw std::invalid_argument(
        fmt::format("the images were prepared at {} px, the encoder takes {} px (prep again with "
                    "model.image.resolution = {})",
                    images.resolution(), encoder.image_resolution(), encoder.image_resolution()));
  }
  if (end < 0) end = images.size();
  std::vector<torch::Tensor> parts;
  for (std::int64_t first = begin; first < end; first += batch_size) {
    const std::int64_t last = std::min<std::int64_t>(end, first + batch_size);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(last - first));
    std::iota(rows.begin(), rows.end(), first);
    parts.push_back(encode_pixels(encoder, images.read(rows)));
  }
  return concat(parts, encoder.dim());
}

torch::Tensor encode_texts(Encoder& encoder, const std::vector<std::string>& texts,
                           int batch_size) {
  check_batch_size(batch_size);
  const auto tokens = tokenize(encoder, texts);
  std::vector<torch::Tensor> parts;
  for (std::int64_t begin = 0; begin < tokens.size(0); begin += batch_size) {
    const std::int64_t end = std::min<std::int64_t>(tokens.size(0), begin + batch_size);
    parts.push_back(encoder.encode_texts(tokens.slice(0, begin, end)));
  }
  return concat(parts, encoder.dim());
}

torch::Tensor unit_rows(const torch::Tensor& rows) {
  namespace F = torch::nn::functional;
  return F::normalize(rows, F::NormalizeFuncOptions().dim(1)).contiguous();
}

std::pair<std::int64_t, std::int64_t> rank_slice(std::int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

torch::Tensor gather_embeddings(dist::Communicator& comm, const torch::Tensor& local) {
  if (local.dim() != 2 || local.scalar_type() != torch::kFloat32 || !local.device().is_cpu()) {
    throw std::invalid_argument(fmt::format(
        "gather_embeddings: expects float32 [rows, D] on the CPU, got {} {} on {}",
        c10::toString(local.scalar_type()), c10::str(local.sizes()), local.device().str()));
  }
  return comm.all_gather(local.contiguous()).contiguous();
}

torch::Tensor encode_images_across_ranks(Encoder& encoder, const data::ImageStore& images,
                                         int batch_size, dist::Communicator& comm) {
  const auto [begin, end] = rank_slice(images.size(), comm.rank(), comm.world_size());
  return gather_embeddings(comm, encode_images(encoder, images, batch_size, begin, end));
}

torch::Tensor encode_texts_across_ranks(Encoder& encoder, const std::vector<std::string>& texts,
                                        int batch_size, dist::Communicator& comm) {
  const auto [begin, end] =
      rank_slice(static_cast<std::int64_t>(texts.size()), comm.rank(), comm.world_size());
  const std::vector<std::string> mine(texts.begin() + begin, texts.begin() + end);
  return gather_embeddings(comm, encode_texts(encoder, mine, batch_size));
}

}  // namespace shopclip
