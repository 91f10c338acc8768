// Precompiled charsmap: the Darts double array of SentencePiece (as the spm_precompiled crate
// reads it) and tokenizers' grapheme-wise application; see precompiled.h.
#include "fitlm/text/precompiled.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>

#include "fitlm/text/pre_tokenizer_regex.h"
#include "fitlm/text/unicode.h"

namespace fitlm {
namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Darts units: bit 8 = has a leaf child, label = low byte (plus bit 31), offset as below.
bool has_leaf(uint32_t u) {
  return (u >> 8) & 1;
}
uint32_t value_of(uint32_t u) {
  return u & ((1u << 31) - 1);
}
uint32_t label_of(uint32_t u) {
  return u & ((1u << 31) | 0xFF);
}
uint64_t offset_of(uint32_t u) {
  return static_cast<uint64_t>(u >> 10) << ((u & (1u << 9)) >> 6);
}

// PCRE2's \X: one extended grapheme cluster (Unicode rules of the linked PCRE2).
pcre2_code* grapheme_regex() {
  static pcre2_code* code = [] {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* c =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>("\\X"), 2, PCRE2_UTF, &err, &off, nullptr);
    if (c) pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    return c;
  }();
  return code;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  int8_t table[256];
  std::memset(table, -1, sizeof table);
  for (int i = 0; i < 64; ++i)
    table[static_cast<unsigned char>(kBase64[i])] = static_cast<int8_t>(i);
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const unsigned char c = static_cast<unsigned char>(text[i + static_cast<size_t>(k)]);
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
      } else if (pad || table[c] < 0) {
        return std::nullopt;  // a character after padding, or outside the alphabet
      } else {
        v[k] = table[c];
      }
    }
    const uint32_t n = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                       (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out.push_back(static_cast<char>(n >> 16));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k)
      v = (v << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    out.push_back(kBase64[(v >> 18) & 63]);
    out.push_back(kBase64[(v >> 12) & 63]);
    out.push_back(n > 1 ? kBase64[(v >> 6) & 63] : '=');
    out.push_back(n > 2 ? kBase64[v & 63] : '=');
  }
  return out;
}

std::optional<PrecompiledCharsmap> PrecompiledCharsmap::parse(std::string blob,
                                                              std::string& error) {
  if (blob.size() < 4) {
    error = "shorter than its 4-byte trie size";
    return std::nullopt;
  }
  uint32_t trie_size = 0;
  for (int k = 3; k >= 0; --k)
    trie_size = (trie_size << 8) | static_cast<unsigned char>(blob[static_cast<size_t>(k)]);
  const size_t units = trie_size / 4;
  if (units * 4 > blob.size() - 4) {
    error = "trie size " + std::to_string(trie_size) + " is past the end of the " +
            std::to_string(blob.size()) + "-byte blob";
    return std::nullopt;
  }
  if (units == 0) {
    error = "empty trie";
    return std::nullopt;
  }
  PrecompiledCharsmap m;
  m.units_.resize(units);
  for (size_t i = 0; i < units; ++i) {
    uint32_t u = 0;
    for (int k = 3; k >= 0; --k)
      u = (u << 8) | static_cast<unsigned char>(blob[4 + i * 4 + static_cast<size_t>(k)]);
    m.units_[i] = u;
  }
  // Like the crate: the rest (after the units the size names) is the replacement strings.
  m.normalized_ = blob.substr(4 + trie_size);
  if (!unicode::is_valid_utf8(m.normalized_)) {
    error = "replacement strings are not valid UTF-8";
    return std::nullopt;
  }
  for (int c = 1; c < 128; ++c) {
    const char ch = static_cast<char>(c);
    m.ascii_[c] = m.transform(std::string_view(&ch, 1));
  }
  return m;
}

std::optional<std::string_view> PrecompiledCharsmap::value_at(uint32_t unit_index) const {
  if (unit_index >= units_.size()) return std::nullopt;
  const size_t begin = value_of(units_[unit_index]);
  if (begin > normalized_.size()) return std::nullopt;
  size_t end = normalized_.find('\0', begin);
  if (end == std::string::npos) end = normalized_.size();
  const std::string_view r(normalized_.data() + begin, end - begin);
  // An offset inside a character would make the crate panic; treat it as no rule.
  if (!unicode::is_valid_utf8(r)) return std::nullopt;
  return r;
}

template <typename F>
void PrecompiledCharsmap::prefix_search(std::string_view key, F&& f) const {
  uint64_t pos = offset_of(units_[0]);
  for (size_t i = 0; i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c == 0) return;
    pos ^= c;
    if (pos >= units_.size()) return;
    const uint32_t unit = units_[pos];
    if (label_of(unit) != c) return;
    pos ^= offset_of(unit);
    if (has_leaf(unit)) {
      if (pos >= units_.size()) return;
      if (f(i + 1, static_cast<uint32_t>(pos))) return;
    }
  }
}

std::optional<std::string_view> PrecompiledCharsmap::transform(std::string_view chunk) const {
  std::optional<std::string_view> out;
  bool found = false;
  prefix_search(chunk, [&](size_t, uint32_t unit) {
    found = true;
    out = value_at(unit);
    return true;
  });
  return found ? out : std::nullopt;
}

std::optional<std::pair<size_t, std::string_view>> PrecompiledCharsmap::longest_prefix(
    std::string_view chunk) const {
  std::optional<std::pair<size_t, std::string_view>> out;
  prefix_search(chunk, [&](size_t len, uint32_t unit) {
    if (auto v = value_at(unit)) out = std::make_pair(len, *v);
    return false;
  });
  return out;
}

std::string PrecompiledCharsmap::normalize(std::string_view text, RegexScratch& scratch) const {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  auto* md = static_cast<pcre2_match_data*>(scratch.match_data());
  auto* mc = static_cast<pcre2_match_context*>(scratch.match_context());
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    // An ASCII character followed by ASCII (or the end) is a cluster of its own, except CR LF.
    if (b < 0x80 && (i + 1 == text.size() || (static_cast<unsigned char>(text[i + 1]) < 0x80 &&
                                              !(b == '\r' && text[i + 1] == '\n')))) {
      if (b != 0 && ascii_[b])
        out.append(*ascii_[b]);
      else
        out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    size_t end = i + unicode::utf8_length(b);
    const int rc = pcre2_match(grapheme_regex(), subject, text.size(), i,
                               PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, mc);
    if (rc > 0) end = std::max(end, static_cast<size_t>(pcre2_get_ovector_pointer(md)[1]));
    const std::string_view g = text.substr(i, end - i);
    i = end;
    if (g.size() < 6) {
      if (auto r = transform(g)) {
        out.append(*r);
        continue;
      }
    }
    for (size_t k = 0; k < g.size();) {
      const size_t len = unicode::utf8_length(static_cast<unsigned char>(g[k]));
      const std::string_view c = g.substr(k, len);
      if (auto r = transform(c))
        out.append(*r);
      else
        out.append(c);
      k += len;
    }
  }
  return out;
}

}  // namespace fitlm
