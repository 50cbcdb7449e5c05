#pragma once
// The safetensors file format (a public, versionless format used to ship model weights): an
// 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype, shape and
// [begin, end) byte range in the data that follows, then the raw little-endian data.
// `{"__metadata__": {string: string}}` may carry free-form text.
//
// shopclip reads it for imported weights (launch/convert_chinese_clip.py writes it from a
// PyTorch checkpoint, which LibTorch 1.13 cannot read) and writes it for tests and exports.

#include <map>
#include <string>

#include <torch/types.h>

namespace shopclip::data {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU, contiguous, in the file's dtype
  std::map<std::string, std::string> metadata;   // "__metadata__", if any
};

// Reads every tensor. Throws DataError naming the file (and the tensor) when the file is
// truncated, its header is not valid JSON, a dtype is unknown, or a byte range does not match
// its shape or lies outside the data.
SafetensorsFile read_safetensors(const std::string& path);

// Writes tensors (any device; written as contiguous CPU data) through a temporary file and a
// rename. Supported dtypes: float32/64, float16, bfloat16, int64/32/16/8, uint8, bool.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace shopclip::data
