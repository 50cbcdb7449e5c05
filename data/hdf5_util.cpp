#include "data/hdf5_util.h"

#include <string>
#include <vector>

#include "data/error.h"

namespace shopclip::data::hdf5 {

namespace {

// The innermost entry of the current HDF5 error stack ("major: minor (description)"): that is
// where the library detected the problem, e.g. "File accessibility: File has been truncated
// (truncated file: eof = ..., stored_eof = ...)".
std::string hdf5_error_detail() {
  std::string detail;
  auto walk = [](unsigned n, const H5E_error2_t* err, void* data) -> herr_t {
    if (n != 0) return 0;
    char major[160] = "";
    char minor[160] = "";
    H5Eget_msg(err->maj_num, nullptr, major, sizeof major);
    H5Eget_msg(err->min_num, nullptr, minor, sizeof minor);
    auto* out = static_cast<std::string*>(data);
    *out = std::string(major) + ": " + minor;
    if (err->desc != nullptr && *err->desc != '\0') *out += std::string(" (") + err->desc + ")";
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &detail);
  H5Eclear2(H5E_DEFAULT);
  return detail;
}

H5T_class_t type_class(hid_t type, const std::string& file, const std::string& op) {
  H5T_class_t result = H5Tget_class(type);
  if (result < 0) throw_hdf5(file, op + " (H5Tget_class)");
  return result;
}

// Opens a scalar attribute, turning "absent" into a DataError that says what is missing.
Handle open_scalar_attr(hid_t loc, const char* name, const std::string& file) {
  const std::string op = std::string("read attribute '") + name + "'";
  htri_t exists = H5Aexists(loc, name);
  if (exists < 0) throw_hdf5(file, op + " (H5Aexists)");
  if (exists == 0) {
    throw DataError(file + ": no '" + name + "' attribute (not a file shopclip wrote?)");
  }
  Handle attr = checked(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose, file, op + " (H5Aopen)");
  Handle space = checked(H5Aget_space(attr.get()), H5Sclose, file, op + " (H5Aget_space)");
  hssize_t points = H5Sget_simple_extent_npoints(space.get());
  if (points < 0) throw_hdf5(file, op + " (H5Sget_simple_extent_npoints)");
  if (points != 1) {
    throw DataError(file + ": attribute '" + name + "' holds " + std::to_string(points) +
                    " values, expected one");
  }
  return attr;
}

}  // namespace

// HDF5 prints its error stack to stderr by default; we report errors ourselves. In the
// thread-safe build the setting is per thread, so every entry point calls this. Its status is
// not checked: failing would only leave HDF5's own diagnostics on stderr.
void silence_hdf5() {
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

[[noreturn]] void throw_hdf5(const std::string& file, const std::string& op) {
  std::string detail = hdf5_error_detail();
  std::string message = file + ": HDF5 " + op + " failed";
  if (!detail.empty()) message += ": " + detail;
  throw DataError(message);
}

void check(herr_t status, const std::string& file, const std::string& op) {
  if (status < 0) throw_hdf5(file, op);
}

Handle checked(hid_t id, Handle::Closer closer, const std::string& file, const std::string& op) {
  if (id < 0) throw_hdf5(file, op);
  return Handle(id, closer);
}

Handle simple_space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>* max_dims,
                    const std::string& file) {
  return checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(),
                                  max_dims != nullptr ? max_dims->data() : nullptr),
                 H5Sclose, file, "H5Screate_simple");
}

// ---- attributes ---------------------------------------------------------------------------

// Variable-length UTF-8 strings, which is what h5py writes for `attrs[k] = "..."`, so Python
// tools read them back as str.
void write_string_attr(hid_t loc, const char* name, const std::string& value,
                       const std::string& file) {
  const std::string op = std::string("write attribute '") + name + "'";
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, file, op + " (H5Tcopy)");
  check(H5Tset_size(type.get(), H5T_VARIABLE), file, op + " (H5Tset_size)");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), file, op + " (H5Tset_cset)");
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, file, op + " (H5Screate)");
  Handle attr = checked(H5Acreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                        H5Aclose, file, op + " (H5Acreate2)");
  const char* text = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &text), file, op + " (H5Awrite)");
}

void write_int_attr(hid_t loc, const char* name, int value, const std::string& file) {
  const std::string op = std::string("write attribute '") + name + "'";
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, file, op + " (H5Screate)");
  Handle attr = checked(H5Acreate2(loc, name, H5T_STD_I32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                        H5Aclose, file, op + " (H5Acreate2)");
  check(H5Awrite(attr.get(), H5T_NATIVE_INT, &value), file, op + " (H5Awrite)");
}

// Accepts both variable- and fixed-length strings so files written by other tools still read.
std::string read_string_attr(hid_t loc, const char* name, const std::string& file) {
  const std::string op = std::string("read attribute '") + name + "'";
  Handle attr = open_scalar_attr(loc, name, file);
  Handle file_type = checked(H5Aget_type(attr.get()), H5Tclose, file, op + " (H5Aget_type)");
  if (type_class(file_type.get(), file, op) != H5T_STRING) {
    throw DataError(file + ": attribute '" + name + "' is not a string");
  }
  htri_t variable = H5Tis_variable_str(file_type.get());
  if (variable < 0) throw_hdf5(file, op + " (H5Tis_variable_str)");
  Handle mem_type = checked(H5Tcopy(H5T_C_S1), H5Tclose, file, op + " (H5Tcopy)");
  H5T_cset_t cset = H5Tget_cset(file_type.get());
  if (cset < 0) throw_hdf5(file, op + " (H5Tget_cset)");
  check(H5Tset_cset(mem_type.get(), cset), file, op + " (H5Tset_cset)");
  if (variable > 0) {
    check(H5Tset_size(mem_type.get(), H5T_VARIABLE), file, op + " (H5Tset_size)");
    char* text = nullptr;
    check(H5Aread(attr.get(), mem_type.get(), &text), file, op + " (H5Aread)");
    std::string value = text != nullptr ? text : "";
    // The library allocated the string; hand it back the way it was allocated.
    Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, file, op + " (H5Screate)");
    check(H5Dvlen_reclaim(mem_type.get(), space.get(), H5P_DEFAULT, &text), file,
          op + " (H5Dvlen_reclaim)");
    return value;
  }
  std::size_t size = H5Tget_size(file_type.get());
  if (size == 0) throw_hdf5(file, op + " (H5Tget_size)");
  // One spare byte so the NUL-terminated memory type never truncates the stored text.
  check(H5Tset_size(mem_type.get(), size + 1), file, op + " (H5Tset_size)");
  check(H5Tset_strpad(mem_type.get(), H5T_STR_NULLTERM), file, op + " (H5Tset_strpad)");
  std::string buffer(size + 1, '\0');
  check(H5Aread(attr.get(), mem_type.get(), buffer.data()), file, op + " (H5Aread)");
  buffer.resize(std::strlen(buffer.c_str()));
  // Fixed-length strings may be space padded (H5T_STR_SPACEPAD).
  while (!buffer.empty() && buffer.back() == ' ')
    buffer.pop_back();
  return buffer;
}

int read_int_attr(hid_t loc, const char* name, const std::string& file) {
  const std::string op = std::string("read attribute '") + name + "'";
  Handle attr = open_scalar_attr(loc, name, file);
  Handle file_type = checked(H5Aget_type(attr.get()), H5Tclose, file, op + " (H5Aget_type)");
  if (type_class(file_type.get(), file, op) != H5T_INTEGER) {
    throw DataError(file + ": attribute '" + name + "' is not an integer");
  }
  long long value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_LLONG, &value), file, op + " (H5Aread)");
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
    throw DataError(file + ": attribute '" + name + "' is out of range: " + std::to_string(value));
  }
  return static_cast<int>(value);
}

std::vector<hsize_t> dataset_dims(hid_t dataset, const std::string& file, const std::string& name) {
  Handle space = checked(H5Dget_space(dataset), H5Sclose, file, "H5Dget_space(" + name + ")");
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw_hdf5(file, "H5Sget_simple_extent_ndims(" + name + ")");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) {
    check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), file,
          "H5Sget_simple_extent_dims(" + name + ")");
  }
  return dims;
}

void check_integer_type(hid_t dataset, std::size_t size, H5T_sign_t sign, const std::string& file,
                        const std::string& name, const char* expected) {
  const std::string op = "H5Dget_type(" + name + ")";
  Handle type = checked(H5Dget_type(dataset), H5Tclose, file, op);
  // H5Tget_sign is only defined for integer types, so the class is checked first.
  bool matches = type_class(type.get(), file, op) == H5T_INTEGER;
  if (matches) {
    std::size_t type_size = H5Tget_size(type.get());
    if (type_size == 0) throw_hdf5(file, "H5Tget_size(" + name + ")");
    H5T_sign_t type_sign = H5Tget_sign(type.get());
    if (type_sign < 0) throw_hdf5(file, "H5Tget_sign(" + name + ")");
    matches = type_size == size && type_sign == sign;
  }
  if (!matches) {
    throw DataError(file + ": dataset " + name + " is not " + expected);
  }
}

}  // namespace shopclip::data::hdf5
