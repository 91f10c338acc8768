#include "fitlm/io/hf_model.h"

#include <map>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
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

void load_model_weights(Transformer& model, const std::filesystem::path& dir) {
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
    const io::SafetensorsTensorInfo& info = st.info(name);
    const Shape found(info.shape);
    if (!(found == dst.shape))
      throw_input_error("model", "{}: tensor '{}' has shape {}, config.json implies {}",
                        st.file_of(name).path().string(), name, found.str(), dst.shape.str());
    const auto core = io::to_core_dtype(info.dtype);
    if (!core || !io::st_dtype_is_float_loadable(info.dtype))
      throw_input_error("model", "{}: tensor '{}' has dtype {}; expected F32, BF16 or F16",
                        st.file_of(name).path().string(), name, io::st_dtype_name(info.dtype));
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
