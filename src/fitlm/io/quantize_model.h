// `fitlm quantize`: a 16/32-bit Hugging Face model directory rewritten with its decoder's linear
// weights in bitsandbytes 4-bit (NF4 or FP4, optionally double-quantized), the layout that
// transformers + bitsandbytes load (FORMATS.md §7). Embeddings, norms and lm_head stay as they
// are, as bitsandbytes leaves them. Tensors are read one at a time from the mmap'd shards.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fitlm/core/quant4.h"

namespace fitlm {

struct QuantizeOptions {
  quant::QuantType type = quant::QuantType::kNF4;
  bool double_quant = true;
  int64_t blocksize = 64;
  uint64_t max_shard_bytes = 5'000'000'000ull;
};

struct QuantizeReport {
  int quantized = 0;  // weight matrices stored 4-bit
  uint64_t bytes_in = 0, bytes_out = 0;
  std::vector<std::filesystem::path> written;
  std::vector<std::string> copied;
};

// Whether `name` is a weight bitsandbytes replaces (a linear layer of the decoder stack).
bool is_quantized_linear(const std::string& name);

QuantizeReport quantize_model(const std::filesystem::path& model_dir,
                              const std::filesystem::path& out_dir, const QuantizeOptions& o);

}  // namespace fitlm
