// Test doubles for the dataset code: a tiny tokenizer whose pieces are special tokens, runs of
// letters and single other bytes (so that a boundary inside a word falls inside a token), and
// a ChatML template.
#pragma once

#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "fitlm/text/dataset_mask.h"

namespace fitlm::testing {

class FakeCodec : public TextCodec {
 public:
  // Ids 0..: specials first, then pieces in order of first use.
  FakeCodec() {
    for (const char* s : {"<s>", "</s>", "<|im_start|>", "<|im_end|>", "<pad>"}) intern(s);
  }
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens && add_bos) ids.push_back(0);
    size_t i = 0;
    while (i < text.size()) {
      size_t len = 0;
      for (int32_t s = 0; s < kSpecials; ++s)
        if (text.substr(i).starts_with(pieces_[s])) len = pieces_[s].size();
      if (len == 0 && std::isalpha(static_cast<unsigned char>(text[i])))
        while (i + len < text.size() && std::isalpha(static_cast<unsigned char>(text[i + len])))
          ++len;
      if (len == 0) len = 1;
      ids.push_back(intern(std::string(text.substr(i, len))));
      i += len;
    }
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids) s += pieces_.at(id);
    return s;
  }
  bool is_special(int32_t id) const override { return id < kSpecials; }
  std::optional<int32_t> eos_id() const override { return 1; }
  std::optional<int32_t> pad_id() const override { return 4; }
  size_t vocab_size() const override { return 1000; }

  bool add_bos = true;
  static constexpr int32_t kSpecials = 5;

 private:
  int32_t intern(const std::string& piece) const {
    auto [it, added] = ids_.emplace(piece, static_cast<int32_t>(pieces_.size()));
    if (added) pieces_.push_back(piece);
    return it->second;
  }
  mutable std::map<std::string, int32_t> ids_;
  mutable std::vector<std::string> pieces_;
};

inline std::string chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string s;
  for (const auto& m : messages) s += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) s += "<|im_start|>assistant\n";
  return s;
}

inline std::string fixture(const std::string& name) {
  return std::string(FITLM_TEST_DATA_DIR) + "/text/fixtures/data/" + name;
}

}  // namespace fitlm::testing
