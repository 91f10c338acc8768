// UTF-8 helpers shared by the tokenizer pieces. Text inside the tokenizer is always valid UTF-8:
// invalid input bytes are replaced by U+FFFD on entry, exactly as a WHATWG TextDecoder (what
// transformers.js sees) would, so ids agree with transformers.js for any byte string.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fitlm::unicode {

// Decodes the code point starting at s[i] of *valid* UTF-8 and advances i.
char32_t next_code_point(std::string_view s, size_t& i);
// Length in bytes of the UTF-8 sequence whose lead byte is `lead` (valid UTF-8 only).
inline size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}
void append_utf8(std::string& out, char32_t cp);

bool is_valid_utf8(std::string_view s);
// Returns s with every maximal invalid subsequence replaced by U+FFFD (WHATWG "decode").
std::string sanitize_utf8(std::string_view s);

// JavaScript's notion of whitespace (String.prototype.trim, regex \s): White_Space minus U+0085,
// plus U+FEFF.
bool is_js_whitespace(char32_t cp);
std::string_view js_trim_start(std::string_view s);
std::string_view js_trim_end(std::string_view s);
// Unicode's White_Space property (Rust's char::is_whitespace, what tokenizers trims).
bool is_white_space(char32_t cp);
std::string_view white_space_trim_start(std::string_view s);
std::string_view white_space_trim_end(std::string_view s);

// Unicode normalization forms C and D (canonical only).
std::string nfc(std::string_view s);
std::string nfd(std::string_view s);

}  // namespace fitlm::unicode
