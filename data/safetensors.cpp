#include "data/safetensors.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/error.h"
#include "data/files.h"

namespace shopclip::data {
namespace {

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F32", torch::kFloat32},   {"F64", torch::kFloat64}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

torch::ScalarType dtype_of(const std::string& name, const std::string& where) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw DataError(fmt::format("{}: unsupported dtype '{}'", where, name));
}

const char* name_of(torch::ScalarType type, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (type == d.type) return d.name;
  throw std::invalid_argument(fmt::format("safetensors: tensor '{}' has unsupported dtype {}",
                                          tensor, c10::toString(type)));
}

std::uint64_t read_u64_le(const unsigned char* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i)
    value = (value << 8) | bytes[i];
  return value;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open", path));
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  unsigned char length_bytes[8];
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(length_bytes), 8)) {
    throw DataError(
        fmt::format("{}: not a safetensors file (shorter than its 8-byte header length)", path));
  }
  const std::uint64_t header_size = read_u64_le(length_bytes);
  if (header_size > file_size - 8) {
    throw DataError(fmt::format("{}: header length {} exceeds the file ({} bytes)", path,
                                header_size, file_size));
  }
  std::string header_text(header_size, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_size));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("{}: header is not JSON ({})", path, e.what()));
  }
  if (!header.is_object()) throw DataError(fmt::format("{}: header is not a JSON object", path));
  const std::uint64_t data_size = file_size - 8 - header_size;
  std::vector<char> data(data_size);
  if (data_size > 0 && !in.read(data.data(), static_cast<std::streamsize>(data_size))) {
    throw DataError(fmt::format("{}: could not read {} bytes of tensor data", path, data_size));
  }

  SafetensorsFile file;
  for (const auto& [name, entry] : header.items()) {
    const std::string where = fmt::format("{}: tensor '{}'", path, name);
    try {
      if (name == "__metadata__") {
        for (const auto& [key, value] : entry.items())
          file.metadata[key] = value.get<std::string>();
        continue;
      }
      const auto type = dtype_of(entry.at("dtype").get<std::string>(), where);
      const auto shape = entry.at("shape").get<std::vector<std::int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<std::uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size) {
        throw DataError(
            fmt::format("{}: byte range outside the {} bytes of data", where, data_size));
      }
      std::uint64_t elements = 1;
      for (auto d : shape) {
        if (d < 0) throw DataError(fmt::format("{}: negative dimension", where));
        elements *= static_cast<std::uint64_t>(d);
      }
      const std::uint64_t bytes = elements * c10::elementSize(type);
      if (offsets[1] - offsets[0] != bytes) {
        throw DataError(fmt::format("{}: shape needs {} bytes, its byte range holds {}", where,
                                    bytes, offsets[1] - offsets[0]));
      }
      auto tensor = torch::empty(shape, torch::TensorOptions().dtype(type));
      if (bytes > 0) std::memcpy(tensor.data_ptr(), data.data() + offsets[0], bytes);
      file.tensors[name] = tensor;
    } catch (const nlohmann::json::exception& e) {
      throw DataError(fmt::format("{}: malformed header entry ({})", where, e.what()));
    }
  }
  return file;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    auto cpu = tensor.detach().cpu().contiguous();
    const std::uint64_t bytes = static_cast<std::uint64_t>(cpu.numel()) * cpu.element_size();
    header[name] = {{"dtype", name_of(cpu.scalar_type(), name)},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(cpu);
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  AtomicFileWriter out(path);
  char length_bytes[8];
  std::uint64_t length = header_text.size();
  for (int i = 0; i < 8; ++i, length >>= 8)
    length_bytes[i] = static_cast<char>(length & 0xff);
  out.write(std::string_view(length_bytes, 8));
  out.write(header_text);
  for (const auto& t : contiguous) {
    out.write(std::string_view(static_cast<const char*>(t.data_ptr()),
                               static_cast<std::size_t>(t.numel() * t.element_size())));
  }
  out.commit();
}

}  // namespace shopclip::data
