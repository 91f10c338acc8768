// Unigram: the vocab trie and the Viterbi of HF tokenizers' encode_optimized (see unigram.h).
#include "fitlm/text/unigram.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "fitlm/core/error.h"
#include "fitlm/text/unicode.h"

namespace fitlm {

using tokenizer_json::Json;
using tokenizer_json::Loc;

namespace {
constexpr double kUnkPenalty = 10.0;  // tokenizers' K_UNK_PENALTY (SentencePiece's kUnkPenalty)
}  // namespace

UnigramModel::UnigramModel(const Json& model, const Loc& loc, Vocab& vocab) {
  const Json& v = tokenizer_json::require_array(model, "vocab", loc);
  if (v.empty()) tokenizer_json::fail(loc / "vocab", "empty vocabulary");
  if (static_cast<int64_t>(v.size()) > vocab.id_limit)
    tokenizer_json::fail(loc / "vocab", fmt::format("{} pieces: more than the {} ids allowed",
                                                    v.size(), vocab.id_limit));
  pieces_.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& e = v[i];
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
      tokenizer_json::fail((loc / "vocab").at(i),
                           "expected [piece, score], found " + clip(e.dump()));
    const double score = e[1].get<double>();
    if (!std::isfinite(score))
      tokenizer_json::fail((loc / "vocab").at(i), "score is not a finite number");
    pieces_.push_back({e[0].get<std::string>(), score});
  }
  auto it = model.find("unk_id");
  if (it != model.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
        it->get<int64_t>() >= static_cast<int64_t>(pieces_.size()))
      tokenizer_json::fail(loc / "unk_id", fmt::format("expected an integer in [0, {}), found {}",
                                                       pieces_.size(), clip(it->dump())));
    unk_id_ = static_cast<int32_t>(it->get<int64_t>());
  }
  byte_fallback_ = tokenizer_json::optional_bool(model, "byte_fallback", loc, false);
  build(loc.file, vocab);
}

UnigramModel::UnigramModel(std::vector<Piece> pieces, std::optional<int32_t> unk_id,
                           bool byte_fallback, const std::string& source, Vocab& vocab)
    : pieces_(std::move(pieces)), unk_id_(unk_id), byte_fallback_(byte_fallback) {
  build(source, vocab);
}

void UnigramModel::build(const std::string& source, Vocab& vocab) {
  source_ = source;
  for (size_t i = 0; i < pieces_.size(); ++i) vocab.set(pieces_[i].text, static_cast<int32_t>(i));
  if (unk_id_) unk_token_ = pieces_[static_cast<size_t>(*unk_id_)].text;

  double min_score = std::numeric_limits<double>::infinity();
  for (const Piece& p : pieces_) min_score = std::min(min_score, p.score);
  unk_score_ = min_score - kUnkPenalty;

  std::fill(std::begin(root_children_), std::end(root_children_), -1);
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  node_id_.assign(1, -1);
  edges_.reserve(pieces_.size() * 2);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const std::string& t = pieces_[i].text;
    if (t.empty()) continue;  // matches nothing
    int32_t node = 0;
    for (unsigned char c : t) {
      int32_t next = child(node, c);
      if (next < 0) {
        next = static_cast<int32_t>(node_id_.size());
        node_id_.push_back(-1);
        if (node == 0)
          root_children_[c] = next;
        else
          edges_.emplace((static_cast<uint64_t>(node) << 8) | c, next);
      }
      node = next;
    }
    node_id_[static_cast<size_t>(node)] = static_cast<int32_t>(i);  // a later duplicate wins
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
      auto hex = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      };
      const int hi = hex(t[3]), lo = hex(t[4]);
      if (hi >= 0 && lo >= 0) byte_ids_[hi * 16 + lo] = static_cast<int32_t>(i);
    }
  }
}

int32_t UnigramModel::child(int32_t node, uint8_t byte) const {
  if (node == 0) return root_children_[byte];
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

void UnigramModel::viterbi(std::string_view word, UnigramScratch& s) const {
  const size_t n = word.size();
  s.best.assign(n + 1, UnigramScratch::Best{});
  s.best[0].start = 0;
  for (size_t start = 0; start < n;) {
    const double here = s.best[start].score;
    const size_t char_len = unicode::utf8_length(static_cast<unsigned char>(word[start]));
    bool has_single = false;
    int32_t node = 0;
    for (size_t end = start; end < n;) {
      node = child(node, static_cast<uint8_t>(word[end]));
      if (node < 0) break;
      ++end;
      const int32_t id = node_id_[static_cast<size_t>(node)];
      if (id < 0) continue;
      const double score = here + pieces_[static_cast<size_t>(id)].score;
      UnigramScratch::Best& target = s.best[end];
      if (target.start < 0 || score > target.score)
        target = {score, static_cast<int32_t>(start), id};
      if (end - start == char_len) has_single = true;
    }
    if (!has_single) {
      if (!unk_id_)
        throw_input_error("tokenizer",
                          "{}: an unknown character needs the Unigram model's unk_id, which is "
                          "missing",
                          clip_path(source_));
      const double score = here + unk_score_;
      UnigramScratch::Best& target = s.best[start + char_len];
      if (target.start < 0 || score > target.score)
        target = {score, static_cast<int32_t>(start), *unk_id_};
    }
    start += char_len;
  }
  // Backtrack; pieces come out last first, then are reversed. Unknown runs are fused.
  s.pieces.clear();
  bool in_unk = false;
  for (size_t end = n; end > 0;) {
    const UnigramScratch::Best& b = s.best[end];
    const auto begin = static_cast<uint32_t>(b.start);
    const bool unk = unk_id_ && b.id == *unk_id_;
    if (unk && in_unk)
      s.pieces.back().first = begin;
    else
      s.pieces.emplace_back(begin, static_cast<uint32_t>(end));
    in_unk = unk;
    end = begin;
  }
  std::reverse(s.pieces.begin(), s.pieces.end());
}

void UnigramModel::encode_word(std::string_view word, UnigramScratch& s,
                               std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  viterbi(word, s);
  for (auto [b, e] : s.pieces) {
    const UnigramScratch::Best& best = s.best[e];
    const std::string_view piece = word.substr(b, e - b);
    // tokenizers looks the piece string up: the unk piece matched literally is unk_id itself.
    if (!(unk_id_ && best.id == *unk_id_) || piece == pieces_[static_cast<size_t>(*unk_id_)].text) {
      ids.push_back(best.id);
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (size_t i = b; all_bytes && i < e; ++i)
      all_bytes = byte_ids_[static_cast<unsigned char>(word[i])] >= 0;
    if (all_bytes) {
      for (size_t i = b; i < e; ++i) ids.push_back(byte_ids_[static_cast<unsigned char>(word[i])]);
    } else {
      ids.push_back(*unk_id_);
    }
  }
}

std::vector<std::string> UnigramModel::segment(std::string_view word) const {
  std::vector<std::string> out;
  if (word.empty()) return out;
  UnigramScratch s;
  viterbi(word, s);
  for (auto [b, e] : s.pieces) out.emplace_back(word.substr(b, e - b));
  return out;
}

}  // namespace fitlm
