#include "fitlm/io/hf_model.h"

#include <map>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/io/bnb4bit.h"
#include "fitlm/io/quantize_model.h"
#include "fitlm/io/safetensors_index.h"

namespace fitlm {

ModelConfig read_model_config(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir))
    throw_input_error("model", "{} is not a directory (expected a Hugging Face model directory)",
                      dir.string());
  const auto path = dir / "config.json";
  if (!std::filesystem::exists(path))
    throw_input_error("model", "{}: no config.json in the model directory", dir.string());
  return ModelConfig::from_file(path);
}

void load_model_weights(Transformer& model, const std::filesystem::path& dir,
                        const LoadOptions& options) {
  // A quantization_config fitlm cannot read (8-bit, another method) is an error up front.
  io::read_bnb4bit_config(model.config().raw, (dir / "config.json").string());
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(dir);
  Backend& be = model.backend();
  std::set<std::string> used;
  std::map<std::string, Tensor> masters;  // trainable base weights whose master is separate
  for (const Param& p : model.params())
    if (p.master.data != p.value.data) masters[p.name] = p.master;
  for (auto& [name, dst] : model.named_weights()) {
    if (!st.contains(name))
      throw_input_error("model", "{}: tensor '{}' is missing from the checkpoint", dir.string(),
                        name);
    if (io::is_bnb4bit_weight(st, name)) {
      // A bitsandbytes 4-bit weight: dequantized as bitsandbytes does (f32, then rounded to the
      // quant_state dtype), so the model computes with the weights PEFT sees on that base.
      const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
      if (!(Shape(w.shape) == dst.shape))
        throw_input_error("model", "{}: 4-bit tensor '{}' has shape {}, config.json implies {}",
                          st.file_of(name).path().string(), name, Shape(w.shape).str(),
                          dst.shape.str());
      std::vector<float> values(static_cast<size_t>(w.q.numel));
      io::dequantize_bnb4bit(w, values);
      const auto it = masters.find(name);
      be.upload(it != masters.end() ? it->second : dst, values.data(), DType::kF32);
      if (it != masters.end()) be.copy(it->second, dst);
      for (const auto& n : st.names())
        if (n.rfind(name, 0) == 0) used.insert(n);  // the weight and its companion tensors
      continue;
    }
    const io::SafetensorsTensorInfo& info = st.info(name);
    const Shape found(info.shape);
    if (!(found == dst.shape))
      throw_input_error("model", "{}: tensor '{}' has shape {}, config.json implies {}",
                        st.file_of(name).path().string(), name, found.str(), dst.shape.str());
    const auto core = io::to_core_dtype(info.dtype);
    if (!core || !io::st_dtype_is_float_loadable(info.dtype))
      throw_input_error("model", "{}: tensor '{}' has dtype {}; expected F32, BF16 or F16",
                        st.file_of(name).path().string(), name, io::st_dtype_name(info.dtype));
    if (options.quantize4 && is_quantized_linear(name)) {
      std::vector<float> values(static_cast<size_t>(info.numel()));
      st.read_f32(name, values.data());
      const auto q =
          quant::quantize4(values, *options.quantize4, options.blocksize, options.double_quant);
      quant::dequantize4(q, values);
      round_to_storage(values, *core);
      be.upload(dst, values.data(), DType::kF32);
      used.insert(name);
      continue;
    }
    // Full fine-tuning: the f32 master gets the file's values unrounded.
    const auto it = masters.find(name);
    if (it != masters.end()) {
      be.upload(it->second, st.bytes(name).data(), *core);
      be.copy(it->second, dst);
    } else {
      be.upload(dst, st.bytes(name).data(), *core);
    }
    used.insert(name);
  }
  for (const auto& n : st.names())
    if (!used.count(n)) log::debug("model: ignoring tensor {} in checkpoint", n);
}

}  // namespace fitlm
