#include "fitlm/io/hf_model.h"

#include <map>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
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

void load_model_weights(Transformer& model, const std::filesystem::path& dir) {
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(dir);
  Backend& be = model.backend();
  std::set<std::string> used;
  std::map<std::string, Tensor> masters;  // trainable base weights whose master is separate
  for (const Param& p : model.params())
    if (p.master.data != p.value.data) masters[p.name] = p.master;
  for (auto& [name, dst] : model.named_weights()) {
    check_weight(st, dir, name, dst.shape);
    const io::SafetensorsTensorInfo& info = st.info(name);
    const auto core = io::to_core_dtype(info.dtype);
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
