// The BPE model of tokenizer.json: vocab, ranked merges, and the word-level merge loop.
//
// Merging follows tokenizers/transformers.js exactly: repeatedly apply the lowest-ranked merge,
// leftmost first, using a heap over a linked list of symbols (O(n log n) per word). Merge
// operands are strings, so symbols are interned strings; a pair of symbol ids maps to
// (rank, merged symbol).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

// Hash that lets unordered_map<std::string, ...> be probed with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Token string <-> id, the model vocab overlaid with added tokens (as transformers.js does).
struct Vocab {
  TokenMap token_to_id;
  std::vector<std::string> id_to_token;  // "" for ids no token has
  std::vector<uint8_t> has_token;        // 1 where id_to_token is defined
  // Ids must lie in [0, id_limit): id_to_token is sized by the largest id, so the limit bounds
  // the memory a tokenizer.json can make us allocate (Tokenizer::Impl::load sets it).
  int64_t id_limit = INT32_MAX;

  std::optional<int32_t> find(std::string_view token) const {
    auto it = token_to_id.find(token);
    if (it == token_to_id.end()) return std::nullopt;
    return it->second;
  }
  void set(const std::string& token, int32_t id);
};

// Per-thread memo of word -> ids (words shorter than kMaxCachedWord bytes).
struct BpeCache {
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> words;
};

class BpeModel {
 public:
  // Reads tokenizer.json "model" into `vocab` (filled with the model vocab here; added tokens
  // are overlaid by the caller afterwards).
  BpeModel(const tokenizer_json::Json& model, const tokenizer_json::Loc& loc, Vocab& vocab);

  // Called once the vocab is final (after added tokens): resolves unk and byte-fallback ids.
  void finalize(const Vocab& vocab);

  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, const Vocab& vocab, BpeCache& cache,
                   std::vector<int32_t>& ids) const;

  // Collapses runs of unknown-token ids, when the model sets fuse_unk (applied per section).
  void fuse_unk(std::vector<int32_t>& ids, size_t begin) const;

  const std::optional<std::string>& unk_token() const { return unk_token_; }
  const std::string& end_of_word_suffix() const { return end_of_word_suffix_; }

  // Exposed for tests: the merged pieces of a word before vocab lookup.
  std::vector<std::string> merge_word(std::string_view word) const;

 private:
  static constexpr uint32_t kNoSymbol = UINT32_MAX;
  static constexpr size_t kMaxCachedWord = 256;
  struct Merge {
    uint32_t rank;
    uint32_t result;
  };
  struct Symbol {
    uint32_t sym;         // interned id, kNoSymbol for a character no merge mentions
    uint32_t begin, len;  // bytes of the current piece in the word
    int32_t prev, next;
  };

  uint32_t intern(const std::string& s);
  uint32_t find_symbol(std::string_view s) const;
  // Runs the merge loop; `symbols` ends as the linked list of final pieces (len 0 = removed).
  void merge(std::string_view word, std::vector<Symbol>& symbols) const;
  void emit(std::string_view piece, uint32_t sym, const Vocab& vocab,
            std::vector<int32_t>& ids) const;

  TokenMap symbol_ids_;
  std::vector<std::string> symbol_strings_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<uint32_t> bmp_symbol_;       // code point < 0x10000 -> symbol of that character
  std::vector<int32_t> symbol_token_ids_;  // vocab id of each symbol string, -1 if none

  std::optional<std::string> unk_token_;
  std::optional<int32_t> unk_id_;
  std::string end_of_word_suffix_;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t byte_ids_[256];  // <0xXX> token ids, -1 when absent
};

}  // namespace fitlm
