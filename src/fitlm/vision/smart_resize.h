// Qwen2-VL's smart_resize (transformers 5.17, models/qwen2_vl/image_processing_qwen2_vl.py):
// the size an image is resized to before patchifying. Both sides become multiples of
// factor = patch_size * merge_size, the area lands in [min_pixels, max_pixels], and the aspect
// ratio stays about the same:
//   refuse max(h, w) / min(h, w) > 200
//   h' = round(h / f) * f, w' = round(w / f) * f          (Python round: half to even)
//   if h'w' > max: b = sqrt(h w / max); h' = max(f, floor(h / b / f) * f), same for w
//   elif h'w' < min: b = sqrt(min / (h w)); h' = ceil(h b / f) * f, same for w
// 5.17 no longer refuses a side shorter than the factor (4.x did): such an image is scaled up.
#pragma once

#include <cstdint>
#include <string>

namespace fitlm::vision {

struct ResizedSize {
  int64_t height = 0, width = 0;
};

// Throws an input error naming `name` (the image) for an aspect ratio over 200 or a size that
// rounds to nothing (min_pixels 0 and a side under factor / 2).
ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels, const std::string& name);

}  // namespace fitlm::vision
