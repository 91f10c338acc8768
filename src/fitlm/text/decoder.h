// tokenizer.json "decoder": turns token strings back into text.
// Supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence; each maps a list
// of strings to a list of strings (transformers.js's decode_chain) and the result is joined.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

class RegexScratch;

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens, RegexScratch& scratch) const = 0;
};

// `added_contents`: added-token strings, which the ByteLevel decoder passes through verbatim.
std::unique_ptr<TokenDecoder> make_decoder(const tokenizer_json::Json& config,
                                           const tokenizer_json::Loc& loc,
                                           const std::unordered_set<std::string>& added_contents);

}  // namespace fitlm
