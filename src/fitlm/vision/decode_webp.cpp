// WebP through libwebp's simple API. PIL 12 decodes a still WebP as the first frame of
// WebPAnimDecoder, which for a single frame is the plain decode (no blending); convert("RGB")
// then drops the alpha, so straight (not premultiplied) RGB is what both give.
#include <webp/decode.h>

#include <cstring>

#include "fitlm/core/error.h"
#include "fitlm/vision/image_decoders.h"

namespace fitlm::vision {
namespace {

constexpr const char* kComponent = "vision";

uint32_t le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24);
}

// The EXIF chunk of an extended (VP8X) WebP: RIFF chunks are FourCC, u32 size, data padded to
// even length.
std::vector<uint8_t> find_exif_chunk(std::span<const uint8_t> b) {
  size_t at = 12;
  while (at + 8 <= b.size()) {
    const uint32_t size = le32(b.data() + at + 4);
    if (size > b.size() - at - 8) break;
    if (std::memcmp(b.data() + at, "EXIF", 4) == 0)
      return {b.data() + at + 8, b.data() + at + 8 + size};
    at += 8 + size + (size & 1);
  }
  return {};
}

}  // namespace

DecodedImage decode_webp(std::span<const uint8_t> bytes, const std::string& name) {
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(bytes.data(), bytes.size(), &features);
  if (status != VP8_STATUS_OK)
    throw_input_error(kComponent, "{}: corrupt or truncated WebP (libwebp status {})",
                      clip_path(name), static_cast<int>(status));
  if (features.has_animation)
    throw_input_error(kComponent, "{}: animated WebP is not supported (expected a still image)",
                      clip_path(name));
  check_image_size(features.width, features.height, name);
  DecodedImage out;
  out.rgb = RgbImage(features.height, features.width);
  const int stride = features.width * 3;
  if (!WebPDecodeRGBInto(bytes.data(), bytes.size(), out.rgb.pixels.data(), out.rgb.pixels.size(),
                         stride))
    throw_input_error(kComponent, "{}: corrupt or truncated WebP (decoding failed)",
                      clip_path(name));
  out.exif = find_exif_chunk(bytes);
  return out;
}

}  // namespace fitlm::vision
