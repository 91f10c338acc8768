// The image-processor settings of a Qwen2-VL / Qwen2.5-VL / Qwen3-VL model directory, read from
// its preprocessor_config.json with the defaults and precedence of transformers 5.17's
// Qwen2VLImageProcessor: the pixel bounds come from top-level min_pixels / max_pixels when
// present, else from size.shortest_edge / size.longest_edge, else 56*56 and 28*28*1280.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>

#include "fitlm/core/json_input.h"

namespace fitlm::vision {

struct VisionPreprocessConfig {
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t merge_size = 2;
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
  double rescale_factor = 1.0 / 255.0;
  // Python floats in the JSON; HF turns them into float32 tensors before use.
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};  // OPENAI_CLIP_MEAN
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};  // OPENAI_CLIP_STD

  int64_t factor() const { return patch_size * merge_size; }
  int64_t features() const { return 3 * temporal_patch_size * patch_size * patch_size; }
};

// Parses a preprocessor_config.json document; `source` names it in errors
// ("[vision] DIR/preprocessor_config.json: field 'patch_size': expected ..., found ...").
VisionPreprocessConfig parse_vision_preprocess_config(const json_input::Json& j,
                                                      const std::string& source);
// Reads MODEL_DIR/preprocessor_config.json (or the file itself when given a file).
VisionPreprocessConfig load_vision_preprocess_config(const std::filesystem::path& path);

}  // namespace fitlm::vision
