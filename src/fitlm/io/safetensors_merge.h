// One safetensors file from several: what a job whose tensors live on several processes (each
// pipeline stage writes the adapter tensors it holds) hands the ecosystem, which loads one
// adapter_model.safetensors. Tensors keep their bytes, dtype and shape, in input order.
#pragma once

#include <filesystem>
#include <vector>

namespace fitlm::io {

// Writes `output` (atomically) with every tensor of every input. A name in two inputs is an
// input error naming both files; so is an unreadable input (SafetensorsFile's errors).
void merge_safetensors(const std::vector<std::filesystem::path>& inputs,
                       const std::filesystem::path& output);

}  // namespace fitlm::io
