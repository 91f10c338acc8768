// The data keys of a training config (YAML, axolotl-style), until the full training config
// exists: base_model, datasets: [{path, type, format?}], sequence_len, sample_packing,
// train_on_inputs, on_bad_row, seed, val_set_size. Other keys are left to their readers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fitlm/text/dataset.h"

namespace fitlm {

struct DatasetSource {
  std::filesystem::path path;  // resolved: as written, or next to the config when not found
  DatasetType type = DatasetType::kAlpaca;
  std::string file_format;  // "" = from the extension
};

struct DataConfig {
  std::string base_model;  // HF model directory
  std::vector<DatasetSource> datasets;
  int64_t sequence_len = 2048;
  bool sample_packing = false;
  bool train_on_inputs = false;
  OnBadRow on_bad_row = OnBadRow::kFail;
  uint64_t seed = 42;
  double val_set_size = 0.0;  // fraction held out for eval; 0 = none
};

// Input error naming the file and key for a missing or mistyped key.
DataConfig load_data_config(const std::filesystem::path& path);
DataConfig parse_data_config(const std::string& yaml_text, const std::filesystem::path& base_dir,
                             const std::string& source_name);

}  // namespace fitlm
