// A five-layer random Llama (vocabulary 1003, hidden 256) written as a Hugging Face directory
// in bf16, for the CUDA model tests: weights ~ N(0, 0.05), norms 1 + N(0, 0.05).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fitlm/io/safetensors.h"
#include "fitlm/model/config.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm::cuda_test {

namespace fs = std::filesystem;

inline fs::path write_random_model(const std::string& tag) {
  const nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                              {"vocab_size", 1003},
                              {"hidden_size", 256},
                              {"intermediate_size", 384},
                              {"num_hidden_layers", 5},
                              {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},
                              {"rms_norm_eps", 1e-5},
                              {"rope_theta", 10000.0},
                              {"tie_word_embeddings", false}};
  const fs::path dir =
      fs::temp_directory_path() / ("fitlm_cuda_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << cfg.dump(2);
  const ModelConfig c = ModelConfig::from_json(cfg, "test");
  std::mt19937 rng(17);
  std::normal_distribution<float> n(0.0f, 0.05f);
  std::vector<std::vector<float>> values;
  io::SafetensorsWriter w;
  for (const WeightSpec& s : weight_specs(c)) {
    std::vector<int64_t> shape(s.shape.dims.begin(), s.shape.dims.begin() + s.shape.ndim);
    std::vector<float>& v = values.emplace_back(static_cast<size_t>(s.shape.numel()));
    for (float& x : v) x = s.kind == WeightKind::kNorm ? 1.0f + n(rng) : n(rng);
    w.add_f32(s.name, io::StDType::kBF16, shape, v.data());
  }
  w.write(dir / "model.safetensors");
  return dir;
}

}  // namespace fitlm::cuda_test
