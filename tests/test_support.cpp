#include "test_support.h"

#include "core/cpu_blas.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <unistd.h>

namespace shopclip::test_support {
namespace {

// Every test binary computes with the BLAS kernels the shopclip binary would use: when OpenBLAS
// loaded weaker ones than this CPU runs (core/cpu_blas.h), the binary starts again before gtest's
// main with better ones asked for.
const bool kBlasKernelsChecked = [] {
  reexec_with_better_blas_kernels();
  return true;
}();

}  // namespace

bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/shopclip-test-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + pattern);
  path_ = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::file(const std::string& name) const {
  return path_ + "/" + name;
}

void write_file(const std::string& path, const std::string& text) {
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

data::Image random_image(int width, int height, unsigned seed) {
  std::mt19937 rng(seed);
  data::Image image{width, height,
                    std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (auto& value : image.rgb)
    value = static_cast<std::uint8_t>(rng() & 0xff);
  return image;
}

ModelConfig tiny_model_config(ImageTowerType image_type) {
  ModelConfig config;
  config.embed_dim = 12;
  config.image.type = image_type;
  config.image.resolution = 16;
  config.image.widths = {4, 8};
  config.image.patch_size = 8;
  config.image.width = 16;
  config.image.layers = 1;
  config.image.heads = 2;
  config.image.mlp = 24;
  config.text.context_length = 10;
  config.text.width = 16;
  config.text.layers = 2;
  config.text.heads = 2;
  config.text.mlp = 24;
  return config;
}

}  // namespace shopclip::test_support
