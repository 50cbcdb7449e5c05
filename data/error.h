#pragma once
// Exception types of data/: every failure names what it was reading.

#include <stdexcept>
#include <string>

namespace shopclip::data {

// The input is malformed (a bad row, a corrupt file, a mismatched shard). The message says which
// file / line / field and what is wrong, so it can be shown to the user as it is.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace shopclip::data
