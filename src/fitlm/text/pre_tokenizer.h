// tokenizer.json "pre_tokenizer": splits a normalized section into the words BPE sees.
// Supported: Sequence, Split (String or Regex), ByteLevel, Metaspace, Whitespace, WhitespaceSplit.
// Semantics follow transformers.js, e.g. Split treats every behavior other than "Removed" as
// "Isolated"; Metaspace follows tokenizers (prepend_scheme, split), see pre_tokenizer.cpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

class RegexScratch;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by the pieces each of them splits into. `section_index` is the index of the
  // text section (between added tokens) being processed; Metaspace's prepend_scheme "first"
  // uses it.
  virtual void pre_tokenize(std::vector<std::string>& pieces, size_t section_index,
                            RegexScratch& scratch) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const tokenizer_json::Json& config,
                                                 const tokenizer_json::Loc& loc);

// Metaspace with a prepend scheme ("always", "first", "never"); transformers.js's
// LlamaTokenizer installs ("first", no split) when legacy == false.
std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(std::string replacement,
                                                           std::string prepend_scheme, bool split);

// A Metaspace config's prepend scheme as tokenizers reads it: prepend_scheme ("always" when
// absent), "never" when add_prefix_space is false. Shared with the Metaspace decoder.
std::string metaspace_prepend_scheme(const tokenizer_json::Json& config,
                                     const tokenizer_json::Loc& loc);

}  // namespace fitlm
