// Jinja lexer: splits a template into text and tag tokens, applying whitespace control the way
// Jinja does with transformers' settings (trim_blocks=True, lstrip_blocks=True,
// keep_trailing_newline=False) plus the `-` and `+` markers on tags.
#pragma once

#include <string>
#include <vector>

namespace fitlm::jinja {

enum class TokenType {
  kText,        // literal template text (already whitespace-trimmed)
  kPrintBegin,  // {{
  kPrintEnd,    // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // value is the decoded literal
  kInt,
  kFloat,
  kOp,  // punctuation and operators: == != <= >= // ** + - * / % ~ | . , : ( ) [ ] { } = < >
  kEnd,
};

struct Token {
  TokenType type;
  std::string value;
  int line;
};

const char* token_type_name(TokenType t);

// Throws fitlm::Error (component "chat_template") on an unterminated tag or string, or a
// character that cannot start a token, naming the line.
std::vector<Token> tokenize(const std::string& source);

}  // namespace fitlm::jinja
