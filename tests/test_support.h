#pragma once
// Shared helpers for the GoogleTest suites.

#include <string>

#include <gtest/gtest.h>

#include "core/config.h"
#include "data/image.h"

namespace shopclip::test_support {

// True when the environment variable CI is "true" (.ci/run sets it): there, every check must run,
// and a test that cannot run its real check (a missing tool or package) fails instead of skipping.
bool running_in_ci();

// Skips the current test with `reason`, or fails it when running_in_ci(). Use only in a void test
// body or SetUp (it returns from the function).
#define SHOPCLIP_SKIP_OR_FAIL_IN_CI(reason)              \
  do {                                                   \
    if (::shopclip::test_support::running_in_ci())       \
      FAIL() << "CI=true, so this must run: " << reason; \
    GTEST_SKIP() << reason;                              \
  } while (false)

// A fresh empty directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string file(const std::string& name) const;

 private:
  std::string path_;
};

// Writes text to a file (creating parent folders), throwing on failure.
void write_file(const std::string& path, const std::string& text);
// Reads a whole file, throwing on failure.
std::string read_file(const std::string& path);

// EXPECT_TRUE(Contains(message, "train.lr")) prints both strings when it fails.
::testing::AssertionResult Contains(const std::string& text, const std::string& part);

// Expects fn() to throw an Error whose message contains `part` (fails the test otherwise, printing
// the message it got).
template <class Error, class Fn>
void expect_throw_containing(Fn&& fn, const std::string& part) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), part));
    return;
  }
  ADD_FAILURE() << "expected an exception containing \"" << part << "\"";
}

// An image of uniformly random pixels (std::mt19937 from seed).
data::Image random_image(int width, int height, unsigned seed);

// A dual encoder small enough for unit tests: embed_dim 12, 16x16 images; image_type cnn (stages
// of widths 4, 8) or vit (patch 8, width 16, 1 block); text tower width 16, 2 blocks, context 10.
ModelConfig tiny_model_config(ImageTowerType image_type);

}  // namespace shopclip::test_support
