// safetensors: a round trip of every supported dtype, a byte-exact file checked by hand, and a
// clear error for each kind of damage.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "data/error.h"
#include "data/safetensors.h"
#include "test_support.h"

namespace shopclip::data {
namespace {

using shopclip::test_support::Contains;
using shopclip::test_support::TempDir;

TEST(Safetensors, RoundTripsEveryDtypeShapeAndMetadata) {
  TempDir dir;
  std::map<std::string, torch::Tensor> tensors{
      {"f32", torch::randn({2, 3})},
      {"f64", torch::randn({4}, torch::kFloat64)},
      {"f16", torch::randn({3, 1}).to(torch::kFloat16)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"i64", torch::arange(6, torch::kInt64).view({2, 3})},
      {"i32", torch::tensor({-1, 2}, torch::kInt32)},
      {"u8", torch::tensor({0, 255}, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::empty({0, 4})},
      {"strided", torch::arange(12.0).view({3, 4}).t()},  // written contiguous
  };
  write_safetensors(dir.file("a.safetensors"), tensors, {{"source", "test"}});
  const auto file = read_safetensors(dir.file("a.safetensors"));
  EXPECT_EQ(file.metadata.at("source"), "test");
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const auto& read = file.tensors.at(name);
    EXPECT_EQ(read.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_EQ(read.sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(torch::equal(read, tensor)) << name;
  }
}

TEST(Safetensors, ReadsAFileWrittenByHand) {
  // Two float32 values 1.0 and -2.0 under "w", header padded with spaces as writers may do.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   )";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  bytes += header;
  const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
  bytes.append(reinterpret_cast<const char*>(data), 8);
  TempDir dir;
  test_support::write_file(dir.file("w.safetensors"), bytes);
  const auto file = read_safetensors(dir.file("w.safetensors"));
  EXPECT_TRUE(torch::equal(file.tensors.at("w"), torch::tensor({1.0f, -2.0f})));
}

void expect_error(const std::string& bytes, const std::string& part) {
  TempDir dir;
  test_support::write_file(dir.file("bad.safetensors"), bytes);
  try {
    read_safetensors(dir.file("bad.safetensors"));
    ADD_FAILURE() << "no error for: " << part;
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "bad.safetensors")) << e.what();
    EXPECT_TRUE(Contains(e.what(), part)) << e.what();
  }
}

std::string with_header(const std::string& header, std::size_t data_bytes) {
  std::string bytes(8, '\0');
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8)
    bytes[i] = static_cast<char>(n & 0xff);
  return bytes + header + std::string(data_bytes, '\0');
}

TEST(Safetensors, DamagedFilesGiveClearErrors) {
  expect_error("abc", "shorter than its 8-byte header length");
  expect_error(std::string("\xff\xff\x00\x00\x00\x00\x00\x00", 8) + "{}", "exceeds the file");
  expect_error(with_header("{not json", 0), "header is not JSON");
  expect_error(with_header(R"({"w":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", 1),
               "unsupported dtype 'Q8'");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               "tensor 'w': shape needs 12 bytes");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
               "byte range outside");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[2]}})", 8), "malformed header entry");
}

}  // namespace
}  // namespace shopclip::data
