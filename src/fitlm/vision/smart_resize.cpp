#include "fitlm/vision/smart_resize.h"

#include <algorithm>
#include <cmath>

#include "fitlm/core/error.h"

namespace fitlm::vision {

ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels, const std::string& name) {
  FITLM_CHECK(factor > 0, "vision", "factor {}", factor);
  if (height <= 0 || width <= 0)
    throw_input_error("vision", "{}: the image has no pixels ({}x{})", clip_path(name), width,
                      height);
  const double h = static_cast<double>(height), w = static_cast<double>(width);
  const double f = static_cast<double>(factor);
  const double aspect = std::max(h, w) / std::min(h, w);
  if (aspect > 200)
    throw_input_error("vision",
                      "{}: {}x{} has an aspect ratio of {:.4g}; the Qwen-VL processor takes at "
                      "most 200",
                      clip_path(name), width, height, aspect);
  // std::nearbyint rounds half to even under the default rounding mode, as Python's round.
  int64_t hb = static_cast<int64_t>(std::nearbyint(h / f)) * factor;
  int64_t wb = static_cast<int64_t>(std::nearbyint(w / f)) * factor;
  if (hb * wb > max_pixels) {
    const double beta = std::sqrt(h * w / static_cast<double>(max_pixels));
    hb = std::max(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    wb = std::max(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (hb * wb < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    hb = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    wb = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  if (hb <= 0 || wb <= 0)
    throw_input_error("vision",
                      "{}: {}x{} resizes to {}x{} (factor {}, min_pixels {}): nothing to patchify",
                      clip_path(name), width, height, wb, hb, factor, min_pixels);
  return {hb, wb};
}

}  // namespace fitlm::vision
