// BPE: loading vocab + merges, and the heap-based merge loop over one word.
#include "fitlm/text/bpe.h"

#include <fmt/format.h>

#include <queue>

#include "fitlm/core/error.h"
#include "fitlm/text/unicode.h"

namespace fitlm {

using tokenizer_json::Json;
using tokenizer_json::Loc;

void Vocab::set(const std::string& token, int32_t id) {
  token_to_id[token] = id;
  if (static_cast<size_t>(id) >= id_to_token.size()) {
    id_to_token.resize(static_cast<size_t>(id) + 1);
    has_token.resize(static_cast<size_t>(id) + 1, 0);
  }
  id_to_token[static_cast<size_t>(id)] = token;
  has_token[static_cast<size_t>(id)] = 1;
}

BpeModel::BpeModel(const Json& model, const Loc& loc, Vocab& vocab) {
  const Json& v = tokenizer_json::require(model, "vocab", loc);
  if (!v.is_object()) tokenizer_json::fail(loc / "vocab", "expected an object {token: id}");
  for (auto it = v.begin(); it != v.end(); ++it) {
    const Json& id = it.value();
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab.id_limit)
      tokenizer_json::fail(loc / "vocab",
                           fmt::format("token \"{}\" has id {}: expected an integer in [0, {})",
                                       clip(it.key()), clip(id.dump()), vocab.id_limit));
    vocab.set(it.key(), static_cast<int32_t>(id.get<int64_t>()));
  }

  const Json& merges = tokenizer_json::require_array(model, "merges", loc);
  merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    std::string a, b;
    if (m.is_string()) {
      // Old format "a b". Like transformers.js (split(" ", 2)), text after a second space is
      // ignored.
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos)
        tokenizer_json::fail((loc / "merges").at(i),
                             "expected \"left right\", found \"" + clip(s) + "\"");
      a = s.substr(0, sp);
      const size_t sp2 = s.find(' ', sp + 1);
      b = s.substr(sp + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp - 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      tokenizer_json::fail((loc / "merges").at(i),
                           "expected a \"left right\" string or a [left, right] pair");
    }
    const uint32_t sa = intern(a), sb = intern(b), sr = intern(a + b);
    // Duplicate pairs: the last rank wins, as in transformers.js's Map.
    merges_[(uint64_t{sa} << 32) | sb] = {static_cast<uint32_t>(i), sr};
  }

  bmp_symbol_.assign(0x10000, kNoSymbol);
  for (uint32_t s = 0; s < symbol_strings_.size(); ++s) {
    const std::string& str = symbol_strings_[s];
    if (str.empty()) continue;
    size_t i = 0;
    const char32_t cp = unicode::next_code_point(str, i);
    if (i == str.size() && cp < 0x10000) bmp_symbol_[cp] = s;
  }

  unk_token_ = tokenizer_json::optional_string(model, "unk_token", loc);
  end_of_word_suffix_ =
      tokenizer_json::optional_string(model, "end_of_word_suffix", loc).value_or("");
  byte_fallback_ = tokenizer_json::optional_bool(model, "byte_fallback", loc, false);
  ignore_merges_ = tokenizer_json::optional_bool(model, "ignore_merges", loc, false);
  fuse_unk_ = tokenizer_json::optional_bool(model, "fuse_unk", loc, false);
  // continuing_subword_prefix and dropout are ignored, as transformers.js ignores them (dropout
  // only matters in training; the prefix is used by WordPiece-style BPE models, not by LLMs).
}

void BpeModel::finalize(const Vocab& vocab) {
  unk_id_ = unk_token_ ? vocab.find(*unk_token_) : std::nullopt;
  for (int b = 0; b < 256; ++b)
    byte_ids_[b] = vocab.find(fmt::format("<0x{:02X}>", b)).value_or(-1);
  symbol_token_ids_.resize(symbol_strings_.size());
  for (size_t s = 0; s < symbol_strings_.size(); ++s)
    symbol_token_ids_[s] = vocab.find(symbol_strings_[s]).value_or(-1);
}

uint32_t BpeModel::intern(const std::string& s) {
  auto [it, inserted] = symbol_ids_.try_emplace(s, static_cast<int32_t>(symbol_strings_.size()));
  if (inserted) symbol_strings_.push_back(s);
  return static_cast<uint32_t>(it->second);
}

uint32_t BpeModel::find_symbol(std::string_view s) const {
  auto it = symbol_ids_.find(s);
  return it == symbol_ids_.end() ? kNoSymbol : static_cast<uint32_t>(it->second);
}

void BpeModel::merge(std::string_view word, std::vector<Symbol>& symbols) const {
  symbols.clear();
  for (size_t i = 0; i < word.size();) {
    const size_t begin = i;
    const char32_t cp = unicode::next_code_point(word, i);
    // The end-of-word suffix belongs to the last character's initial symbol.
    if (!end_of_word_suffix_.empty() && i + end_of_word_suffix_.size() == word.size())
      i = word.size();
    const uint32_t sym =
        (i - begin == unicode::utf8_length(static_cast<unsigned char>(word[begin])) && cp < 0x10000)
            ? bmp_symbol_[cp]
            : find_symbol(word.substr(begin, i - begin));
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({sym, static_cast<uint32_t>(begin), static_cast<uint32_t>(i - begin), n - 1,
                       static_cast<int32_t>(i < word.size() ? n + 1 : -1)});
  }
  if (symbols.size() < 2) return;

  // Candidates ordered by (rank, position of the left symbol); stale ones are skipped on pop.
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto rank_of = [&](int32_t left) -> const Merge* {
    const int32_t right = symbols[left].next;
    if (right < 0 || symbols[left].sym == kNoSymbol || symbols[right].sym == kNoSymbol)
      return nullptr;
    auto it = merges_.find((uint64_t{symbols[left].sym} << 32) | symbols[right].sym);
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto push = [&](int32_t left) {
    if (const Merge* m = rank_of(left)) queue.push({m->rank, left});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0) continue;
    const Merge* m = rank_of(top.pos);
    if (!m || m->rank != top.rank) continue;  // the pair changed since this was queued
    Symbol& right = symbols[left.next];
    left.sym = m->result;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
}

void BpeModel::emit(std::string_view piece, uint32_t sym, const Vocab& vocab,
                    std::vector<int32_t>& ids) const {
  const int32_t direct = sym != kNoSymbol ? symbol_token_ids_[sym] : vocab.find(piece).value_or(-1);
  if (direct >= 0) {
    ids.push_back(direct);
    return;
  }
  if (byte_fallback_) {
    bool all = true;
    for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
    if (all) {
      for (unsigned char b : piece) ids.push_back(byte_ids_[b]);
      return;
    }
  }
  // No unk token: transformers.js yields an undefined id, which we drop.
  if (unk_id_) ids.push_back(*unk_id_);
}

void BpeModel::encode_word(std::string_view word, const Vocab& vocab, BpeCache& cache,
                           std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto id = vocab.find(word)) {
      ids.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWord;
  if (cacheable) {
    auto it = cache.words.find(word);
    if (it != cache.words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::string with_suffix;
  if (!end_of_word_suffix_.empty()) word = with_suffix = std::string(word) + end_of_word_suffix_;
  std::vector<Symbol> symbols;
  merge(word, symbols);
  const size_t start = ids.size();
  for (int32_t i = 0; i >= 0 && !symbols.empty(); i = symbols[i].next)
    emit(word.substr(symbols[i].begin, symbols[i].len), symbols[i].sym, vocab, ids);
  if (cacheable) {
    if (cache.words.size() > 200000) cache.words.clear();  // bound memory on endless corpora
    std::string key(word.substr(0, word.size() - end_of_word_suffix_.size()));
    cache.words.emplace(std::move(key),
                        std::vector<int32_t>(ids.begin() + static_cast<long>(start), ids.end()));
  }
}

void BpeModel::fuse_unk(std::vector<int32_t>& ids, size_t begin) const {
  if (!fuse_unk_ || !unk_id_) return;
  size_t out = begin;
  for (size_t i = begin; i < ids.size(); ++i) {
    if (ids[i] == *unk_id_ && out > begin && ids[out - 1] == *unk_id_) continue;
    ids[out++] = ids[i];
  }
  ids.resize(out);
}

std::vector<std::string> BpeModel::merge_word(std::string_view word) const {
  std::vector<Symbol> symbols;
  merge(word, symbols);
  std::vector<std::string> pieces;
  for (int32_t i = 0; i >= 0 && !symbols.empty(); i = symbols[i].next)
    pieces.emplace_back(word.substr(symbols[i].begin, symbols[i].len));
  return pieces;
}

}  // namespace fitlm
