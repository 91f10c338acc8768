// PCRE2 wrapper for tokenizer.json regexes, with transformers.js (JavaScript) semantics.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "fitlm/text/pre_tokenizer_regex.h"

#include <pcre2.h>

#include <stdexcept>

#include "fitlm/text/unicode.h"

namespace fitlm {
namespace {

// JavaScript's \s: WhiteSpace (TAB VT FF SP NBSP ZWNBSP, any Zs) and LineTerminator (LF CR LS PS).
constexpr std::string_view kJsSpace = "\\t\\n\\x0B\\f\\r\\x{FEFF}\\x{2028}\\x{2029}\\p{Zs}";

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

}  // namespace

std::string translate_js_regex(std::string_view js_pattern) {
  std::string p(js_pattern);
  // transformers.js rewrites these before compiling (PROBLEMATIC_REGEX_MAP); doing the same keeps
  // e.g. U+017F (long s) from matching 's' under Unicode case folding.
  replace_all(p, "(?i:'s|'t|'re|'ve|'m|'ll|'d)",
              "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))");
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      switch (e) {
        case 's':
          out += in_class ? std::string(kJsSpace) : "[" + std::string(kJsSpace) + "]";
          continue;
        case 'S':
          if (!in_class) {
            out += "[^" + std::string(kJsSpace) + "]";
            continue;
          }
          break;  // negated class inside a class: keep PCRE2's meaning
        case 'd': out += in_class ? "0-9" : "[0-9]"; continue;
        case 'D':
          if (!in_class) {
            out += "[^0-9]";
            continue;
          }
          break;
        case 'w': out += in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; continue;
        case 'W':
          if (!in_class) {
            out += "[^A-Za-z0-9_]";
            continue;
          }
          break;
        case 'u':  // \uXXXX (JavaScript, Python) -> \x{XXXX}
          if (i + 4 < p.size()) {
            const std::string hex = p.substr(i + 1, 4);
            if (hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
              out += "\\x{" + hex + "}";
              i += 4;
              continue;
            }
          }
          break;
        default: break;
      }
      out += '\\';
      out += e;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

RegexScratch::RegexScratch() {
  match_data_ = pcre2_match_data_create(16, nullptr);
  auto* mc = pcre2_match_context_create(nullptr);
  // Long whitespace runs and lookaheads need more than PCRE2's default 32 KiB JIT stack.
  auto* stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_jit_stack_assign(mc, nullptr, stack);
  match_context_ = mc;
  jit_stack_ = stack;
}

RegexScratch::~RegexScratch() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  pcre2_match_context_free(static_cast<pcre2_match_context*>(match_context_));
  pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
}

std::unique_ptr<Regex> Regex::compile(std::string_view js_pattern, std::string& error) {
  std::unique_ptr<Regex> r(new Regex());
  r->pattern_ = translate_js_regex(js_pattern);
  int code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* re =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(r->pattern_.data()), r->pattern_.size(),
                    PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
  if (!re) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof(buf));
    error = std::string(reinterpret_cast<char*>(buf)) + " at offset " + std::to_string(offset) +
            " of " + r->pattern_;
    return nullptr;
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT fails
  r->code_ = re;
  return r;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view text, RegexScratch& scratch,
                     std::vector<std::pair<size_t, size_t>>& out) const {
  auto* re = static_cast<pcre2_code*>(code_);
  auto* md = static_cast<pcre2_match_data*>(scratch.match_data());
  auto* mc = static_cast<pcre2_match_context*>(scratch.match_context());
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(re, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {  // e.g. JIT stack exhausted on pathological input
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      throw std::runtime_error(std::string("regex match failed: ") + reinterpret_cast<char*>(buf));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      pos = ov[1];
    } else {  // empty match: JavaScript (u flag) advances by one code point
      if (ov[1] >= text.size()) break;
      pos = ov[1] + unicode::utf8_length(static_cast<unsigned char>(text[ov[1]]));
    }
  }
}

}  // namespace fitlm
