// Image files to RGB: the first step of the Qwen-VL pipeline, as transformers'
// `image_utils.load_image` does it (transformers 5.17 source):
//   image = PIL.Image.open(path); image = PIL.ImageOps.exif_transpose(image)
//   image = image.convert("RGB")
// JPEG (libjpeg-turbo), PNG (libpng) and WebP (libwebp), chosen by the file's first bytes.
// What convert("RGB") does with each mode (checked against PIL 12.3 by the device fixtures,
// tests/vision/fixtures): gray is replicated, alpha is dropped (not composited), a palette is
// looked up (tRNS ignored), 1/2/4-bit gray is scaled to 0..255, 16-bit RGB(A) and gray+alpha
// keep their high byte, 16-bit gray without alpha is clipped to 255 (PIL's I;16 -> RGB).
// EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF) is applied as exif_transpose does;
// orientation kept only in XMP or in a PNG text chunk is not read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "fitlm/vision/rgb_image.h"

namespace fitlm::vision {

// PIL's decompression-bomb limit: Image.open raises past 2 * MAX_IMAGE_PIXELS (89,478,485).
inline constexpr int64_t kMaxImagePixels = 2 * 89478485LL;

// Decodes an image file's bytes; `name` (the path) is what errors print. Throws an input error
// (ExitCode::kBadInput) "[vision] name: what" for an unsupported format, a truncated or corrupt
// file, a zero-sized or oversized image.
RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& name);
// Reads and decodes a file.
RgbImage load_image(const std::filesystem::path& path);

}  // namespace fitlm::vision
