#include "fitlm/vision/preprocess.h"

#include "fitlm/core/error.h"
#include "fitlm/vision/patchify.h"
#include "fitlm/vision/smart_resize.h"

namespace fitlm::vision {

std::vector<float> normalize_image(const RgbImage& image, const VisionPreprocessConfig& c,
                                   ResizeBackend backend) {
  const int64_t hw = image.height * image.width;
  std::vector<float> out(static_cast<size_t>(3 * hw));
  // value[c][u8] for the 256 possible inputs: the same float ops as HF, looked up per pixel.
  std::array<std::array<float, 256>, 3> table{};
  for (int ch = 0; ch < 3; ++ch) {
    const float mean = static_cast<float>(c.image_mean[ch]);
    const float std = static_cast<float>(c.image_std[ch]);
    for (int v = 0; v < 256; ++v) {
      float x;
      if (backend == ResizeBackend::kTorchvision) {
        const float inv = static_cast<float>(1.0 / c.rescale_factor);
        if (c.do_rescale && c.do_normalize) {
          x = (static_cast<float>(v) - mean * inv) / (std * inv);
        } else if (c.do_normalize) {
          x = (static_cast<float>(v) - mean) / std;
        } else if (c.do_rescale) {
          x = static_cast<float>(v) * static_cast<float>(c.rescale_factor);
        } else {
          x = static_cast<float>(v);
        }
      } else {
        x = c.do_rescale ? static_cast<float>(static_cast<double>(v) * c.rescale_factor)
                         : static_cast<float>(v);
        if (c.do_normalize) x = (x - mean) / std;
      }
      table[ch][v] = x;
    }
  }
  for (int64_t i = 0; i < hw; ++i)
    for (int ch = 0; ch < 3; ++ch) out[ch * hw + i] = table[ch][image.pixels[i * 3 + ch]];
  return out;
}

PreprocessedImage preprocess_image(const RgbImage& image, const VisionPreprocessConfig& c,
                                   ResizeBackend backend, const std::string& name) {
  PreprocessedImage out;
  if (c.do_resize) {
    const ResizedSize size =
        smart_resize(image.height, image.width, c.factor(), c.min_pixels, c.max_pixels, name);
    out.resized = resize_bicubic(image, size.height, size.width, backend);
  } else {
    if (image.height % c.factor() != 0 || image.width % c.factor() != 0)
      throw_input_error("vision",
                        "{}: {}x{} is not a multiple of patch_size * merge_size = {}, and the "
                        "config has do_resize false",
                        clip_path(name), image.width, image.height, c.factor());
    out.resized = image;
  }
  const std::vector<float> chw = normalize_image(out.resized, c, backend);
  out.pixel_values = patchify(chw, out.resized.height, out.resized.width, c.patch_size,
                              c.merge_size, c.temporal_patch_size);
  out.grid = {1, out.resized.height / c.patch_size, out.resized.width / c.patch_size};
  return out;
}

void PreprocessedBatch::append(const PreprocessedImage& image) {
  const int64_t n = image.grid.t * image.grid.h * image.grid.w;
  const int64_t f = static_cast<int64_t>(image.pixel_values.size()) / n;
  FITLM_CHECK(features == 0 || features == f, "vision", "features {} vs {}", features, f);
  features = f;
  rows += n;
  pixel_values.insert(pixel_values.end(), image.pixel_values.begin(), image.pixel_values.end());
  grids.push_back(image.grid);
}

}  // namespace fitlm::vision
