// GPT-2's byte-level alphabet: every byte maps to a printable code point (printable ASCII and
// Latin-1 map to themselves, the other 68 bytes to U+0100..U+0143), so BPE never sees spaces or
// control characters and any byte string round-trips.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace fitlm::byte_level {

// The code point standing for `byte`.
char32_t byte_to_code_point(uint8_t byte);
// The byte a code point stands for, or -1 when it is not in the alphabet.
int code_point_to_byte(char32_t cp);

// Maps each byte of `bytes` to its alphabet character (UTF-8 encoded).
void encode(std::string_view bytes, std::string& out);
// Inverse of encode. A character outside the alphabet becomes byte 0, as transformers.js's
// ByteLevel decoder does (it indexes a table and gets undefined, which Uint8Array stores as 0).
std::string decode(std::string_view text);

}  // namespace fitlm::byte_level
