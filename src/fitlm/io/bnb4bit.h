// bitsandbytes 4-bit checkpoints (FORMATS.md §7): the tensors `Linear4bit` saves per quantized
// weight, and the `quantization_config` of config.json. Reading validates every size against
// the quant_state before a byte is used; writing produces what transformers + bitsandbytes load.
//
// Per quantized weight `<p>.weight` (e.g. model.layers.0.self_attn.q_proj.weight):
//   <p>.weight                          U8 [(n + 1) / 2, 1]   packed nibbles
//   <p>.weight.absmax                   F32 [blocks] or, double-quantized, U8 [blocks]
//   <p>.weight.quant_map                F32 [16]
//   <p>.weight.nested_absmax            F32 [ceil(blocks / 256)]   (double quant only)
//   <p>.weight.nested_quant_map         F32 [256]                  (double quant only)
//   <p>.weight.quant_state.bitsandbytes__nf4 (or __fp4)  U8: the JSON of the quant state
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fitlm/core/dtype.h"
#include "fitlm/core/quant4.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_index.h"

namespace fitlm::io {

// What config.json's quantization_config says (only 4-bit bitsandbytes is supported).
struct Bnb4bitConfig {
  quant::QuantType type = quant::QuantType::kNF4;
  bool double_quant = true;
  DType compute_dtype = DType::kBF16;
};

// nullopt when config.json has no quantization_config; an input error naming `config_path`
// for one fitlm cannot load (8-bit, another quant_method, unknown quant type or storage).
std::optional<Bnb4bitConfig> read_bnb4bit_config(const nlohmann::json& config,
                                                 const std::string& config_path);
// The 13 keys transformers' BitsAndBytesConfig.to_dict writes for this configuration.
nlohmann::json bnb4bit_config_json(const Bnb4bitConfig& c);

// Whether `weight_name` (a "<module>.weight") is stored 4-bit in this checkpoint.
bool is_bnb4bit_weight(const ShardedSafetensors& st, const std::string& weight_name);

struct Bnb4bitWeight {
  quant::Quantized4 q;
  std::vector<int64_t> shape;  // the 16-bit weight's [out, in]
  DType dtype = DType::kBF16;  // the quant_state dtype (what dequantization casts to)
};
// What its quant_state says (the JSON parsed and checked; no data read): the quant type,
// blocksize, element count and double quantization in q, the shape and dtype.
Bnb4bitWeight bnb4bit_header(const ShardedSafetensors& st, const std::string& weight_name);
// The [out, in] shape its quant_state gives.
std::vector<int64_t> bnb4bit_shape(const ShardedSafetensors& st, const std::string& weight_name);
// Reads and validates every companion tensor of `weight_name`. Errors name the file, the
// tensor and what was expected.
Bnb4bitWeight read_bnb4bit_weight(const ShardedSafetensors& st, const std::string& weight_name);

// The weight as bitsandbytes dequantizes it: code × absmax in f32, rounded to w.dtype (the
// values stay f32 so callers can compute with them). out.size() == numel.
void dequantize_bnb4bit(const Bnb4bitWeight& w, std::span<float> out);

// Appends the safetensors entries of one quantized weight. The entries borrow memory that
// `keep` owns (it must outlive the write).
void add_bnb4bit_entries(std::vector<SafetensorsEntry>& entries, const std::string& weight_name,
                         const Bnb4bitWeight& w, std::vector<std::shared_ptr<void>>& keep);

// The quant_state JSON as bitsandbytes writes it (json.dumps with default separators).
std::string bnb4bit_quant_state_json(const Bnb4bitWeight& w);

}  // namespace fitlm::io
