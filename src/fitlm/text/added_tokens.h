// Added tokens (tokenizer.json "added_tokens"): matched in the raw text before normalization
// and BPE, longest match first, scanning left to right (transformers.js's DictionarySplitter).
//
// Flags: lstrip/rstrip trim whitespace off the neighbouring sections (as transformers.js does);
// single_word only matches when not inside a word and normalized tokens are matched in the
// normalized text (tokenizers' semantics; transformers.js ignores both flags, so parity holds for
// files where they are false, which is every supported model family's).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A piece of text: either an added token (token >= 0, index into the token list) or plain text.
struct Section {
  std::string_view text;
  int32_t token = -1;
};

// A byte trie over token contents.
class AddedTokenSplitter {
 public:
  // `tokens`: the ones this splitter matches (indices into `all` are kept in Section::token).
  AddedTokenSplitter(const std::vector<AddedToken>& all, bool match_normalized);
  bool empty() const { return nodes_.size() <= 1; }
  // Splits `text` into sections; consecutive plain text stays in one section.
  void split(std::string_view text, std::vector<Section>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t token = -1;
  };
  int32_t child(int32_t node, uint8_t byte) const;
  bool word_boundary_ok(std::string_view text, size_t begin, size_t end) const;

  const std::vector<AddedToken>* all_;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

// Ids must lie in [0, id_limit) (Vocab::id_limit).
std::vector<AddedToken> parse_added_tokens(const tokenizer_json::Json& root,
                                           const tokenizer_json::Loc& loc, int64_t id_limit);

}  // namespace fitlm
