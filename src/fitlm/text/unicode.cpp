// UTF-8 decoding with WHATWG replacement semantics, JavaScript whitespace, and NFC/NFD.
#include "fitlm/text/unicode.h"

#include <algorithm>

#include "fitlm/text/unicode_nfc_tables.h"

namespace fitlm::unicode {

char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  const size_t n = utf8_length(b0);
  char32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
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

namespace {

// One step of the WHATWG UTF-8 decoder: returns the length of the valid sequence at s[i], or
// the number of bytes to replace by one U+FFFD (as a negative number).
long utf8_step(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return 1;
  size_t need;
  unsigned char lower = 0x80, upper = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lower = 0xA0;
    if (b == 0xED) upper = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lower = 0x90;
    if (b == 0xF4) upper = 0x8F;
  } else {
    return -1;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return -static_cast<long>(k);
    const auto c = static_cast<unsigned char>(s[i + k]);
    if (c < lower || c > upper) return -static_cast<long>(k);  // this byte is re-read
    lower = 0x80;
    upper = 0xBF;
  }
  return static_cast<long>(need + 1);
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const long n = utf8_step(s, i);
    if (n < 0) return false;
    i += static_cast<size_t>(n);
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const long n = utf8_step(s, i);
    if (n > 0) {
      out.append(s.substr(i, static_cast<size_t>(n)));
      i += static_cast<size_t>(n);
    } else {
      out += "\xEF\xBF\xBD";
      i += static_cast<size_t>(-n);
    }
  }
  return out;
}

bool is_js_whitespace(char32_t c) {
  return c == 0x09 || c == 0x0A || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x20 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

namespace {

template <bool (*IsSpace)(char32_t)>
std::string_view trim_start(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!IsSpace(next_code_point(s, j))) break;
    i = j;
  }
  return s.substr(i);
}

template <bool (*IsSpace)(char32_t)>
std::string_view trim_end(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t j = start;
    if (!IsSpace(next_code_point(s, j))) break;
    end = start;
  }
  return s.substr(0, end);
}

}  // namespace

std::string_view js_trim_start(std::string_view s) {
  return trim_start<is_js_whitespace>(s);
}
std::string_view js_trim_end(std::string_view s) {
  return trim_end<is_js_whitespace>(s);
}
std::string_view white_space_trim_start(std::string_view s) {
  return trim_start<is_white_space>(s);
}
std::string_view white_space_trim_end(std::string_view s) {
  return trim_end<is_white_space>(s);
}

// ---- Normalization (UAX #15): decompose, order by combining class, recompose. ----
namespace {

using namespace nfc_tables;
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* end = kCcc + kCccCount;
  const CccRange* it =
      std::upper_bound(kCcc, end, cp, [](char32_t c, const CccRange& r) { return c < r.first; });
  if (it == kCcc) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

bool is_unsafe(char32_t cp) {
  if (cp < 0x300) return false;
  const CodeRange* end = kUnsafe + kUnsafeCount;
  const CodeRange* it = std::upper_bound(
      kUnsafe, end, cp, [](char32_t c, const CodeRange& r) { return c < r.first; });
  if (it == kUnsafe) return false;
  return cp <= (it - 1)->last;
}

void decompose(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* end = kDecomp + kDecompCount;
  const Decomposition* it = std::lower_bound(
      kDecomp, end, cp, [](const Decomposition& d, char32_t c) { return d.cp < c; });
  if (it != end && it->cp == cp)
    out.append(kDecompData + it->offset, kDecompData + it->offset + it->length);
  else
    out.push_back(cp);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const Composition* end = kCompose + kComposeCount;
  const Composition* it = std::lower_bound(
      kCompose, end, std::pair{a, b}, [](const Composition& c, std::pair<char32_t, char32_t> k) {
        return c.first < k.first || (c.first == k.first && c.second < k.second);
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

std::u32string canonical_decomposition(std::string_view s) {
  std::u32string d;
  d.reserve(s.size());
  for (size_t i = 0; i < s.size();) decompose(next_code_point(s, i), d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + static_cast<long>(i), d.begin() + static_cast<long>(j),
                     [](char32_t x, char32_t y) { return ccc(x) < ccc(y); });
    i = j;
  }
  return d;
}

bool quick_check_ok(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0xCC) {  // below U+0300: always stable
      i += utf8_length(static_cast<unsigned char>(s[i]));
      continue;
    }
    if (is_unsafe(next_code_point(s, i))) return false;
  }
  return true;
}

}  // namespace

std::string nfd(std::string_view s) {
  if (quick_check_ok(s)) {
    // Quick check passing for NFC does not imply NFD; only skip when nothing decomposes.
    bool any = false;
    for (size_t i = 0; i < s.size() && !any;) {
      const char32_t cp = next_code_point(s, i);
      if (cp >= 0xC0) {
        std::u32string tmp;
        decompose(cp, tmp);
        any = tmp.size() != 1 || tmp[0] != cp;
      }
    }
    if (!any) return std::string(s);
  }
  std::string out;
  for (char32_t cp : canonical_decomposition(s)) append_utf8(out, cp);
  return out;
}

std::string nfc(std::string_view s) {
  if (quick_check_ok(s)) return std::string(s);
  std::u32string d = canonical_decomposition(s);
  // Canonical composition: each character may combine with the last starter unless blocked.
  size_t starter = std::u32string::npos, out_len = 0;
  int last_ccc = -1;
  for (size_t i = 0; i < d.size(); ++i) {
    const char32_t cp = d[i];
    const int c = ccc(cp);
    if (starter != std::u32string::npos &&
        (last_ccc < c || (last_ccc == 0 && out_len == starter + 1))) {
      // Not blocked: either adjacent to the starter or every char between has a lower class.
      if (const char32_t comp = compose_pair(d[starter], cp)) {
        d[starter] = comp;
        continue;
      }
    }
    if (c == 0) starter = out_len;
    last_ccc = c;
    d[out_len++] = cp;
  }
  d.resize(out_len);
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : d) append_utf8(out, cp);
  return out;
}

}  // namespace fitlm::unicode
