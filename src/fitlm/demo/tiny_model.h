// A tiny Llama-architecture model that fitlm builds itself, so the demo and the tests need no
// downloads: a byte-level tokenizer (256 byte tokens + <s> </s> <pad>, no merges: every byte
// is one token, the vocabulary stays ~260 so the embedding does not dominate the model) and a
// randomly initialised LlamaForCausalLM in a Hugging Face model directory.
#pragma once

#include <cstdint>
#include <filesystem>

namespace fitlm::demo {

struct TinyModelShape {
  int hidden_size = 128;
  int intermediate_size = 256;
  int num_layers = 2;
  int num_heads = 4;
  int num_kv_heads = 2;
  int max_position_embeddings = 256;
};

inline constexpr int kTinyVocab = 259;  // 256 bytes + <s> + </s> + <pad>
inline constexpr int kBosId = 256;
inline constexpr int kEosId = 257;
inline constexpr int kPadId = 258;

// Writes tokenizer.json (byte-level BPE without merges) and tokenizer_config.json into dir.
void write_byte_tokenizer(const std::filesystem::path& dir);

// Writes config.json + model.safetensors (HF init: normal(0, 0.02), norms 1) + the tokenizer.
void write_tiny_llama(const std::filesystem::path& dir, const TinyModelShape& shape, uint64_t seed);

}  // namespace fitlm::demo
