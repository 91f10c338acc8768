#include "fitlm/cli/quantize_option.h"

namespace fitlm::cli {

void QuantizeOption::add_to(CLI::App& app) {
  app.add_option("--quantize", type,
                 "Keep the base's linear weights 4-bit (nf4 or fp4, blocksize 64, as "
                 "bitsandbytes' load_in_4bit), dequantized layer by layer")
      ->check(CLI::IsMember({"nf4", "fp4"}));
  app.add_flag("--no-double-quant", no_double_quant,
               "With --quantize: keep one f32 absmax per block instead of 8-bit codes");
}

std::optional<QuantizeRequest> QuantizeOption::request() const {
  if (type.empty()) return std::nullopt;
  QuantizeRequest r;
  r.type = type == "fp4" ? quant::QuantType::kFP4 : quant::QuantType::kNF4;
  r.double_quant = !no_double_quant;
  return r;
}

std::optional<Base4Layout> QuantizeOption::layout() const {
  const auto r = request();
  if (!r) return std::nullopt;
  return Base4Layout{r->type, r->blocksize, r->double_quant};
}

}  // namespace fitlm::cli
