#include "data/embedding_file.h"

#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <torch/torch.h>

#include "data/error.h"
#include "data/files.h"
#include "data/hdf5_util.h"

namespace shopclip::data {
namespace {

using namespace hdf5;

constexpr const char* kFormat = "shopclip-embeddings";

// IEEE 754 binary16, little-endian: what numpy/h5py call float16. HDF5 1.10 has no predefined
// half type, so it is derived from the 32-bit one (sign bit 15, exponent bits 10-14 with bias 15,
// mantissa bits 0-9).
Handle half_type(const std::string& file) {
  Handle type = checked(H5Tcopy(H5T_IEEE_F32LE), H5Tclose, file, "H5Tcopy(float16)");
  check(H5Tset_fields(type.get(), 15, 10, 5, 0, 10), file, "H5Tset_fields(float16)");
  check(H5Tset_size(type.get(), 2), file, "H5Tset_size(float16)");
  check(H5Tset_ebias(type.get(), 15), file, "H5Tset_ebias(float16)");
  check(H5Tset_precision(type.get(), 16), file, "H5Tset_precision(float16)");
  return type;
}

Handle create_dataset(hid_t file_id, const char* name, hid_t type, const std::vector<hsize_t>& dims,
                      const std::string& file) {
  Handle space = simple_space(dims, nullptr, file);
  return checked(
      H5Dcreate2(file_id, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
      file, std::string("H5Dcreate2(") + name + ")");
}

Handle open_dataset(hid_t file_id, const char* name, const std::string& file) {
  const htri_t exists = H5Lexists(file_id, name, H5P_DEFAULT);
  if (exists < 0) throw_hdf5(file, std::string("H5Lexists(") + name + ")");
  if (exists == 0) {
    throw DataError(file + ": not a shopclip embedding file (no " + std::string(name) +
                    " dataset)");
  }
  return checked(H5Dopen2(file_id, name, H5P_DEFAULT), H5Dclose, file,
                 std::string("H5Dopen2(") + name + ")");
}

// Opens `path` read-only after checking it is an HDF5 file of this format and version.
Handle open_checked(const std::string& path) {
  silence_hdf5();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": no such file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) throw_hdf5(path, "H5Fis_hdf5");
  if (is_hdf5 == 0) throw DataError(path + ": not an HDF5 file (is it a shopclip embedding file?)");
  Handle file =
      checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path, "H5Fopen");
  const std::string format = read_string_attr(file.get(), "format", path);
  if (format != kFormat) {
    throw DataError(path + ": format is '" + format + "', expected '" + kFormat + "'");
  }
  const int version = read_int_attr(file.get(), "format_version", path);
  if (version != kEmbeddingFileFormatVersion) {
    throw DataError(path + ": embedding file format version " + std::to_string(version) +
                    ", this build reads version " + std::to_string(kEmbeddingFileFormatVersion));
  }
  return file;
}

// Every attribute of the root group but the format's own, read as strings.
std::map<std::string, std::string> string_attributes(hid_t root, const std::string& path) {
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  check(H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names), path,
        "H5Aiterate2");
  std::map<std::string, std::string> attributes;
  for (const auto& name : names) {
    if (name == "format" || name == "format_version") continue;
    attributes[name] = read_string_attr(root, name.c_str(), path);
  }
  return attributes;
}

}  // namespace

void write_embedding_file(const std::string& path, const torch::Tensor& ids,
                          const torch::Tensor& embeddings,
                          const std::map<std::string, std::string>& attributes) {
  if (ids.dim() != 1 || ids.scalar_type() != torch::kLong) {
    throw std::invalid_argument("write_embedding_file: ids must be int64 [n]");
  }
  if (embeddings.dim() != 2 || embeddings.size(0) != ids.size(0) ||
      !embeddings.is_floating_point()) {
    throw std::invalid_argument("write_embedding_file: embeddings must be float [n, D] with n = " +
                                std::to_string(ids.size(0)));
  }
  for (const auto& [name, value] : attributes) {
    if (name == "format" || name == "format_version") {
      throw std::invalid_argument("write_embedding_file: attribute name '" + name +
                                  "' is the format's own");
    }
  }
  silence_hdf5();
  const auto ids_cpu = ids.cpu().contiguous();
  const auto halves = embeddings.detach().cpu().to(torch::kHalf).contiguous();
  const std::string tmp = temporary_path(path);
  bool finished = false;
  // Removes the temporary file on any failure before the commit.
  struct Cleanup {
    const std::string& tmp;
    const bool& finished;
    ~Cleanup() {
      if (finished) return;
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
    }
  } cleanup{tmp, finished};
  {
    Handle file = checked(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                          tmp, "H5Fcreate");
    write_string_attr(file.get(), "format", kFormat, tmp);
    write_int_attr(file.get(), "format_version", kEmbeddingFileFormatVersion, tmp);
    for (const auto& [name, value] : attributes)
      write_string_attr(file.get(), name.c_str(), value, tmp);
    const auto rows = static_cast<hsize_t>(ids_cpu.size(0));
    const auto dims = static_cast<hsize_t>(halves.size(1));
    Handle id_set = create_dataset(file.get(), "/ids", H5T_STD_I64LE, {rows}, tmp);
    if (rows > 0) {
      check(H5Dwrite(id_set.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     ids_cpu.data_ptr<std::int64_t>()),
            tmp, "H5Dwrite(/ids)");
    }
    check(id_set.close(), tmp, "H5Dclose(/ids)");
    Handle half = half_type(tmp);
    Handle values = create_dataset(file.get(), "/embeddings", half.get(), {rows, dims}, tmp);
    if (rows > 0 && dims > 0) {
      // Memory and file type are the same 16-bit layout: the bytes go out unconverted.
      check(H5Dwrite(values.get(), half.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, halves.data_ptr()),
            tmp, "H5Dwrite(/embeddings)");
    }
    check(values.close(), tmp, "H5Dclose(/embeddings)");
    check(file.close(), tmp, "H5Fclose");
  }
  // commit_file removes the temporary itself when it fails.
  finished = true;
  commit_file(tmp, path);
}

EmbeddingTable read_embedding_file(const std::string& path) {
  Handle file = open_checked(path);
  EmbeddingTable table;
  table.attributes = string_attributes(file.get(), path);
  Handle id_set = open_dataset(file.get(), "/ids", path);
  check_integer_type(id_set.get(), 8, H5T_SGN_2, path, "/ids", "int64");
  const auto id_dims = dataset_dims(id_set.get(), path, "/ids");
  Handle values = open_dataset(file.get(), "/embeddings", path);
  const auto dims = dataset_dims(values.get(), path, "/embeddings");
  if (id_dims.size() != 1 || dims.size() != 2 || dims[0] != id_dims[0]) {
    throw DataError(path + ": /ids must be [n] and /embeddings [n, D] with the same n");
  }
  {
    Handle type = checked(H5Dget_type(values.get()), H5Tclose, path, "H5Dget_type(/embeddings)");
    if (H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 2) {
      throw DataError(path + ": dataset /embeddings is not float16");
    }
  }
  const auto rows = static_cast<std::int64_t>(dims[0]), width = static_cast<std::int64_t>(dims[1]);
  table.ids = torch::empty({rows}, torch::kLong);
  table.embeddings = torch::empty({rows, width}, torch::kHalf);
  if (rows > 0) {
    check(H5Dread(id_set.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                  table.ids.data_ptr<std::int64_t>()),
          path, "H5Dread(/ids)");
    if (width > 0) {
      Handle half = half_type(path);
      check(H5Dread(values.get(), half.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    table.embeddings.data_ptr()),
            path, "H5Dread(/embeddings)");
    }
  }
  return table;
}

std::map<std::string, std::string> read_embedding_attributes(const std::string& path) {
  Handle file = open_checked(path);
  return string_attributes(file.get(), path);
}

}  // namespace shopclip::data
