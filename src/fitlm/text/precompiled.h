// The "Precompiled" normalizer: SentencePiece's normalization rules as serialized in a model
// (normalizer_spec.precompiled_charsmap, base64 in tokenizer.json). The blob is
//   [u32 LE trie_size][trie_size/4 u32 LE units: a Darts double-array trie over UTF-8 bytes]
//   [replacement strings, each ending in '\0']
// and a trie value is the byte offset of a replacement. Applied as HF tokenizers does
// (normalizers/precompiled.rs over the spm_precompiled crate): per extended grapheme cluster,
// a cluster shorter than 6 bytes is replaced whole by the replacement of the *shortest* key that
// prefixes it, if any; otherwise each character is replaced by its own key's replacement or kept.
// (SentencePiece itself takes the longest key at each position; the two differ on rare
// sequences, e.g. conjoining jamo or a ligature followed by a combining mark.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fitlm {

class RegexScratch;

// Standard base64 with padding (RFC 4648); nullopt on any other character or bad length.
std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

class PrecompiledCharsmap {
 public:
  // Parses the blob; on a malformed one returns nullopt and sets `error`.
  static std::optional<PrecompiledCharsmap> parse(std::string blob, std::string& error);

  // The replacement of the shortest key that prefixes `chunk` (the crate's `transform`).
  std::optional<std::string_view> transform(std::string_view chunk) const;
  // The longest key that prefixes `chunk`: (its length, replacement); what SentencePiece uses.
  std::optional<std::pair<size_t, std::string_view>> longest_prefix(std::string_view chunk) const;

  // Normalizes valid UTF-8 as tokenizers does (grapheme clusters found with PCRE2's \X).
  std::string normalize(std::string_view text, RegexScratch& scratch) const;

 private:
  PrecompiledCharsmap() = default;
  std::optional<std::string_view> value_at(uint32_t unit_index) const;
  // Calls f(length, replacement) for each key prefixing `key`, shortest first, until f is true.
  template <typename F>
  void prefix_search(std::string_view key, F&& f) const;

  std::vector<uint32_t> units_;
  std::string normalized_;  // the replacement strings
  // Replacements of the one-byte keys (ASCII), looked up without the trie.
  std::optional<std::string_view> ascii_[128];
};

}  // namespace fitlm
