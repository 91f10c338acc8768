// JPEG through libjpeg-turbo, with the settings PIL's decoder uses (accurate integer IDCT and
// fancy chroma upsampling, libjpeg's defaults), so the RGB equals PIL's for the same library.

// jpeglib.h uses FILE and size_t without including their headers.
// clang-format off
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
// clang-format on

#include <csetjmp>
#include <cstring>

#include "fitlm/core/error.h"
#include "fitlm/vision/image_decoders.h"
#include "fitlm/vision/image_load.h"

namespace fitlm::vision {
namespace {

constexpr const char* kComponent = "vision";

// libjpeg reports errors through a callback that must not return: longjmp back to decode with
// the message. Corrupt-data warnings (a truncated file gets a fake end marker and a gray
// bottom) are errors here, as PIL raises "image file is truncated" for them.
struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) on_error(cinfo);  // -1: a warning about corrupt data; >= 0: trace messages
}

// Everything the decode touches after setjmp lives here, in memory that longjmp leaves alone.
struct JpegJob {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  DecodedImage out;
  bool cmyk = false;
  bool size_refused = false;  // check_image_size throws once libjpeg's state is gone
};

// Returns false with job.err.message set when libjpeg failed; the C++ error is thrown by the
// caller, outside the frame that setjmp guards.
bool run_decode(JpegJob& job, std::span<const uint8_t> bytes) {
  jpeg_decompress_struct& cinfo = job.cinfo;
  cinfo.err = jpeg_std_error(&job.err.pub);
  job.err.pub.error_exit = on_error;
  job.err.pub.emit_message = on_message;
  job.err.message[0] = '\0';
  if (setjmp(job.err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  // PIL keeps the first APP1 that starts "Exif\0\0".
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
        std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      job.out.exif.assign(m->data, m->data + m->data_length);
      break;
    }
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    job.cmyk = true;
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  if (cinfo.image_width == 0 || cinfo.image_height == 0 ||
      int64_t{cinfo.image_width} * cinfo.image_height > kMaxImagePixels) {
    job.size_refused = true;
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  cinfo.out_color_space = JCS_RGB;  // gray is replicated, as convert("RGB") does from L
  jpeg_start_decompress(&cinfo);
  job.out.rgb = RgbImage(cinfo.output_height, cinfo.output_width);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = job.out.rgb.row(cinfo.output_scanline);
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

DecodedImage decode_jpeg(std::span<const uint8_t> bytes, const std::string& name) {
  JpegJob job;
  std::memset(&job.cinfo, 0, sizeof(job.cinfo));
  if (!run_decode(job, bytes))
    throw_input_error(kComponent, "{}: corrupt or truncated JPEG: {}", clip_path(name),
                      job.err.message);
  if (job.cmyk)
    throw_input_error(kComponent, "{}: CMYK JPEG is not supported (expected RGB or grayscale)",
                      clip_path(name));
  if (job.size_refused) check_image_size(job.cinfo.image_width, job.cinfo.image_height, name);
  return std::move(job.out);
}

}  // namespace fitlm::vision
