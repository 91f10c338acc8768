// Normalizers, with the semantics of transformers.js (which match tokenizers' for these types).
#include "fitlm/text/normalizer.h"

#include <vector>

#include "fitlm/text/pre_tokenizer_regex.h"
#include "fitlm/text/precompiled.h"
#include "fitlm/text/unicode.h"

namespace fitlm {
namespace {

using tokenizer_json::Json;
using tokenizer_json::Loc;

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  std::string normalize(std::string_view text, RegexScratch& scratch) const override {
    std::string s(text);
    for (const auto& p : parts_)
      if (p) s = p->normalize(s, scratch);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string_view text, RegexScratch&) const override {
    return prefix_ + std::string(text);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  explicit ReplaceNormalizer(PatternReplacer r) : replacer_(std::move(r)) {}
  std::string normalize(std::string_view text, RegexScratch& scratch) const override {
    return replacer_.apply(text, scratch);
  }

 private:
  PatternReplacer replacer_;
};

class NfcNormalizer final : public Normalizer {
 public:
  explicit NfcNormalizer(bool compose) : compose_(compose) {}
  std::string normalize(std::string_view text, RegexScratch&) const override {
    return compose_ ? unicode::nfc(text) : unicode::nfd(text);
  }

 private:
  bool compose_;
};

// tokenizers' Strip trims Unicode White_Space (transformers.js's trim also takes U+FEFF and
// not U+0085).
class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string_view text, RegexScratch&) const override {
    if (left_) text = unicode::white_space_trim_start(text);
    if (right_) text = unicode::white_space_trim_end(text);
    return std::string(text);
  }

 private:
  bool left_, right_;
};

// transformers.js removes every \p{M} code point (without decomposing first).
class StripAccentsNormalizer final : public Normalizer {
 public:
  StripAccentsNormalizer() : replacer_(Json{{"Regex", "\\p{M}"}}, "", Loc{}) {}
  std::string normalize(std::string_view text, RegexScratch& scratch) const override {
    return replacer_.apply(text, scratch);
  }

 private:
  PatternReplacer replacer_;
};

class PrecompiledNormalizer final : public Normalizer {
 public:
  explicit PrecompiledNormalizer(PrecompiledCharsmap charsmap) : charsmap_(std::move(charsmap)) {}
  std::string normalize(std::string_view text, RegexScratch& scratch) const override {
    return charsmap_.normalize(text, scratch);
  }

 private:
  PrecompiledCharsmap charsmap_;
};

}  // namespace

std::unique_ptr<Normalizer> make_precompiled_normalizer(std::string charsmap, const Loc& loc) {
  if (charsmap.empty()) return nullptr;  // no rules: the identity
  std::string error;
  auto parsed = PrecompiledCharsmap::parse(std::move(charsmap), error);
  if (!parsed) tokenizer_json::fail(loc, "malformed charsmap: " + error);
  return std::make_unique<PrecompiledNormalizer>(std::move(*parsed));
}

PatternReplacer::PatternReplacer(const Json& pattern, std::string content, const Loc& loc)
    : content_(std::move(content)) {
  if (!pattern.is_object()) tokenizer_json::fail(loc, "expected a pattern object");
  if (auto s = tokenizer_json::optional_string(pattern, "String", loc)) {
    literal_ = *s;
    if (literal_.empty()) tokenizer_json::fail(loc / "String", "empty pattern");
  } else if (auto r = tokenizer_json::optional_string(pattern, "Regex", loc)) {
    std::string error;
    regex_ = Regex::compile(*r, error);
    if (!regex_) tokenizer_json::fail(loc / "Regex", "invalid regex: " + error);
  } else {
    tokenizer_json::fail(loc, "expected {\"String\": ...} or {\"Regex\": ...}");
  }
}

PatternReplacer::~PatternReplacer() = default;
PatternReplacer::PatternReplacer(PatternReplacer&&) noexcept = default;

std::string PatternReplacer::apply(std::string_view text, RegexScratch& scratch) const {
  std::string out;
  out.reserve(text.size());
  if (!regex_) {
    size_t start = 0;
    for (size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, start)) {
      out.append(text.substr(start, pos - start));
      out += content_;
      start = pos + literal_.size();
    }
    out.append(text.substr(start));
    return out;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  regex_->find_all(text, scratch, matches);
  size_t start = 0;
  for (auto [b, e] : matches) {
    out.append(text.substr(start, b - start));
    out += content_;
    start = e;
  }
  out.append(text.substr(start));
  return out;
}

std::unique_ptr<Normalizer> make_normalizer(const Json& config, const Loc& loc) {
  if (config.is_null()) return nullptr;
  const std::string type = tokenizer_json::type_of(config, loc);
  if (type == "Sequence") {
    const Json& list = tokenizer_json::require_array(config, "normalizers", loc);
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i)
      parts.push_back(make_normalizer(list[i], (loc / "normalizers").at(i)));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(
        tokenizer_json::require_string(config, "prepend", loc));
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(
        PatternReplacer(tokenizer_json::require(config, "pattern", loc),
                        tokenizer_json::require_string(config, "content", loc), loc / "pattern"));
  if (type == "NFC") return std::make_unique<NfcNormalizer>(true);
  if (type == "NFD") return std::make_unique<NfcNormalizer>(false);
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(
        tokenizer_json::optional_bool(config, "strip_left", loc, false),
        tokenizer_json::optional_bool(config, "strip_right", loc, false));
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Precompiled") {
    const Loc at = loc / "precompiled_charsmap";
    const auto b64 = tokenizer_json::optional_string(config, "precompiled_charsmap", loc);
    if (!b64 || b64->empty()) return nullptr;
    auto blob = base64_decode(*b64);
    if (!blob) tokenizer_json::fail(at, "invalid base64");
    return make_precompiled_normalizer(std::move(*blob), at);
  }
  // NFKC/NFKD need compatibility tables and Lowercase full Unicode case mapping; none of the
  // supported model families use them, so refuse rather than tokenize differently.
  tokenizer_json::unsupported(config, loc, "normalizer");
}

}  // namespace fitlm
