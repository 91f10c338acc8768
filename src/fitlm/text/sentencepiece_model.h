// SentencePiece .model files (a protobuf ModelProto), read without protobuf: a wire-format reader
// of the few fields a Unigram tokenizer needs, turned into the tokenizer.json that transformers'
// T5Converter (convert_slow_tokenizer.py) would write for it, so both paths build one tokenizer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "fitlm/text/tokenizer_json.h"

namespace fitlm {

struct SentencePieceModel {
  enum PieceType {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  struct Piece {
    std::string piece;
    float score = 0;
    int type = kNormal;
  };
  std::vector<Piece> pieces;
  int model_type = 1;  // TrainerSpec.ModelType: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  int32_t unk_id = 0;
  bool byte_fallback = false;
  std::string precompiled_charsmap;  // raw bytes
  bool add_dummy_prefix = true;
};

// Parses a serialized ModelProto; errors name `file` and the field ("[tokenizer] FILE: field
// pieces[3].piece: truncated").
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& file);

// The tokenizer.json of a Unigram model, as T5Converter builds it: vocab = pieces then
// <extra_id_{extra_ids-1}> ... <extra_id_0> (score 0); control and unknown pieces and the extra ids
// as special added tokens, user-defined pieces as plain added tokens; normalizer
// Sequence[Precompiled, Strip(right), Replace(" {2,}" -> "▁")]; Metaspace pre-tokenizer and
// decoder (prepend "always", or "never" without add_dummy_prefix); post-processor `$A </s>` when
// there is a </s> piece. The model's byte_fallback is kept (with the ByteFallback decoder chain);
// a model type other than Unigram is refused naming the file.
tokenizer_json::Json sentencepiece_to_tokenizer_json(const SentencePieceModel& model,
                                                     const std::string& file, int extra_ids);

}  // namespace fitlm
