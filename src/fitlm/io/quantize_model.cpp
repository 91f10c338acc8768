#include "fitlm/io/quantize_model.h"

#include <memory>

#include "fitlm/core/error.h"
#include "fitlm/io/bnb4bit.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/model_dir_files.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/io/safetensors_index.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "quantize";

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// Not a mixture of experts' per-expert tensors (Qwen3-MoE's mlp.experts.<j>.gate_proj): loading
// reads experts 16-bit only, then quantizes them itself (QLoRA), into its fused layout.
bool is_quantized_linear(const std::string& name) {
  return name.rfind("model.layers.", 0) == 0 && ends_with(name, "_proj.weight") &&
         name.find(".experts.") == std::string::npos &&
         (name.find(".self_attn.") != std::string::npos || name.find(".mlp.") != std::string::npos);
}

QuantizeReport quantize_model(const std::filesystem::path& model_dir,
                              const std::filesystem::path& out_dir, const QuantizeOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(out_dir) && fs::equivalent(out_dir, model_dir, ec))
    throw_input_error(kComponent, "--out {} is the model directory; choose a new one",
                      out_dir.string());
  if (!quant::valid_blocksize(o.blocksize))
    throw_input_error(kComponent, "--blocksize {}: expected a power of two in 32..4096",
                      o.blocksize);
  const ModelConfig config = read_model_config(model_dir);
  if (io::read_bnb4bit_config(config.raw, (model_dir / "config.json").string()))
    throw_input_error(kComponent, "{}: the model is already quantized (quantization_config)",
                      (model_dir / "config.json").string());
  const io::ShardedSafetensors base = io::ShardedSafetensors::open(model_dir);
  const DType dtype = io::checkpoint_dtype(config, base);

  QuantizeReport report;
  std::vector<std::shared_ptr<void>> keep;  // quantized tensors, alive until written
  std::vector<io::SafetensorsEntry> entries;
  std::vector<float> values;
  for (const std::string& name : base.names()) {
    const io::SafetensorsTensorInfo& info = base.info(name);
    report.bytes_in += info.bytes();
    if (!is_quantized_linear(name) || info.shape.size() != 2) {
      entries.push_back(
          io::SafetensorsEntry::from_bytes(name, info.dtype, info.shape, base.bytes(name).data()));
      report.bytes_out += info.bytes();
      continue;
    }
    if (!io::st_dtype_is_float_loadable(info.dtype))
      throw_input_error(kComponent, "{}: '{}' is {}; expected F32, BF16 or F16",
                        base.file_of(name).path().string(), name, io::st_dtype_name(info.dtype));
    values.resize(static_cast<size_t>(info.numel()));
    base.read_f32(name, values.data());
    io::Bnb4bitWeight w;
    w.q = quant::quantize4(values, o.type, o.blocksize, o.double_quant);
    w.shape = info.shape;
    w.dtype = dtype;
    const size_t before = entries.size();
    io::add_bnb4bit_entries(entries, name, w, keep);
    for (size_t i = before; i < entries.size(); ++i) report.bytes_out += entries[i].bytes();
    ++report.quantized;
  }
  if (report.quantized == 0)
    throw_input_error(kComponent, "{}: no decoder linear weights (model.layers.N.*_proj.weight)",
                      model_dir.string());

  fs::create_directories(out_dir);
  report.written = io::write_sharded(out_dir, entries, o.max_shard_bytes);
  nlohmann::json cfg = config.to_json();
  cfg["quantization_config"] = io::bnb4bit_config_json(
      {o.type, o.double_quant, dtype == DType::kF32 ? DType::kBF16 : dtype});
  io::write_file_atomic(out_dir / "config.json", cfg.dump(2) + "\n");
  report.copied = io::copy_side_files(model_dir, out_dir);
  return report;
}

}  // namespace fitlm
