#pragma once
// The HDF5 C API with shopclip's error handling, for the data layer's file formats (prep shards,
// embedding files): handles that close themselves, errors as DataError naming the file and the
// failing call with HDF5's own reason, and the attribute helpers the formats share. Internal to
// data/: nothing outside it includes <hdf5.h>.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <hdf5.h>

namespace shopclip::data::hdf5 {

// HDF5 prints its error stack to stderr by default; we report errors ourselves. In the
// thread-safe build the setting is per thread, so every entry point calls this.
void silence_hdf5();

// Throws DataError("<file>: HDF5 <op> failed: <innermost error of HDF5's stack>").
[[noreturn]] void throw_hdf5(const std::string& file, const std::string& op);
// throw_hdf5 when status < 0.
void check(herr_t status, const std::string& file, const std::string& op);

// Owns one hid_t and closes it with the matching H5?close, so no handle leaks on exceptions.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(other.closer_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  // Closes and reports the status; used where a failed close means lost data (a writer's file).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0) status = closer_(id_);
    id_ = H5I_INVALID_HID;
    return status;
  }
  void reset() { close(); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// A Handle for `id`, or throw_hdf5(file, op) when id < 0.
Handle checked(hid_t id, Handle::Closer closer, const std::string& file, const std::string& op);

Handle simple_space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>* max_dims,
                    const std::string& file);

// Variable-length UTF-8 string attributes (what h5py writes for `attrs[k] = "..."`) and int32
// ones. The readers throw DataError naming the file and attribute when it is missing or of
// another type.
void write_string_attr(hid_t loc, const char* name, const std::string& value,
                       const std::string& file);
void write_int_attr(hid_t loc, const char* name, int value, const std::string& file);
std::string read_string_attr(hid_t loc, const char* name, const std::string& file);
int read_int_attr(hid_t loc, const char* name, const std::string& file);

// The extent of a dataset, one entry per dimension.
std::vector<hsize_t> dataset_dims(hid_t dataset, const std::string& file, const std::string& name);
// Throws DataError("<file>: dataset <name> is not <expected>") unless the dataset's type is an
// integer of `size` bytes and `sign`.
void check_integer_type(hid_t dataset, std::size_t size, H5T_sign_t sign, const std::string& file,
                        const std::string& name, const char* expected);

}  // namespace shopclip::data::hdf5
