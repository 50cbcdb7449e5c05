#include "data/base64.h"

#include <string>

#include <gtest/gtest.h>

#include "data/error.h"

namespace shopclip::data {
namespace {

// Runs decode_base64 expecting a DataError and returns its message.
std::string decode_error(const std::string& text) {
  try {
    decode_base64(text);
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "decode_base64(\"" << text << "\") did not throw";
  return "";
}

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(encode_base64(plain), encoded) << plain;
    EXPECT_EQ(decode_base64(encoded), plain) << encoded;
  }
}

TEST(Base64Test, RoundTripsEveryByteValueAndLength) {
  std::string all;
  for (int i = 0; i < 256; ++i)
    all.push_back(static_cast<char>(i));
  for (std::size_t length = 0; length <= all.size(); ++length) {
    const std::string bytes = all.substr(all.size() - length);  // high bytes first: sign issues
    const std::string encoded = encode_base64(bytes);
    EXPECT_EQ(encoded.size(), (length + 2) / 3 * 4);
    EXPECT_EQ(encoded.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
              std::string::npos);
    ASSERT_EQ(decode_base64(encoded), bytes) << "length " << length;
  }
}

TEST(Base64Test, DecodesPlusAndSlash) {
  EXPECT_EQ(decode_base64("+/+/"), std::string("\xfb\xff\xbf"));
  EXPECT_EQ(encode_base64(std::string("\xfb\xff\xbf")), "+/+/");
}

TEST(Base64Test, IgnoresTrailingLineEnding) {
  EXPECT_EQ(decode_base64("Zm9vYg==\n"), "foob");
  EXPECT_EQ(decode_base64("Zm9vYg==\r\n"), "foob");
  EXPECT_EQ(decode_base64("Zm9v\r"), "foo");
}

TEST(Base64Test, RejectsBadCharacterWithPosition) {
  const std::string message = decode_error("Zm9v!mFy");
  EXPECT_NE(message.find("'!'"), std::string::npos) << message;
  EXPECT_NE(message.find("position 4"), std::string::npos) << message;
  // URL-safe alphabet and embedded whitespace are not standard base64.
  EXPECT_NE(decode_error("Zm9v-_Fy").find("position 4"), std::string::npos);
  EXPECT_NE(decode_error("Zm9v mFy").find("position 4"), std::string::npos);
  EXPECT_NE(decode_error("Zm9\nvmFy").find("position 3"), std::string::npos);
  EXPECT_NE(decode_error(std::string("Zm9v\0mFy", 8)).find("byte 0x00"), std::string::npos);
}

TEST(Base64Test, RejectsWrongLength) {
  EXPECT_NE(decode_error("Zm9").find("multiple of 4"), std::string::npos);
  EXPECT_NE(decode_error("Zm9vY").find("multiple of 4"), std::string::npos);
  EXPECT_NE(decode_error("Zm9vYg=").find("multiple of 4"), std::string::npos);
  EXPECT_NE(decode_error("Zm9vYg===").find("multiple of 4"), std::string::npos);
}

TEST(Base64Test, RejectsMisplacedPadding) {
  EXPECT_NE(decode_error("Zm=vYmFy").find("padding"), std::string::npos);
  EXPECT_NE(decode_error("Zg==Zg==").find("position 2"), std::string::npos);
  EXPECT_NE(decode_error("Z===").find("padding"), std::string::npos);
  EXPECT_NE(decode_error("====").find("padding"), std::string::npos);
  EXPECT_NE(decode_error("Zm9v=A==").find("position 4"), std::string::npos);
}

}  // namespace
}  // namespace shopclip::data
