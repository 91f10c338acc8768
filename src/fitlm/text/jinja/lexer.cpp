// Jinja lexer with Jinja's own whitespace rules (jinja2/lexer.py), not a regex preprocessing pass:
// lstrip_blocks only removes spaces that sit alone before a {% or {# on their line, trim_blocks
// removes the single newline right after %} or #} (never after }}), and `-` strips all whitespace.
#include "fitlm/text/jinja/lexer.h"

#include <cstring>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/value.h"

namespace fitlm::jinja {

const char* token_type_name(TokenType t) {
  switch (t) {
    case TokenType::kText: return "text";
    case TokenType::kPrintBegin: return "'{{'";
    case TokenType::kPrintEnd: return "'}}'";
    case TokenType::kBlockBegin: return "'{%'";
    case TokenType::kBlockEnd: return "'%}'";
    case TokenType::kName: return "name";
    case TokenType::kString: return "string";
    case TokenType::kInt: return "integer";
    case TokenType::kFloat: return "float";
    case TokenType::kOp: return "operator";
    case TokenType::kEnd: return "end of template";
  }
  return "?";
}

namespace {

bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) : src_(normalize(source)) {}

  std::vector<Token> run() {
    bool strip_next_text = false;  // the previous tag ended with `-`
    bool line_starting = true;     // the text begins a line (template start or after a trimmed \n)
    while (pos_ < src_.size()) {
      size_t tag = find_tag(pos_);
      std::string text = src_.substr(pos_, (tag == std::string::npos ? src_.size() : tag) - pos_);
      const int text_line = line_;
      count_lines(pos_, pos_ + text.size());
      if (strip_next_text) text = py_strip(text, true, false, nullptr);
      if (tag != std::string::npos) {
        const char kind = src_[tag + 1];  // '{' print, '%' block, '#' comment
        const char marker = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
        if (marker == '-') {
          text = py_strip(text, false, true, nullptr);
        } else if (kind != '{' && marker != '+') {
          const size_t l_pos = text.rfind('\n') + 1;  // npos + 1 == 0
          if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
              text.find_first_not_of(" \t\v\f\r", l_pos) == std::string::npos)
            text.resize(l_pos);
        }
      }
      if (!text.empty()) tokens_.push_back({TokenType::kText, std::move(text), text_line});
      if (tag == std::string::npos) break;
      pos_ = tag;
      const TagEnd end = src_[tag + 1] == '#' ? lex_comment() : lex_tag();
      strip_next_text = end.strip;
      line_starting = false;
      if (!end.strip && end.trim && pos_ < src_.size() && src_[pos_] == '\n') {
        ++pos_;
        ++line_;
        line_starting = true;
      }
    }
    tokens_.push_back({TokenType::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  struct TagEnd {
    bool strip;  // `-` before the closing delimiter
    bool trim;   // a block or comment without `+`: trim_blocks applies
  };

  // Jinja normalizes \r\n and \r to \n and drops one trailing newline (keep_trailing_newline).
  static std::string normalize(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        out += '\n';
        if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
      } else {
        out += s[i];
      }
    }
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && std::strchr("{%#", src_[i + 1]) && src_[i + 1] != '\0') return i;
    }
    return std::string::npos;
  }

  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) line_ += src_[i] == '\n';
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw_input_error("chat_template", "{} at line {}", what, line_);
  }

  TagEnd lex_comment() {
    const size_t close = src_.find("#}", pos_ + 2);
    if (close == std::string::npos) fail("unterminated comment '{#'");
    count_lines(pos_, close);
    const char before = close > pos_ + 2 ? src_[close - 1] : '\0';
    pos_ = close + 2;
    return {before == '-', before != '+'};
  }

  TagEnd lex_tag() {
    const bool block = src_[pos_ + 1] == '%';
    const int begin_line = line_;
    tokens_.push_back({block ? TokenType::kBlockBegin : TokenType::kPrintBegin, "", line_});
    const size_t first_token = tokens_.size();
    pos_ += 2;
    if (pos_ < src_.size() && (src_[pos_] == '-' || src_[pos_] == '+')) ++pos_;
    const char* close = block ? "%}" : "}}";
    int braces = 0;  // `{{ {'a': 1} }}`: a `}}` inside a dict literal does not close the tag
    while (true) {
      while (pos_ < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos_]))) {
        line_ += src_[pos_] == '\n';
        ++pos_;
      }
      if (pos_ >= src_.size())
        throw_input_error("chat_template", "unterminated '{}' opened at line {}",
                          block ? "{%" : "{{", begin_line);
      if (braces == 0) {
        for (const char m : {'-', '+', '\0'}) {
          const std::string end = m ? std::string(1, m) + close : std::string(close);
          if (src_.compare(pos_, end.size(), end) == 0 && !(m == '+' && !block)) {
            pos_ += end.size();
            tokens_.push_back({block ? TokenType::kBlockEnd : TokenType::kPrintEnd, "", line_});
            if (block && tokens_.size() == first_token + 2 && tokens_[first_token].value == "raw")
              throw_input_error("chat_template", "unsupported Jinja construct 'raw' at line {}",
                                begin_line);
            return {m == '-', block && m != '+'};
          }
        }
      }
      lex_token(braces);
    }
  }

  void lex_token(int& braces) {
    const char c = src_[pos_];
    if (is_name_start(c)) {
      const size_t start = pos_;
      while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
      tokens_.push_back({TokenType::kName, src_.substr(start, pos_ - start), line_});
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      lex_number();
    } else if (c == '\'' || c == '"') {
      lex_string(c);
    } else {
      static const char* kTwo[] = {"==", "!=", "<=", ">=", "//", "**"};
      for (const char* op : kTwo) {
        if (src_.compare(pos_, 2, op) == 0) {
          tokens_.push_back({TokenType::kOp, op, line_});
          pos_ += 2;
          return;
        }
      }
      if (!std::strchr("+-*/%~|.,:()[]{}=<>", c) || c == '\0')
        fail(std::string("unexpected character '") + c + "' in a tag");
      braces += c == '{' ? 1 : c == '}' ? -1 : 0;
      tokens_.push_back({TokenType::kOp, std::string(1, c), line_});
      ++pos_;
    }
  }

  void lex_number() {
    const size_t start = pos_;
    bool is_float = false;
    const auto digits = [&] {
      while (pos_ < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
        ++pos_;
    };
    digits();
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        is_float = true;
        pos_ = p;
        digits();
      }
    }
    std::string text = src_.substr(start, pos_ - start);
    std::erase(text, '_');
    tokens_.push_back({is_float ? TokenType::kFloat : TokenType::kInt, text, line_});
  }

  // Python string literal escapes, as Jinja decodes them ("unicode-escape"); unknown escapes
  // such as \d keep their backslash.
  void lex_string(char quote) {
    const int start_line = line_;
    std::string out;
    ++pos_;
    while (true) {
      if (pos_ >= src_.size())
        throw_input_error("chat_template", "unterminated string starting at line {}", start_line);
      const char c = src_[pos_++];
      if (c == quote) break;
      line_ += c == '\n';
      if (c != '\\' || pos_ >= src_.size()) {
        out += c;
        continue;
      }
      const char e = src_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + n > src_.size() ||
              src_.substr(pos_, n).find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            fail(std::string("invalid \\") + e + " escape in a string");
          append_utf8(out, static_cast<char32_t>(std::stoul(src_.substr(pos_, n), nullptr, 16)));
          pos_ += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            unsigned v = e - '0';
            for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7';
                 ++k)
              v = v * 8 + (src_[pos_++] - '0');
            append_utf8(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back({TokenType::kString, std::move(out), start_line});
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) {
  return Lexer(source).run();
}

}  // namespace fitlm::jinja
