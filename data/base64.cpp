#include "data/base64.h"

#include <array>
#include <cstdint>
#include <string>

#include "data/error.h"

namespace shopclip::data {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Marks for bytes that are not alphabet characters in the decode table.
constexpr std::int8_t kInvalid = -1;
constexpr std::int8_t kPad = -2;

// Built once at compile time so decoding is one table lookup per character.
constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> table{};
  for (auto& entry : table)
    entry = kInvalid;
  for (int i = 0; i < 64; ++i)
    table[static_cast<unsigned char>(kAlphabet[i])] = i;
  table[static_cast<unsigned char>('=')] = kPad;
  return table;
}
constexpr std::array<std::int8_t, 256> kDecodeTable = make_decode_table();

std::string describe_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x21 && byte < 0x7f) return std::string("'") + c + "'";
  constexpr char kHex[] = "0123456789abcdef";
  return std::string("byte 0x") + kHex[byte >> 4] + kHex[byte & 0xf];
}

[[noreturn]] void fail(const std::string& what, std::size_t position) {
  throw DataError("invalid base64: " + what + " at position " + std::to_string(position));
}

}  // namespace

std::string decode_base64(std::string_view text) {
  // Rows read from a TSV may still carry their line ending; nothing else is forgiven.
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.remove_suffix(1);
  if (text.size() % 4 != 0) {
    throw DataError("invalid base64: length " + std::to_string(text.size()) +
                    " is not a multiple of 4");
  }
  std::string out;
  if (text.empty()) return out;

  // Padding may only occupy the last one or two characters of the whole text.
  std::size_t pad = 0;
  if (text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  const std::size_t data_chars = text.size() - pad;

  out.resize(text.size() / 4 * 3 - pad);
  std::size_t o = 0;
  std::uint32_t bits = 0;
  int nbits = 0;
  for (std::size_t i = 0; i < data_chars; ++i) {
    const std::int8_t value = kDecodeTable[static_cast<unsigned char>(text[i])];
    if (value == kPad) fail("misplaced padding '='", i);
    if (value < 0) fail("bad character " + describe_char(text[i]), i);
    bits = (bits << 6) | static_cast<std::uint32_t>(value);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out[o++] = static_cast<char>((bits >> nbits) & 0xff);
    }
  }
  // Leftover bits below the last full byte are discarded (as Python's decoder does); requiring
  // them to be zero would reject data other tools accept.
  return out;
}

std::string encode_base64(std::string_view bytes) {
  auto byte_at = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i]));
  };
  std::string out;
  out.resize((bytes.size() + 2) / 3 * 4);
  std::size_t o = 0;
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t group = byte_at(i) << 16 | byte_at(i + 1) << 8 | byte_at(i + 2);
    out[o++] = kAlphabet[(group >> 18) & 63];
    out[o++] = kAlphabet[(group >> 12) & 63];
    out[o++] = kAlphabet[(group >> 6) & 63];
    out[o++] = kAlphabet[group & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    const std::uint32_t group = byte_at(i) << 16 | (rest == 2 ? byte_at(i + 1) << 8 : 0);
    out[o++] = kAlphabet[(group >> 18) & 63];
    out[o++] = kAlphabet[(group >> 12) & 63];
    out[o++] = rest == 2 ? kAlphabet[(group >> 6) & 63] : '=';
    out[o++] = '=';
  }
  return out;
}

}  // namespace shopclip::data
