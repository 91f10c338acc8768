// `--quantize nf4|fp4`, shared by the commands that load or plan a model: the decoder's linear
// weights are kept 4-bit (QLoRA's base) and dequantized per layer as they run. A checkpoint that
// is 4-bit already (bitsandbytes layout) is detected from its config.json without the flag.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "fitlm/io/hf_model.h"

namespace fitlm::cli {

struct QuantizeOption {
  std::string type;  // "", "nf4" or "fp4"
  bool no_double_quant = false;
  void add_to(CLI::App& app);
  std::optional<QuantizeRequest> request() const;
  // The layout a plan without a model directory (--arch) uses: the request's, or none.
  std::optional<Base4Layout> layout() const;
};

}  // namespace fitlm::cli
