#include "fitlm/vision/image_format.h"

#include <cstring>

namespace fitlm::vision {
namespace {

bool starts_with(std::span<const uint8_t> b, const char* magic, size_t n, size_t at = 0) {
  return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
}

}  // namespace

ImageFormat detect_image_format(std::span<const uint8_t> b) {
  if (starts_with(b, "\xFF\xD8\xFF", 3)) return ImageFormat::kJpeg;
  if (starts_with(b, "\x89PNG\r\n\x1A\n", 8)) return ImageFormat::kPng;
  if (starts_with(b, "RIFF", 4) && starts_with(b, "WEBP", 4, 8)) return ImageFormat::kWebp;
  return ImageFormat::kUnknown;
}

std::string_view image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kUnknown: break;
  }
  return "unknown";
}

std::string_view describe_unsupported_format(std::span<const uint8_t> b) {
  if (starts_with(b, "GIF8", 4)) return "GIF";
  if (starts_with(b, "BM", 2)) return "BMP";
  if (starts_with(b, "II*\0", 4) || starts_with(b, "MM\0*", 4)) return "TIFF";
  if (starts_with(b, "ftyp", 4, 4)) return "ISO media (HEIC/AVIF)";
  if (starts_with(b, "\0\0\0\x0CjP  ", 8)) return "JPEG 2000";
  if (starts_with(b, "qoif", 4)) return "QOI";
  return {};
}

}  // namespace fitlm::vision
