#include "fitlm/io/random_model.h"

#include <cmath>
#include <fstream>

#include "fitlm/core/error.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm::io {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform on [−a, a) with a = 0.02·√3: standard deviation 0.02.
void fill_uniform(float* out, int64_t n, uint64_t stream) {
  const float a = 0.02f * std::sqrt(3.0f);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix64(stream ^ static_cast<uint64_t>(i));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = (2.0f * u - 1.0f) * a;
  }
}

}  // namespace

void write_random_model(const ModelConfig& config, const std::filesystem::path& dir, StDType dtype,
                        uint64_t seed) {
  if (!st_dtype_is_float_loadable(dtype))
    throw_input_error("random-model", "dtype {} is not F32, BF16 or F16", st_dtype_name(dtype));
  std::filesystem::create_directories(dir);
  SafetensorsWriter w;
  uint64_t index = 0;
  for (const WeightSpec& s : weight_specs(config)) {
    const uint64_t stream = splitmix64(seed ^ splitmix64(++index)) << 1;
    const WeightKind kind = s.kind;
    const int64_t n = s.shape.numel();
    w.add_f32_produced(s.name, dtype, {s.shape.dims.begin(), s.shape.dims.begin() + s.shape.ndim},
                       [kind, n, stream](float* out) {
                         if (kind == WeightKind::kNorm || kind == WeightKind::kBias) {
                           std::fill(out, out + n, kind == WeightKind::kNorm ? 1.0f : 0.0f);
                         } else {
                           fill_uniform(out, n, stream);
                         }
                       });
  }
  w.write(dir / "model.safetensors");
  nlohmann::json cfg = config.to_json();
  cfg["torch_dtype"] = dtype == StDType::kBF16  ? "bfloat16"
                       : dtype == StDType::kF16 ? "float16"
                                                : "float32";
  write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
}

}  // namespace fitlm::io
