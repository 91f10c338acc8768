#include "fitlm/train/model_output.h"

#include <map>
#include <vector>

#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/io/safetensors_index.h"
#include "fitlm/io/safetensors_merge.h"

namespace fitlm::train {
namespace {

// The model's weights as this process holds them, trained masters where trainable, into one
// file; each tensor is downloaded while the file is written: one on the host at a time.
void write_weights(Transformer& model, const std::filesystem::path& file) {
  std::map<std::string, Tensor> masters;
  for (const Param& p : model.params()) masters[p.name] = p.full_master();
  io::SafetensorsWriter w;
  Backend& be = model.backend();
  for (auto& [name, t] : model.named_weights()) {
    const auto it = masters.find(name);
    const Tensor src = it != masters.end() ? it->second : t;
    w.add_f32_produced(name, io::StDType::kF32,
                       {src.shape.dims.begin(), src.shape.dims.begin() + src.ndim()},
                       [&be, src](float* out) { be.download(src, out); });
  }
  w.write(file);
}

void write_config_and_tokenizer(Transformer& model, const std::filesystem::path& dir,
                                const std::filesystem::path& base_dir) {
  nlohmann::json cfg = model.config().to_json();
  cfg["torch_dtype"] = "float32";
  io::write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
  copy_tokenizer_files(base_dir, dir);
}

std::filesystem::path adapter_part(const std::filesystem::path& dir, int rank, int world) {
  return dir / fmt::format(".adapter-part-{}-of-{}.safetensors", rank, world);
}

}  // namespace

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
  write_weights(model, dir / "model.safetensors");
  // A sharded save of an earlier run would shadow this file (its index wins when loading).
  std::filesystem::remove(dir / io::kSafetensorsIndexName);
  write_config_and_tokenizer(model, dir, base_dir);
}

void write_hf_model_part(Transformer& model, const std::filesystem::path& dir, int rank,
                         int world) {
  std::filesystem::create_directories(dir);
  write_weights(model,
                dir / io::shard_file_name(static_cast<size_t>(rank), static_cast<size_t>(world)));
}

void join_hf_model_parts(Transformer& model, const std::filesystem::path& dir,
                         const std::filesystem::path& base_dir, int world) {
  io::write_shard_index(dir, static_cast<size_t>(world));
  write_config_and_tokenizer(model, dir, base_dir);
}

void write_adapter_part(Transformer& model, const std::filesystem::path& dir, int rank, int world) {
  std::filesystem::create_directories(dir);
  write_peft_tensors(model, adapter_part(dir, rank, world));
}

void join_adapter_parts(Transformer& model, const std::filesystem::path& dir,
                        const std::string& base_model, int world) {
  std::vector<std::filesystem::path> parts;
  for (int r = 0; r < world; ++r) parts.push_back(adapter_part(dir, r, world));
  io::merge_safetensors(parts, dir / "adapter_model.safetensors");
  for (const auto& p : parts) std::filesystem::remove(p);
  write_peft_config(model.lora(), dir, base_model);
}

}  // namespace fitlm::train
