#pragma once
// The one UTF-8 decoder and the one UTF-8 encoder of the project (tokenizer, segmenter, readers,
// checks, statistics, HTML, tests).

#include <cstddef>
#include <string>
#include <string_view>

namespace shopclip::data {

// Length in bytes (1 to 4) of the well-formed UTF-8 sequence starting at text[i], its code point
// stored in *code_point; 0 when the bytes there are malformed: a stray continuation byte, a
// truncated sequence, an overlong form, a surrogate or a value above U+10FFFF (exactly what
// Python's strict "utf-8" codec rejects). Callers choose what a bad byte becomes. i < size.
inline std::size_t decode_utf8(std::string_view text, std::size_t i, char32_t* code_point) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  }
  std::size_t length = 0;
  char32_t value = 0, minimum = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, value = lead & 0x1F, minimum = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, value = lead & 0x0F, minimum = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, value = lead & 0x07, minimum = 0x10000;
  } else {
    return 0;  // a continuation byte as lead, C0/C1 (always overlong), or F5..FF
  }
  if (text.size() - i < length) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const unsigned char next = byte(i + k);
    if ((next & 0xC0) != 0x80) return 0;
    value = (value << 6) | (next & 0x3F);
  }
  if (value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *code_point = value;
  return length;
}

// Appends the UTF-8 bytes (1 to 4) of code point cp to out: the inverse of decode_utf8. cp must be
// a Unicode scalar value (at most U+10FFFF, not a surrogate), as decode_utf8 returns them; other
// values are the caller's bug and are encoded as their bits say.
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The UTF-8 bytes of one code point (see append_utf8).
inline std::string encode_utf8(char32_t cp) {
  std::string out;
  append_utf8(out, cp);
  return out;
}

}  // namespace shopclip::data
