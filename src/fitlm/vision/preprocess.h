// The Qwen-VL image pipeline after decoding: smart_resize, bicubic resize (resample.h), rescale
// and normalise, patchify, image_grid_thw -- what transformers 5.17's Qwen2VLImageProcessor
// returns as pixel_values and image_grid_thw for a list of images.
//
// Rescale and normalise, in float32 as each HF path computes them (the order of the float
// operations decides the last bit):
//   kTorchvision (TorchvisionBackend.rescale_and_normalize): rescale is fused into the
//     normalisation, mean' = f32(mean) * f32(1 / rescale_factor), std' likewise, then
//     (f32(x) - mean') / std' (torchvision's normalize: sub_, div_);
//   kPil (PilBackend, NumPy): x' = f32(f64(x) * rescale_factor), then (x' - f32(mean)) / f32(std).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "fitlm/vision/preprocess_config.h"
#include "fitlm/vision/resample.h"
#include "fitlm/vision/rgb_image.h"

namespace fitlm::vision {

struct ImageGridThw {
  int64_t t = 0, h = 0, w = 0;  // in patches; t = 1 for a still image
};

struct PreprocessedImage {
  std::vector<float> pixel_values;  // [grid.h * grid.w, config.features()]
  ImageGridThw grid;
  RgbImage resized;  // what was normalised: the model's view of the image
};

// The normalised image, [3, height, width] planar.
std::vector<float> normalize_image(const RgbImage& image, const VisionPreprocessConfig& config,
                                   ResizeBackend backend);

// One image through the whole pipeline; `name` is what errors print (the file).
PreprocessedImage preprocess_image(const RgbImage& image, const VisionPreprocessConfig& config,
                                   ResizeBackend backend, const std::string& name);

// Several images as HF batches them: rows concatenated in order, one grid row per image.
struct PreprocessedBatch {
  std::vector<float> pixel_values;  // [rows, features]
  int64_t rows = 0, features = 0;
  std::vector<ImageGridThw> grids;
  void append(const PreprocessedImage& image);
};

}  // namespace fitlm::vision
