#include "fitlm/train/model_output.h"

#include <map>
#include <vector>

#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_atomic_file.h"

namespace fitlm::train {

void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to) {
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "generation_config.json", "tokenizer.model", "spiece.model"})
    if (std::filesystem::exists(from / f))
      std::filesystem::copy_file(from / f, to / f,
                                 std::filesystem::copy_options::overwrite_existing);
}

void save_hf_model(Transformer& model, const std::filesystem::path& dir,
                   const std::filesystem::path& base_dir) {
  std::filesystem::create_directories(dir);
  std::map<std::string, Tensor> masters;
  for (const Param& p : model.params()) masters[p.name] = p.full_master();
  // Each tensor is downloaded while the file is written: one on the host at a time.
  io::SafetensorsWriter w;
  for (auto& [name, t] : model.named_weights()) {
    const auto it = masters.find(name);
    const Tensor src = it != masters.end() ? it->second : t;
    Backend& be = model.backend();
    w.add_f32_produced(name, io::StDType::kF32,
                       {src.shape.dims.begin(), src.shape.dims.begin() + src.ndim()},
                       [&be, src](float* out) { be.download(src, out); });
  }
  w.write(dir / "model.safetensors");
  nlohmann::json cfg = model.config().to_json();
  cfg["torch_dtype"] = "float32";
  io::write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
  copy_tokenizer_files(base_dir, dir);
}

}  // namespace fitlm::train
