// The byte <-> code point tables of the byte-level alphabet, built once.
#include "fitlm/text/byte_level.h"

#include "fitlm/text/unicode.h"

namespace fitlm::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8{};
  std::array<int16_t, 0x144> from_cp{};  // every alphabet code point is below U+0144
  Tables() {
    from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
      unicode::append_utf8(to_utf8[b], to_cp[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_code_point(uint8_t byte) {
  return tables().to_cp[byte];
}

int code_point_to_byte(char32_t cp) {
  return cp < 0x144 ? tables().from_cp[cp] : -1;
}

void encode(std::string_view bytes, std::string& out) {
  const Tables& t = tables();
  for (unsigned char b : bytes) out += t.to_utf8[b];
}

std::string decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const int b = code_point_to_byte(unicode::next_code_point(text, i));
    out.push_back(static_cast<char>(b < 0 ? 0 : b));
  }
  return out;
}

}  // namespace fitlm::byte_level
