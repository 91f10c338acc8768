// Regexes from tokenizer.json, compiled with PCRE2 (UTF, UCP, JIT) but with the meaning
// transformers.js gives them: JavaScript's \s (no U+0085, plus U+FEFF), ASCII \d and \w, and the
// same rewrite of the `(?i:'s|...)` group that JavaScript cannot parse.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fitlm {

// Per-thread matching state (PCRE2 match data and JIT stack); one per encoding thread.
class RegexScratch {
 public:
  RegexScratch();
  ~RegexScratch();
  RegexScratch(const RegexScratch&) = delete;
  RegexScratch& operator=(const RegexScratch&) = delete;
  void* match_data() const { return match_data_; }
  void* match_context() const { return match_context_; }

 private:
  void* match_data_ = nullptr;
  void* match_context_ = nullptr;
  void* jit_stack_ = nullptr;
};

class Regex {
 public:
  // Translates a JavaScript-flavoured pattern and compiles it; on failure returns nullptr and
  // sets `error`.
  static std::unique_ptr<Regex> compile(std::string_view js_pattern, std::string& error);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches in `text` (valid UTF-8), as [begin, end) byte offsets, in the
  // order String.prototype.matchAll yields them. Empty matches are reported too.
  void find_all(std::string_view text, RegexScratch& scratch,
                std::vector<std::pair<size_t, size_t>>& out) const;

  // The pattern as given to PCRE2 (for tests and error messages).
  const std::string& pcre2_pattern() const { return pattern_; }

 private:
  Regex() = default;
  void* code_ = nullptr;
  std::string pattern_;
};

// Exposed for tests: the JavaScript -> PCRE2 pattern rewrite.
std::string translate_js_regex(std::string_view js_pattern);

}  // namespace fitlm
