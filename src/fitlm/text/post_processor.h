// tokenizer.json "post_processor": adds special tokens (e.g. BOS) around an encoded sequence.
// Supported: TemplateProcessing, ByteLevel (no-op on ids), Sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites `ids` (one sequence); with add_special_tokens false only the sequence is kept.
  virtual void process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

using TokenLookup = std::function<std::optional<int32_t>(std::string_view)>;

std::unique_ptr<PostProcessor> make_post_processor(const tokenizer_json::Json& config,
                                                   const tokenizer_json::Loc& loc,
                                                   const TokenLookup& lookup);

}  // namespace fitlm
