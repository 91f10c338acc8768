// A decoded image as the HF image processors see it after `PIL.Image.convert("RGB")`: 8-bit
// RGB, rows top to bottom, pixels interleaved (HWC). Everything in vision/ works on this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fitlm::vision {

struct RgbImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;  // [height, width, 3]

  RgbImage() = default;
  RgbImage(int64_t h, int64_t w) : height(h), width(w), pixels(static_cast<size_t>(h * w * 3)) {}
  uint8_t* row(int64_t y) { return pixels.data() + y * width * 3; }
  const uint8_t* row(int64_t y) const { return pixels.data() + y * width * 3; }
};

}  // namespace fitlm::vision
