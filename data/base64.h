#pragma once
// Strict base64 (RFC 4648, standard alphabet) for the image column of {split}_imgs.tsv.

#include <string>
#include <string_view>

namespace shopclip::data {

// Decodes standard base64 ('+', '/', '=' padding). Whitespace is not allowed, except that a
// trailing '\r' or '\n' is ignored. Throws DataError naming the offending character position
// when the text is not valid base64 (bad character, bad length, misplaced padding).
std::string decode_base64(std::string_view text);

// Encodes bytes as standard base64 with '=' padding and no line breaks.
std::string encode_base64(std::string_view bytes);

}  // namespace shopclip::data
