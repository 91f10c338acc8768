// `fitlm quantize`: writes a bitsandbytes 4-bit copy of a Hugging Face model directory.
#include <fmt/format.h>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/byte_size.h"
#include "fitlm/io/quantize_model.h"

namespace fitlm::cli {
namespace {

struct QuantizeCliOptions {
  std::string model, out, quant_type = "nf4", max_shard_size = "5GB";
  bool double_quant = true;
  int64_t blocksize = 64;
};

int run_quantize(const QuantizeCliOptions& c) {
  QuantizeOptions o;
  o.type = c.quant_type == "fp4" ? quant::QuantType::kFP4 : quant::QuantType::kNF4;
  o.double_quant = c.double_quant;
  o.blocksize = c.blocksize;
  o.max_shard_bytes = parse_byte_size(c.max_shard_size);
  const QuantizeReport r = quantize_model(c.model, c.out, o);
  fmt::print(
      "quantized {} weight matrices to {} (blocksize {}{}): {:.1f} MiB -> {:.1f} MiB in {} "
      "safetensors file(s)\n",
      r.quantized, c.quant_type, c.blocksize, c.double_quant ? ", double quant" : "",
      r.bytes_in / 1048576.0, r.bytes_out / 1048576.0, r.written.size());
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  app.add_option("--model", o->model, "Hugging Face model directory (16 or 32-bit weights)")
      ->required();
  app.add_option("--out", o->out, "Output model directory (bitsandbytes 4-bit layout)")->required();
  app.add_option("--quant-type", o->quant_type, "4-bit code: nf4 (QLoRA's) or fp4")
      ->check(CLI::IsMember({"nf4", "fp4"}))
      ->capture_default_str();
  app.add_flag("--double-quant,!--no-double-quant", o->double_quant,
               "Quantize the per-block absmax to 8 bits as well (QLoRA's double quantization)")
      ->capture_default_str();
  app.add_option("--blocksize", o->blocksize, "Elements per absmax block (power of two, 32..4096)")
      ->capture_default_str();
  app.add_option("--max-shard-size", o->max_shard_size,
                 "Largest safetensors shard (e.g. 5GB, 500MiB)")
      ->capture_default_str();
  return [o] { return run_quantize(*o); };
}

CommandRegistration reg{"quantize",
                        "Write a 4-bit (bitsandbytes NF4/FP4) copy of a model directory", setup};

}  // namespace
}  // namespace fitlm::cli
