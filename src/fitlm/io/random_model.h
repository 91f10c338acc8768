// A Hugging Face model directory with random weights for a config (a preset's shapes: Llama-3.1-8B,
// 70B, ...): config.json and model.safetensors, no tokenizer. For benchmarks and device runs of
// `fitlm train` at real sizes, where no pretrained weights can be downloaded; train on it with
// pretokenized rows (ids below vocab_size).
//
// Values: norms 1, biases 0, every other tensor uniform with standard deviation 0.02 (HF's
// initializer_range), from a counter-based generator of (seed, tensor, element), so a tensor's
// values do not depend on thread count or tensor order. Written one tensor at a time.
#pragma once

#include <cstdint>
#include <filesystem>

#include "fitlm/io/safetensors.h"
#include "fitlm/model/config.h"

namespace fitlm::io {

void write_random_model(const ModelConfig& config, const std::filesystem::path& dir, StDType dtype,
                        uint64_t seed);

}  // namespace fitlm::io
