#include "fitlm/demo/tiny_model.h"

#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "fitlm/backend/backend.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/model/transformer.h"
#include "fitlm/text/byte_level.h"

namespace fitlm::demo {
namespace {

// GPT-2's byte → printable-unicode table (what ByteLevel pre-tokenizers put in the vocab).
std::string byte_symbol(int b) {
  int cp = b;
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  if (!printable) {
    int n = 0;
    for (int x = 0; x < b; ++x) {
      const bool px = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
      if (!px) ++n;
    }
    cp = 256 + n;
  }
  std::string s;  // UTF-8 of cp (< 0x800 here)
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

void write_byte_tokenizer(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  const char* specials[] = {"<s>", "</s>", "<pad>"};
  for (int i = 0; i < 3; ++i) {
    vocab[specials[i]] = 256 + i;
    added.push_back({{"id", 256 + i},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const nlohmann::ordered_json byte_level = {{"type", "ByteLevel"},
                                             {"add_prefix_space", false},
                                             {"trim_offsets", true},
                                             {"use_regex", false}};
  const nlohmann::ordered_json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", nlohmann::ordered_json::array()}}},
  };
  io::write_file_atomic(dir / "tokenizer.json", tok.dump(1) + "\n");
  const nlohmann::ordered_json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                                      {"bos_token", "<s>"},
                                      {"eos_token", "</s>"},
                                      {"pad_token", "<pad>"},
                                      {"add_bos_token", false},
                                      {"clean_up_tokenization_spaces", false},
                                      {"model_max_length", 256}};
  io::write_file_atomic(dir / "tokenizer_config.json", cfg.dump(2) + "\n");
}

void write_tiny_llama(const std::filesystem::path& dir, const TinyModelShape& s, uint64_t seed) {
  std::filesystem::create_directories(dir);
  const nlohmann::ordered_json cfg = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", kTinyVocab},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.intermediate_size},
      {"num_hidden_layers", s.num_layers},
      {"num_attention_heads", s.num_heads},
      {"num_key_value_heads", s.num_kv_heads},
      {"head_dim", s.hidden_size / s.num_heads},
      {"hidden_act", "silu"},
      {"max_position_embeddings", s.max_position_embeddings},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", false},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"bos_token_id", kBosId},
      {"eos_token_id", kEosId},
      {"pad_token_id", kPadId},
      {"torch_dtype", "float32"},
  };
  io::write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
  // The model's own weight list gives every HF name and shape.
  auto backend = make_backend("cpu");
  RunShape shape;
  shape.max_tokens = 2;
  Transformer model(*backend, read_model_config(dir), TrainMode::kFrozen, LoraConfig{}, shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  io::SafetensorsWriter w;
  std::vector<std::vector<float>> host;
  auto weights = model.named_weights();
  host.reserve(weights.size());
  for (auto& [name, t] : weights) {
    host.emplace_back(static_cast<size_t>(t.numel()));
    const bool norm = name.find("norm") != std::string::npos;
    for (float& v : host.back()) v = norm ? 1.0f : normal(rng);
    w.add_f32(name, io::StDType::kF32, {t.shape.dims.begin(), t.shape.dims.begin() + t.ndim()},
              host.back().data());
  }
  w.write(dir / "model.safetensors");
  write_byte_tokenizer(dir);
}

}  // namespace fitlm::demo
