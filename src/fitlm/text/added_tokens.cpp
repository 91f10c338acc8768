// Parsing added_tokens and the trie that finds them in text.
#include "fitlm/text/added_tokens.h"

#include <fmt/format.h>

#include <algorithm>

#include "fitlm/core/error.h"
#include "fitlm/text/unicode.h"

namespace fitlm {

using tokenizer_json::Json;
using tokenizer_json::Loc;

std::vector<AddedToken> parse_added_tokens(const Json& root, const Loc& loc, int64_t id_limit) {
  std::vector<AddedToken> tokens;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return tokens;
  if (!it->is_array()) tokenizer_json::fail(loc / "added_tokens", "expected an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& t = (*it)[i];
    const Loc at = (loc / "added_tokens").at(i);
    AddedToken tok;
    tok.content = tokenizer_json::require_string(t, "content", at);
    if (tok.content.empty()) tokenizer_json::fail(at / "content", "empty token");
    const Json& id = tokenizer_json::require(t, "id", at);
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= id_limit)
      tokenizer_json::fail(at / "id",
                           fmt::format("token \"{}\" has id {}: expected an integer in [0, {})",
                                       clip(tok.content), clip(id.dump()), id_limit));
    tok.id = static_cast<int32_t>(id.get<int64_t>());

    tok.single_word = tokenizer_json::optional_bool(t, "single_word", at, false);
    tok.lstrip = tokenizer_json::optional_bool(t, "lstrip", at, false);
    tok.rstrip = tokenizer_json::optional_bool(t, "rstrip", at, false);
    tok.normalized = tokenizer_json::optional_bool(t, "normalized", at, false);
    tok.special = tokenizer_json::optional_bool(t, "special", at, false);
    tokens.push_back(std::move(tok));
  }
  return tokens;
}

AddedTokenSplitter::AddedTokenSplitter(const std::vector<AddedToken>& all, bool match_normalized)
    : all_(&all), nodes_(1) {
  for (size_t t = 0; t < all.size(); ++t) {
    if (all[t].normalized != match_normalized) continue;
    int32_t node = 0;
    for (unsigned char b : all[t].content) {
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& ch = nodes_[static_cast<size_t>(node)].children;
        ch.insert(std::lower_bound(ch.begin(), ch.end(), std::pair<uint8_t, int32_t>{b, -1}),
                  {b, next});
      }
      node = next;
    }
    nodes_[static_cast<size_t>(node)].token = static_cast<int32_t>(t);  // later duplicates win
    first_byte_[static_cast<unsigned char>(all[t].content[0])] = true;
  }
}

int32_t AddedTokenSplitter::child(int32_t node, uint8_t byte) const {
  const auto& ch = nodes_[static_cast<size_t>(node)].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::pair<uint8_t, int32_t>{byte, -1});
  return it != ch.end() && it->first == byte ? it->second : -1;
}

namespace {
// A word character for single_word: ASCII alphanumerics, '_', and any non-ASCII non-space
// character (a close approximation of Unicode alphanumerics that needs no tables).
bool is_word_char(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
         (c >= 0x80 && !unicode::is_js_whitespace(c));
}
}  // namespace

bool AddedTokenSplitter::word_boundary_ok(std::string_view text, size_t begin, size_t end) const {
  if (begin > 0) {
    size_t s = begin - 1;
    while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
    if (is_word_char(unicode::next_code_point(text, s))) return false;
  }
  if (end < text.size()) {
    size_t s = end;
    if (is_word_char(unicode::next_code_point(text, s))) return false;
  }
  return true;
}

void AddedTokenSplitter::split(std::string_view text, std::vector<Section>& out) const {
  size_t start = 0, i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    int32_t node = 0, match = -1;
    size_t match_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      if (nodes_[static_cast<size_t>(node)].token >= 0) {
        match = nodes_[static_cast<size_t>(node)].token;  // keep the longest
        match_end = j + 1;
      }
    }
    if (match >= 0 && (*all_)[static_cast<size_t>(match)].single_word &&
        !word_boundary_ok(text, i, match_end))
      match = -1;
    if (match < 0) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({text.substr(i, match_end - i), match});
    i = start = match_end;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
}

}  // namespace fitlm
