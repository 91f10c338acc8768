#include "fitlm/vision/image_load.h"

#include <fstream>
#include <iterator>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/vision/exif_orientation.h"
#include "fitlm/vision/image_decoders.h"
#include "fitlm/vision/image_format.h"

namespace fitlm::vision {
namespace {
constexpr const char* kComponent = "vision";
}  // namespace

void check_image_size(int64_t width, int64_t height, const std::string& name) {
  if (width <= 0 || height <= 0)
    throw_input_error(kComponent, "{}: the image has no pixels ({}x{})", clip_path(name), width,
                      height);
  if (width * height > kMaxImagePixels)
    throw_input_error(kComponent,
                      "{}: {}x{} = {} pixels is over the limit of {} (PIL's decompression-bomb "
                      "check refuses it too)",
                      clip_path(name), width, height, width * height, kMaxImagePixels);
}

RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.empty())
    throw_input_error(kComponent, "{}: empty file, expected an image", clip_path(name));
  DecodedImage d;
  switch (detect_image_format(bytes)) {
    case ImageFormat::kJpeg: d = decode_jpeg(bytes, name); break;
    case ImageFormat::kPng: d = decode_png(bytes, name); break;
    case ImageFormat::kWebp: d = decode_webp(bytes, name); break;
    case ImageFormat::kUnknown: {
      const std::string_view what = describe_unsupported_format(bytes);
      throw_input_error(kComponent, "{}: unsupported image format{}{} (expected JPEG, PNG or WebP)",
                        clip_path(name), what.empty() ? ": not an image file" : ": ", what);
    }
  }
  const int orientation = exif_orientation(d.exif);
  if (orientation != 1) return apply_exif_orientation(d.rgb, orientation);
  return std::move(d.rgb);
}

RgbImage load_image(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw_input_error(kComponent, "{}: cannot open the image file", clip_path(path.string()));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad())
    throw_input_error(kComponent, "{}: cannot read the image file", clip_path(path.string()));
  return decode_image(bytes, path.string());
}

}  // namespace fitlm::vision
