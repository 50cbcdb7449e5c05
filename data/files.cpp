#include "data/files.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <fmt/format.h>
#include <xxhash.h>
#include <nlohmann/json.hpp>

#include "data/error.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

// "cannot write 'runs/a/best.pt': rename 'runs/a/best.pt.tmp' to 'runs/a/best.pt': No space
// left on device": the file the caller wanted, the call that failed and why.
[[noreturn]] void throw_write_error(const std::string& final_path, const std::string& call,
                                    int error) {
  throw DataError(fmt::format("cannot write '{}': {}: {}", final_path, call, std::strerror(error)));
}

void remove_quietly(const std::string& path) noexcept {
  ::unlink(path.c_str());
}

// Writes all of bytes to fd, retrying after signals and short writes; returns 0 or errno.
int write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return 0;
}

int fsync_retrying(int fd) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

// The part of a commit after the temporary file is complete and on disk: the rename and the
// folder's fsync. On a failed rename the temporary is removed.
void rename_durably(const std::string& temporary, const std::string& final_path) {
  if (std::rename(temporary.c_str(), final_path.c_str()) != 0) {
    const int error = errno;
    remove_quietly(temporary);
    throw_write_error(final_path, fmt::format("rename '{}' to '{}'", temporary, final_path), error);
  }
  std::string folder = fs::path(final_path).parent_path().string();
  if (folder.empty()) folder = ".";  // a bare file name lives in the working directory
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;  // before fmt::format, which may change it
    throw_write_error(final_path, fmt::format("open folder '{}'", folder), error);
  }
  const int error = fsync_retrying(fd);
  ::close(fd);
  // Some file systems cannot fsync a folder at all and say EINVAL; the rename is then as durable
  // as that file system makes it, which is not this program's to fix.
  if (error != 0 && error != EINVAL) {
    throw_write_error(final_path, fmt::format("fsync folder '{}'", folder), error);
  }
}

bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

}  // namespace

// ---- writing ----------------------------------------------------------------------------------

std::string temporary_path(const std::string& path) {
  return path + ".tmp";
}

void commit_file(const std::string& temporary, const std::string& final_path) {
  // fsync flushes the file (its inode), whichever descriptor asks; Linux accepts a read-only one,
  // so a file its writer already closed is opened again just for this.
  const int fd = ::open(temporary.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    remove_quietly(temporary);
    throw_write_error(final_path, fmt::format("open '{}'", temporary), error);
  }
  const int error = fsync_retrying(fd);
  ::close(fd);
  if (error != 0) {
    remove_quietly(temporary);
    throw_write_error(final_path, fmt::format("fsync '{}'", temporary), error);
  }
  rename_durably(temporary, final_path);
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw DataError(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
  return std::move(text).str();
}

void write_file_atomic(const std::string& path, std::string_view text) {
  AtomicFileWriter writer(path);
  writer.write(text);
  writer.commit();
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temporary_(temporary_path(path_)) {
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    const int error = errno;  // before fmt::format, which may change it
    throw_write_error(path_, fmt::format("open '{}'", temporary_), error);
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  discard();
}

void AtomicFileWriter::discard() noexcept {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  remove_quietly(temporary_);
}

void AtomicFileWriter::write(std::string_view bytes) {
  if (fd_ < 0) throw std::logic_error("AtomicFileWriter::write after commit: " + path_);
  if (buffer_.size() + bytes.size() <= kBufferBytes) {
    buffer_.append(bytes);
    return;
  }
  flush_buffer();
  if (bytes.size() >= kBufferBytes) {
    if (const int error = write_all(fd_, bytes); error != 0) {
      discard();
      throw_write_error(path_, fmt::format("write '{}'", temporary_), error);
    }
    return;
  }
  buffer_.append(bytes);
}

void AtomicFileWriter::flush_buffer() {
  if (buffer_.empty()) return;
  if (const int error = write_all(fd_, buffer_); error != 0) {
    discard();
    throw_write_error(path_, fmt::format("write '{}'", temporary_), error);
  }
  buffer_.clear();
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) throw std::logic_error("AtomicFileWriter::commit called twice: " + path_);
  flush_buffer();
  if (const int error = fsync_retrying(fd_); error != 0) {
    discard();
    throw_write_error(path_, fmt::format("fsync '{}'", temporary_), error);
  }
  // close can report a deferred write error (NFS, quotas): then the data is not all there.
  const int closed = ::close(fd_);
  fd_ = -1;
  if (closed != 0 && errno != EINTR) {
    const int error = errno;
    remove_quietly(temporary_);
    throw_write_error(path_, fmt::format("close '{}'", temporary_), error);
  }
  rename_durably(temporary_, path_);
}

// ---- reading ----------------------------------------------------------------------------------

bool Line::blank() const {
  return std::all_of(text.begin(), text.end(), is_json_space);
}

LineReader::LineReader(std::string path, OnError on_error)
    : path_(std::move(path)), on_error_(on_error) {
  // fopen succeeds on a folder and only the first read fails; say what is wrong instead.
  std::error_code ignored;
  if (fs::is_directory(path_, ignored)) {
    error_ = "it is a folder, not a file";
  } else {
    file_ = std::fopen(path_.c_str(), "rb");
    if (file_ == nullptr) error_ = std::strerror(errno);
  }
  if (file_ == nullptr && on_error_ == OnError::kThrow) {
    throw DataError(fmt::format("cannot open '{}': {}", path_, error_));
  }
}

LineReader::~LineReader() {
  if (file_ != nullptr) std::fclose(file_);
  std::free(buffer_);
}

bool LineReader::next(Line* line) {
  if (file_ == nullptr) return false;
  errno = 0;
  const ssize_t read = ::getline(&buffer_, &capacity_, file_);
  if (read < 0) {
    const int code = errno;
    if (std::ferror(file_)) {
      error_ = std::strerror(code != 0 ? code : EIO);
      if (on_error_ == OnError::kThrow) {
        throw DataError(fmt::format("{}: read error after line {}: {}", path_, line_, error_));
      }
    }
    return false;
  }
  ++line_;
  line->number = line_;
  line->offset = bytes_;
  bytes_ += read;
  std::size_t length = static_cast<std::size_t>(read);
  if (length > 0 && buffer_[length - 1] == '\n') --length;
  if (length > 0 && buffer_[length - 1] == '\r') --length;
  line->text = std::string_view(buffer_, length);
  return true;
}

std::string LineReader::where(const Line& line) const {
  return fmt::format("{}:{}", path_, line.number);
}

void LineReader::fail(const Line& line, std::string_view reason) const {
  throw DataError(fmt::format("{}: {}", where(line), reason));
}

nlohmann::json LineReader::parse_json(const Line& line) const {
  nlohmann::json value;
  if (std::string reason = parse_json_line(line.text, &value); !reason.empty()) {
    fail(line, reason);
  }
  return value;
}

std::string parse_json_line(std::string_view text, nlohmann::json* out) {
  try {
    *out = nlohmann::json::parse(text.begin(), text.end());
    return {};
  } catch (const nlohmann::json::parse_error& e) {
    *out = nullptr;
    return fmt::format("not JSON: {}", e.what());
  }
}

std::uint64_t xxh64_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot read '{}' to hash it", path));
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> state(XXH64_createState(),
                                                                   &XXH64_freeState);
  XXH64_reset(state.get(), 0);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) XXH64_update(state.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw DataError(fmt::format("cannot read '{}' to hash it", path));
  return XXH64_digest(state.get());
}

// ---- JsonFields ---------------------------------------------------------------------------------

const nlohmann::json& JsonFields::member(const nlohmann::json& object, const char* key,
                                         const std::string& path) const {
  auto it = object.find(key);
  if (it == object.end()) throw error(path, "is missing");
  return *it;
}

const nlohmann::json& JsonFields::object(const nlohmann::json& parent, const char* key,
                                         const std::string& path) const {
  const nlohmann::json& value = member(parent, key, path);
  if (!value.is_object()) throw error(path, "must be an object");
  return value;
}

const nlohmann::json& JsonFields::array(const nlohmann::json& parent, const char* key,
                                        const std::string& path) const {
  const nlohmann::json& value = member(parent, key, path);
  if (!value.is_array()) throw error(path, "must be an array");
  return value;
}

std::string JsonFields::string(const nlohmann::json& parent, const char* key,
                               const std::string& path) const {
  const nlohmann::json& value = member(parent, key, path);
  if (!value.is_string()) throw error(path, "must be a string");
  return value.get<std::string>();
}

std::int64_t JsonFields::integer(const nlohmann::json& parent, const char* key,
                                 const std::string& path, std::int64_t min,
                                 std::int64_t max) const {
  const nlohmann::json& value = member(parent, key, path);
  if (!value.is_number_integer()) throw error(path, "must be an integer");
  // Unsigned JSON values above int64 range would wrap in get<int64_t>().
  if (value.is_number_unsigned() &&
      value.get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    throw error(path, "is out of range");
  }
  std::int64_t number = value.get<std::int64_t>();
  if (number < min || number > max) {
    throw error(path, "is out of range [" + std::to_string(min) + ", " + std::to_string(max) +
                          "]: " + std::to_string(number));
  }
  return number;
}

double JsonFields::number(const nlohmann::json& parent, const char* key,
                          const std::string& path) const {
  const nlohmann::json& value = member(parent, key, path);
  if (!value.is_number()) throw error(path, "must be a number");
  return value.get<double>();
}

DataError JsonFields::error(const std::string& path, const std::string& what) const {
  return DataError(file_ + ": key \"" + path + "\" " + what);
}

}  // namespace shopclip::data
