// Test models with random weights, shared by the CPU and CUDA model tests: a Hugging Face
// directory whose weights are drawn from one seeded stream, and trainable values drawn per
// tensor name — so that models holding different parts of one network (ranks, pipeline stages)
// get the values the whole network would.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "fitlm/io/safetensors.h"
#include "fitlm/model/config.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm::test {

// config.json and model.safetensors in `dir`: weights ~ N(0, scale), norm weights
// 1 + N(0, scale), stored as `dtype`. `bad_shape`: that tensor gets one row too many.
inline void write_random_checkpoint(const std::filesystem::path& dir, const nlohmann::json& cfg,
                                    io::StDType dtype, float scale = 0.1f,
                                    const std::string& bad_shape = "") {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << cfg.dump(2);
  const ModelConfig c = ModelConfig::from_json(cfg, "test");
  std::mt19937 rng(17);
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<std::vector<float>> values;
  io::SafetensorsWriter w;
  for (const WeightSpec& s : weight_specs(c)) {
    std::vector<int64_t> shape(s.shape.dims.begin(), s.shape.dims.begin() + s.shape.ndim);
    if (s.name == bad_shape) ++shape[0];
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    std::vector<float>& v = values.emplace_back(static_cast<size_t>(numel));
    for (float& x : v) x = s.kind == WeightKind::kNorm ? 1.0f + n(rng) : n(rng);
    w.add_f32(s.name, dtype, shape, v.data());
  }
  w.write(dir / "model.safetensors");
}

// Every trainable tensor's f32 master (and value) ~ N(0, scale), seeded by its name: a LoRA B
// that is not zero, so every gradient is non-zero.
inline void randomize_params_by_name(Backend& be, Transformer& m, float scale) {
  for (Param& p : m.params()) {
    std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>{}(p.name)));
    std::normal_distribution<float> n(0.0f, scale);
    std::vector<float> h(static_cast<size_t>(p.full_master().numel()));
    for (float& v : h) v = n(rng);
    be.upload(p.full_master(), h.data(), DType::kF32);
    if (p.full_master().data != p.value.data) be.copy(p.full_master(), p.value);
  }
}

}  // namespace fitlm::test
