// PNG through libpng's classic API (the simplified png_image API composites alpha onto a
// background, which PIL's convert("RGB") does not). libpng expands palettes and low-bit gray;
// the rest of the mode conversion is done here from the expanded rows, to match PIL:
//   8-bit: gray replicated, alpha dropped, palette looked up (tRNS ignored);
//   16-bit RGB, RGBA, gray+alpha: the high byte (PIL's "RGB;16B"/"LA;16B" unpackers);
//   16-bit gray without alpha: PIL opens it as I;16, and I;16 -> RGB clips at 255.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "fitlm/core/error.h"
#include "fitlm/vision/image_decoders.h"
#include "fitlm/vision/image_load.h"

namespace fitlm::vision {
namespace {

constexpr const char* kComponent = "vision";

struct PngJob {
  std::span<const uint8_t> bytes;
  size_t cursor = 0;
  char message[256] = {};
  DecodedImage out;
  std::vector<uint8_t> rows;        // the expanded image, [height, rowbytes]
  std::vector<png_bytep> pointers;  // into rows; here, not in run_decode, so longjmp skips no
                                    // destructor
  png_uint_32 width = 0, height = 0;
  bool size_refused = false;
};

void on_error(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", msg);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // e.g. a known-bad sRGB profile: PIL reads on

void read_bytes(png_structp png, png_bytep dst, png_size_t n) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > job->bytes.size() - job->cursor) png_error(png, "file is truncated");
  std::memcpy(dst, job->bytes.data() + job->cursor, n);
  job->cursor += n;
}

void convert_row(const uint8_t* src, uint8_t* dst, png_uint_32 width, int channels, int depth) {
  const int step = depth == 16 ? 2 : 1;
  for (png_uint_32 x = 0; x < width; ++x, dst += 3) {
    const uint8_t* p = src + x * channels * step;  // high byte first: PNG is big-endian
    if (channels >= 3) {
      dst[0] = p[0], dst[1] = p[step], dst[2] = p[2 * step];
    } else if (channels == 1 && depth == 16) {
      const unsigned v = (p[0] << 8) | p[1];
      dst[0] = dst[1] = dst[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    } else {
      dst[0] = dst[1] = dst[2] = p[0];
    }
  }
}

bool run_decode(PngJob& job) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, on_error, on_warning);
  if (!png) {
    std::snprintf(job.message, sizeof(job.message), "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_set_read_fn(png, &job, read_bytes);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  int depth = 0, color = 0;
  png_get_IHDR(png, info, &job.width, &job.height, &depth, &color, nullptr, nullptr, nullptr);
  if (job.width == 0 || job.height == 0 || int64_t{job.width} * job.height > kMaxImagePixels) {
    job.size_refused = true;
    png_destroy_read_struct(&png, &info, nullptr);
    return true;
  }
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  // A palette with tRNS may come out as RGBA: convert_row drops the alpha either way.
  const int channels = png_get_channels(png, info);
  const int out_depth = png_get_bit_depth(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  job.rows.resize(rowbytes * job.height);
  job.pointers.resize(job.height);
  for (png_uint_32 y = 0; y < job.height; ++y) job.pointers[y] = job.rows.data() + y * rowbytes;
  png_read_image(png, job.pointers.data());
  png_read_end(png, info);  // an eXIf chunk may follow the image data; PIL reads it there too
  png_uint_32 exif_size = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &exif_size, &exif) && exif)
    job.out.exif.assign(exif, exif + exif_size);
  job.out.rgb = RgbImage(job.height, job.width);
  for (png_uint_32 y = 0; y < job.height; ++y)
    convert_row(job.pointers[y], job.out.rgb.row(y), job.width, channels, out_depth);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

}  // namespace

DecodedImage decode_png(std::span<const uint8_t> bytes, const std::string& name) {
  PngJob job;
  job.bytes = bytes;
  if (!run_decode(job))
    throw_input_error(kComponent, "{}: corrupt or truncated PNG: {}", clip_path(name), job.message);
  if (job.size_refused) check_image_size(job.width, job.height, name);
  return std::move(job.out);
}

}  // namespace fitlm::vision
