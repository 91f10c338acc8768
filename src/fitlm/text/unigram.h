// The Unigram model of tokenizer.json ({"type": "Unigram", "unk_id", "vocab": [[piece, score],
// ...], "byte_fallback"}): SentencePiece's Viterbi segmentation, exactly as HF tokenizers'
// models/unigram/model.rs `encode_optimized` runs it (FORMATS.md section 11):
//   - over byte offsets, for each character start s (ascending) and each vocab piece that is a
//     prefix of the text at s (a byte trie), best[s + len] takes best[s] + score when unset or
//     strictly greater, so ties keep the earlier start;
//   - when no piece of exactly one character starts at s, an unknown edge of one character with
//     score min_score - 10;
//   - the backtrack fuses consecutive unknown pieces into one; an unknown piece becomes its
//     <0xXX> byte tokens when byte_fallback is set and all exist, else unk_id.
// Scores are doubles, as in tokenizers and transformers.js (SentencePiece adds floats).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fitlm/text/bpe.h"
#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

// Per-thread Viterbi buffers.
struct UnigramScratch {
  struct Best {
    double score = 0;
    int32_t start = -1;  // byte offset the best piece ending here starts at; -1 = unset
    int32_t id = -1;
  };
  std::vector<Best> best;
  std::vector<std::pair<uint32_t, uint32_t>> pieces;  // [begin, end) of the chosen pieces
};

class UnigramModel {
 public:
  struct Piece {
    std::string text;
    double score = 0;
  };

  // Reads tokenizer.json "model" into `vocab` (ids = positions in the vocab array).
  UnigramModel(const tokenizer_json::Json& model, const tokenizer_json::Loc& loc, Vocab& vocab);
  // From pieces directly (SentencePiece .model files); fills `vocab` likewise.
  UnigramModel(std::vector<Piece> pieces, std::optional<int32_t> unk_id, bool byte_fallback,
               const std::string& source, Vocab& vocab);

  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, UnigramScratch& scratch, std::vector<int32_t>& ids) const;

  // The segmentation before id lookup (unknown runs fused), for tests.
  std::vector<std::string> segment(std::string_view word) const;

  const std::optional<std::string>& unk_token() const { return unk_token_; }
  double unk_score() const { return unk_score_; }

 private:
  void build(const std::string& source, Vocab& vocab);
  void viterbi(std::string_view word, UnigramScratch& s) const;
  int32_t child(int32_t node, uint8_t byte) const;

  std::vector<Piece> pieces_;
  std::optional<int32_t> unk_id_;
  std::optional<std::string> unk_token_;
  std::string source_;  // the file, for errors
  bool byte_fallback_ = false;
  double unk_score_ = 0;
  int32_t byte_ids_[256];  // <0xXX> piece ids, -1 when absent

  // Byte trie over the pieces: the root's children in a table, deeper edges in a hash map
  // keyed by (node << 8 | byte); node_id_ is the piece id ending at a node (-1 if none).
  int32_t root_children_[256];
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> node_id_;
};

}  // namespace fitlm
