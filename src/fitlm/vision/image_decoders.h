// The per-format decoders behind decode_image (image_load.h). Each returns 8-bit RGB converted
// as PIL's `Image.convert("RGB")` converts the mode PIL opens that file in, plus the file's raw
// EXIF block (for the orientation), and throws an input error naming `name` for a file the
// library refuses. Callers check the format first (image_format.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fitlm/vision/rgb_image.h"

namespace fitlm::vision {

struct DecodedImage {
  RgbImage rgb;
  std::vector<uint8_t> exif;  // a TIFF block ("II*\0"/"MM\0*", maybe after "Exif\0\0"), or empty
};

DecodedImage decode_jpeg(std::span<const uint8_t> bytes, const std::string& name);
DecodedImage decode_png(std::span<const uint8_t> bytes, const std::string& name);
DecodedImage decode_webp(std::span<const uint8_t> bytes, const std::string& name);

// Refuses a zero-sized image or one over kMaxImagePixels before any pixel buffer is allocated.
void check_image_size(int64_t width, int64_t height, const std::string& name);

}  // namespace fitlm::vision
