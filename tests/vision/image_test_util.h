// Encoders for the vision tests: small images written in the test itself with libpng /
// libjpeg / libwebp, so each test states exactly which pixels the decoder must return.
#pragma once

// jpeglib.h uses FILE and size_t without including their headers.
// clang-format off
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
// clang-format on

#include <png.h>
#include <webp/encode.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace fitlm::vision::test {

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed, int lo = 0, int hi = 255) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(d(rng));
  return v;
}

struct PngSpec {
  int width = 0, height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlaced = false;
  std::vector<uint8_t> rows;       // packed rows as PNG stores them (16-bit: big-endian)
  std::vector<png_color> palette;  // PNG_COLOR_TYPE_PALETTE
  std::vector<uint8_t> trns;       // palette alpha entries
  std::vector<uint8_t> exif;       // eXIf chunk payload
};

inline void png_append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}

inline std::vector<uint8_t> encode_png(const PngSpec& s) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) throw std::runtime_error("libpng write failed");
  png_set_write_fn(png, &out, png_append, nullptr);
  png_set_IHDR(png, info, s.width, s.height, s.bit_depth, s.color_type,
               s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty())
    png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  if (!s.trns.empty())
    png_set_tRNS(png, info, s.trns.data(), static_cast<int>(s.trns.size()), nullptr);
  if (!s.exif.empty())
    png_set_eXIf_1(png, info, static_cast<png_uint_32>(s.exif.size()),
                   const_cast<png_bytep>(s.exif.data()));
  png_write_info(png, info);
  const size_t rowbytes = s.rows.size() / s.height;
  std::vector<png_bytep> rows(s.height);
  for (int y = 0; y < s.height; ++y) rows[y] = const_cast<png_bytep>(s.rows.data() + y * rowbytes);
  png_write_image(png, rows.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

// A TIFF block with IFD0 holding only Orientation (SHORT), little- or big-endian.
inline std::vector<uint8_t> exif_with_orientation(int orientation, bool little = true) {
  std::vector<uint8_t> t = little ? std::vector<uint8_t>{'I', 'I', 42, 0, 8, 0, 0, 0}
                                  : std::vector<uint8_t>{'M', 'M', 0, 42, 0, 0, 0, 8};
  auto put16 = [&](unsigned v) {
    if (little)
      t.insert(t.end(), {uint8_t(v), uint8_t(v >> 8)});
    else
      t.insert(t.end(), {uint8_t(v >> 8), uint8_t(v)});
  };
  auto put32 = [&](unsigned v) {
    if (little) {
      put16(v & 0xffff);
      put16(v >> 16);
    } else {
      put16(v >> 16);
      put16(v & 0xffff);
    }
  };
  put16(1);            // one entry
  put16(0x0112);       // Orientation
  put16(3);            // SHORT
  put32(1);            // count
  put16(orientation);  // value, left-justified in the 4-byte field
  put16(0);
  put32(0);  // no next IFD
  return t;
}

// components 3 (RGB) or 1 (gray); `exif` (a TIFF block) goes into an APP1 "Exif\0\0" marker.
inline std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& pixels, int width, int height,
                                        int components, int quality,
                                        const std::vector<uint8_t>& exif = {}) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = width;
  c.image_height = height;
  c.input_components = components;
  c.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  if (!exif.empty()) {
    std::vector<uint8_t> app1 = {'E', 'x', 'i', 'f', 0, 0};
    app1.insert(app1.end(), exif.begin(), exif.end());
    jpeg_write_marker(&c, JPEG_APP0 + 1, app1.data(), static_cast<unsigned>(app1.size()));
  }
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(pixels.data() + c.next_scanline * width * components);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  return out;
}

inline std::vector<uint8_t> encode_webp_lossless(const std::vector<uint8_t>& rgba, int width,
                                                 int height) {
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGBA(rgba.data(), width, height, width * 4, &out);
  std::vector<uint8_t> v(out, out + n);
  WebPFree(out);
  return v;
}

}  // namespace fitlm::vision::test
