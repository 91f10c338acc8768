// tokenizer.json "normalizer": rewrites a text section before pre-tokenization.
// Supported: Sequence, Prepend, Replace (String or Regex), NFC, NFD, Strip, StripAccents,
// Precompiled (SentencePiece's charsmap, precompiled.h).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

class RegexScratch;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string_view text, RegexScratch& scratch) const = 0;
};

// nullptr for a JSON null. Throws an input error naming `loc` for unknown types.
std::unique_ptr<Normalizer> make_normalizer(const tokenizer_json::Json& config,
                                            const tokenizer_json::Loc& loc);

// The Precompiled normalizer of a raw (decoded) charsmap; nullptr for an empty one. Throws an
// input error naming `loc` for a malformed one.
std::unique_ptr<Normalizer> make_precompiled_normalizer(std::string charsmap,
                                                        const tokenizer_json::Loc& loc);

// A "pattern" object ({"String": s} or {"Regex": r}) replaced everywhere by `content`, as
// JavaScript's replaceAll does. Shared by the Replace normalizer and the Replace decoder.
class PatternReplacer {
 public:
  PatternReplacer(const tokenizer_json::Json& pattern, std::string content,
                  const tokenizer_json::Loc& loc);
  ~PatternReplacer();
  PatternReplacer(PatternReplacer&&) noexcept;
  std::string apply(std::string_view text, RegexScratch& scratch) const;

 private:
  std::string literal_;
  std::unique_ptr<class Regex> regex_;
  std::string content_;
};

}  // namespace fitlm
