#include "fitlm/io/hf_model.h"

#include <map>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/bnb4bit.h"
#include "fitlm/io/quantize_model.h"
#include "fitlm/io/safetensors_index.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm {

ModelConfig read_model_config(const std::filesystem::path& dir) {
  if (!paths::is_directory(dir, "model"))
    throw_input_error("model", "{} is not a directory (expected a Hugging Face model directory)",
                      clip_path(dir.string()));
  const auto path = dir / "config.json";
  if (!paths::exists(path, "model"))
    throw_input_error("model", "{}: no config.json in the model directory",
                      clip_path(dir.string()));
  return ModelConfig::from_file(path);
}

namespace {

// The checks of one base weight against what config.json implies.
void check_weight(const io::ShardedSafetensors& st, const std::filesystem::path& dir,
                  const std::string& name, const Shape& expected) {
  if (!st.contains(name))
    throw_input_error("model", "{}: tensor '{}' is missing from the checkpoint",
                      clip_path(dir.string()), name);
  if (io::is_bnb4bit_weight(st, name)) {  // its quant_state; loading checks the data
    const Shape found(io::bnb4bit_shape(st, name));
    if (!(found == expected))
      throw_input_error("model", "{}: 4-bit tensor '{}' has shape {}, config.json implies {}",
                        clip_path(st.file_of(name).path().string()), name, found.str(),
                        expected.str());
    return;
  }
  const io::SafetensorsTensorInfo& info = st.info(name);
  const Shape found(info.shape);
  if (!(found == expected))
    throw_input_error("model", "{}: tensor '{}' has shape {}, config.json implies {}",
                      clip_path(st.file_of(name).path().string()), name, found.str(),
                      expected.str());
  const auto core = io::to_core_dtype(info.dtype);
  if (!core || !io::st_dtype_is_float_loadable(info.dtype))
    throw_input_error("model", "{}: tensor '{}' has dtype {}; expected F32, BF16 or F16",
                      clip_path(st.file_of(name).path().string()), name,
                      io::st_dtype_name(info.dtype));
}

}  // namespace

void check_model_weights(const ModelConfig& config, const std::filesystem::path& dir) {
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(dir);
  for (const WeightSpec& w : weight_specs(config)) check_weight(st, dir, w.name, w.shape);
}

void check_tokenizer_fits(const Tokenizer& tokenizer, const ModelConfig& config,
                          const std::filesystem::path& dir) {
  const size_t ids = tokenizer.vocab_size();
  if (ids > static_cast<size_t>(config.vocab_size))
    throw_input_error("model",
                      "{}: tokenizer.json has token ids up to {} ({} ids with the added tokens), "
                      "but the model's embedding has {} rows (vocab_size in config.json): the "
                      "tokenizer does not belong to this model",
                      clip_path(dir.string()), ids - 1, ids, config.vocab_size);
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
    check_weight(st, dir, name, dst.shape);
    if (io::is_bnb4bit_weight(st, name)) {
      // A bitsandbytes 4-bit weight: dequantized as bitsandbytes does (f32, then rounded to the
      // quant_state dtype), so the model computes with the weights PEFT sees on that base.
      const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
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
    const auto core = io::to_core_dtype(info.dtype);
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
