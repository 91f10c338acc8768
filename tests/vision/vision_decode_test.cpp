// Decoding to RGB as PIL's open + exif_transpose + convert("RGB") does (vision/image_load.h),
// on images encoded here from random pixels, and the errors bad files give.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "fitlm/core/error.h"
#include "fitlm/vision/exif_orientation.h"
#include "fitlm/vision/image_decoders.h"
#include "fitlm/vision/image_format.h"
#include "fitlm/vision/image_load.h"
#include "fitlm/vision/preprocess.h"
#include "image_test_util.h"

// PngSpec literals name only the fields a test sets; GCC 12 warns about designated
// initializers that leave defaulted members out.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace fitlm::vision {
namespace {

using test::encode_jpeg;
using test::encode_png;
using test::PngSpec;
using test::random_bytes;

// The RGB a pixel function gives: expected[y][x] = f(x, y).
template <typename F>
RgbImage expected_image(int w, int h, F f) {
  RgbImage e(h, w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::array<uint8_t, 3> p = f(x, y);
      std::copy(p.begin(), p.end(), e.row(y) + x * 3);
    }
  return e;
}

void expect_same(const RgbImage& got, const RgbImage& want) {
  ASSERT_EQ(got.height, want.height);
  ASSERT_EQ(got.width, want.width);
  EXPECT_TRUE(got.pixels == want.pixels);
}

TEST(VisionDecode, FormatFromMagicBytesNotName) {
  const auto png = encode_png({.width = 3, .height = 2, .rows = random_bytes(18, 1)});
  EXPECT_EQ(detect_image_format(png), ImageFormat::kPng);
  const auto jpg = encode_jpeg(random_bytes(12, 2), 2, 2, 3, 90);
  EXPECT_EQ(detect_image_format(jpg), ImageFormat::kJpeg);
  const auto webp = test::encode_webp_lossless(random_bytes(16, 3, 1, 255), 2, 2);
  EXPECT_EQ(detect_image_format(webp), ImageFormat::kWebp);
  // A PNG named .jpg decodes as the PNG it is.
  EXPECT_EQ(decode_image(png, "photo.jpg").width, 3);
}

TEST(VisionDecode, PngRgbAndRgbaDropAlpha) {
  const int w = 7, h = 5;
  const auto rgb = random_bytes(w * h * 3, 10);
  expect_same(decode_image(encode_png({.width = w, .height = h, .rows = rgb}), "a.png"),
              expected_image(w, h, [&](int x, int y) {
                const uint8_t* p = &rgb[(y * w + x) * 3];
                return std::array<uint8_t, 3>{p[0], p[1], p[2]};
              }));
  const auto rgba = random_bytes(w * h * 4, 11);
  for (bool interlaced : {false, true}) {
    const auto file = encode_png({.width = w,
                                  .height = h,
                                  .color_type = PNG_COLOR_TYPE_RGBA,
                                  .interlaced = interlaced,
                                  .rows = rgba});
    // Dropped, not composited over a background: convert("RGB") from RGBA keeps R, G, B.
    expect_same(decode_image(file, "b.png"), expected_image(w, h, [&](int x, int y) {
                  const uint8_t* p = &rgba[(y * w + x) * 4];
                  return std::array<uint8_t, 3>{p[0], p[1], p[2]};
                }));
  }
}

TEST(VisionDecode, PngGrayGrayAlphaAndLowBitDepth) {
  const int w = 9, h = 4;
  const auto g = random_bytes(w * h, 20);
  expect_same(
      decode_image(
          encode_png({.width = w, .height = h, .color_type = PNG_COLOR_TYPE_GRAY, .rows = g}),
          "g.png"),
      expected_image(w, h, [&](int x, int y) {
        const uint8_t v = g[y * w + x];
        return std::array<uint8_t, 3>{v, v, v};
      }));
  const auto ga = random_bytes(w * h * 2, 21);
  expect_same(
      decode_image(
          encode_png(
              {.width = w, .height = h, .color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .rows = ga}),
          "ga.png"),
      expected_image(w, h, [&](int x, int y) {
        const uint8_t v = ga[(y * w + x) * 2];
        return std::array<uint8_t, 3>{v, v, v};
      }));
  // 2-bit gray: four pixels a byte, most significant first; PIL's L;2 scales v to v * 85.
  const auto levels = random_bytes(w * h, 22, 0, 3);
  std::vector<uint8_t> packed(((w + 3) / 4) * h, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      packed[y * ((w + 3) / 4) + x / 4] |= levels[y * w + x] << (6 - 2 * (x % 4));
  expect_same(decode_image(encode_png({.width = w,
                                       .height = h,
                                       .color_type = PNG_COLOR_TYPE_GRAY,
                                       .bit_depth = 2,
                                       .rows = packed}),
                           "g2.png"),
              expected_image(w, h, [&](int x, int y) {
                const uint8_t v = static_cast<uint8_t>(levels[y * w + x] * 85);
                return std::array<uint8_t, 3>{v, v, v};
              }));
}

TEST(VisionDecode, PngPaletteIgnoresTransparency) {
  const int w = 6, h = 6;
  std::vector<png_color> pal(16);
  const auto pal_bytes = random_bytes(16 * 3, 30);
  for (int i = 0; i < 16; ++i)
    pal[i] = {pal_bytes[i * 3], pal_bytes[i * 3 + 1], pal_bytes[i * 3 + 2]};
  const auto idx = random_bytes(w * h, 31, 0, 15);
  const auto file = encode_png({.width = w,
                                .height = h,
                                .color_type = PNG_COLOR_TYPE_PALETTE,
                                .rows = idx,
                                .palette = pal,
                                .trns = random_bytes(16, 32)});
  expect_same(decode_image(file, "p.png"), expected_image(w, h, [&](int x, int y) {
                const png_color c = pal[idx[y * w + x]];
                return std::array<uint8_t, 3>{c.red, c.green, c.blue};
              }));
}

TEST(VisionDecode, Png16BitHighByteButGrayClips) {
  const int w = 5, h = 3;
  const auto rgb16 = random_bytes(w * h * 6, 40);  // big-endian samples
  expect_same(decode_image(encode_png({.width = w, .height = h, .bit_depth = 16, .rows = rgb16}),
                           "c16.png"),
              expected_image(w, h, [&](int x, int y) {
                const uint8_t* p = &rgb16[(y * w + x) * 6];
                return std::array<uint8_t, 3>{p[0], p[2], p[4]};
              }));
  // Gray 16 without alpha: PIL's I;16 -> RGB clips (values below 256 kept, the rest 255).
  std::vector<uint8_t> g16(w * h * 2);
  const auto hi = random_bytes(w * h, 41, 0, 2), lo = random_bytes(w * h, 42);
  for (int i = 0; i < w * h; ++i) g16[2 * i] = hi[i], g16[2 * i + 1] = lo[i];
  expect_same(decode_image(encode_png({.width = w,
                                       .height = h,
                                       .color_type = PNG_COLOR_TYPE_GRAY,
                                       .bit_depth = 16,
                                       .rows = g16}),
                           "g16.png"),
              expected_image(w, h, [&](int x, int y) {
                const int i = y * w + x;
                const uint8_t v = hi[i] ? 255 : lo[i];
                return std::array<uint8_t, 3>{v, v, v};
              }));
}

TEST(VisionDecode, Png16BitGrayAlphaKeepsHighByte) {
  const int w = 4, h = 3;
  const auto ga16 = random_bytes(w * h * 4, 43);  // gray hi, lo, alpha hi, lo
  expect_same(decode_image(encode_png({.width = w,
                                       .height = h,
                                       .color_type = PNG_COLOR_TYPE_GRAY_ALPHA,
                                       .bit_depth = 16,
                                       .rows = ga16}),
                           "ga16.png"),
              expected_image(w, h, [&](int x, int y) {
                const uint8_t v = ga16[(y * w + x) * 4];
                return std::array<uint8_t, 3>{v, v, v};
              }));
}

TEST(VisionDecode, CmykJpegIsRefused) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = 4;
  c.image_height = 4;
  c.input_components = 4;
  c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  const auto px = random_bytes(64, 52);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(px.data() + c.next_scanline * 16);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  const std::vector<uint8_t> file(buf, buf + size);
  std::free(buf);
  try {
    decode_image(file, "cmyk.jpg");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cmyk.jpg: CMYK JPEG is not supported"), std::string::npos)
        << e.what();
  }
}

TEST(VisionDecode, JpegRgbAndGray) {
  const int w = 16, h = 8;
  // Smooth content so quality-100 JPEG comes back within a few levels.
  std::vector<uint8_t> rgb(w * h * 3);
  const auto base = random_bytes(3, 50, 40, 200);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) rgb[(y * w + x) * 3 + c] = static_cast<uint8_t>(base[c] + x + y);
  const RgbImage got = decode_image(encode_jpeg(rgb, w, h, 3, 100), "c.jpg");
  ASSERT_EQ(got.width, w);
  ASSERT_EQ(got.height, h);
  int worst = 0;
  for (size_t i = 0; i < rgb.size(); ++i) worst = std::max(worst, std::abs(got.pixels[i] - rgb[i]));
  EXPECT_LE(worst, 6);
  const auto gray = random_bytes(w * h, 51, 100, 110);
  const RgbImage g = decode_image(encode_jpeg(gray, w, h, 1, 95), "g.jpg");
  for (int64_t i = 0; i < w * h; ++i) {
    EXPECT_EQ(g.pixels[i * 3], g.pixels[i * 3 + 1]);
    EXPECT_EQ(g.pixels[i * 3], g.pixels[i * 3 + 2]);
  }
}

TEST(VisionDecode, OrientationMapsOnAHandImage) {
  // 3 wide, 2 high; pixel value = 10 * row + column in every channel.
  RgbImage in(2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) std::fill_n(in.row(y) + x * 3, 3, static_cast<uint8_t>(10 * y + x));
  auto rows = [](const RgbImage& im) {
    std::vector<std::vector<int>> r(im.height);
    for (int64_t y = 0; y < im.height; ++y)
      for (int64_t x = 0; x < im.width; ++x) r[y].push_back(im.row(y)[x * 3]);
    return r;
  };
  using R = std::vector<std::vector<int>>;
  EXPECT_EQ(rows(apply_exif_orientation(in, 1)), (R{{0, 1, 2}, {10, 11, 12}}));
  EXPECT_EQ(rows(apply_exif_orientation(in, 2)), (R{{2, 1, 0}, {12, 11, 10}}));
  EXPECT_EQ(rows(apply_exif_orientation(in, 3)), (R{{12, 11, 10}, {2, 1, 0}}));
  EXPECT_EQ(rows(apply_exif_orientation(in, 4)), (R{{10, 11, 12}, {0, 1, 2}}));
  EXPECT_EQ(rows(apply_exif_orientation(in, 5)), (R{{0, 10}, {1, 11}, {2, 12}}));
  EXPECT_EQ(rows(apply_exif_orientation(in, 6)), (R{{10, 0}, {11, 1}, {12, 2}}));  // clockwise
  EXPECT_EQ(rows(apply_exif_orientation(in, 7)), (R{{12, 2}, {11, 1}, {10, 0}}));
  EXPECT_EQ(rows(apply_exif_orientation(in, 8)), (R{{2, 12}, {1, 11}, {0, 10}}));
}

TEST(VisionDecode, ExifOrientationFromJpegPngAndBothByteOrders) {
  const int w = 8, h = 3;
  const auto rgb = random_bytes(w * h * 3, 60);
  const RgbImage upright =
      decode_image(encode_png({.width = w, .height = h, .rows = rgb}), "u.png");
  for (int o = 1; o <= 8; ++o) {
    for (bool little : {true, false}) {
      const auto exif = test::exif_with_orientation(o, little);
      EXPECT_EQ(exif_orientation(exif), o);
      const auto png = encode_png({.width = w, .height = h, .rows = rgb, .exif = exif});
      expect_same(decode_image(png, "o.png"), apply_exif_orientation(upright, o));
    }
  }
  const auto jpg_plain = encode_jpeg(rgb, w, h, 3, 90);
  const auto jpg_rot = encode_jpeg(rgb, w, h, 3, 90, test::exif_with_orientation(6));
  const RgbImage plain = decode_image(jpg_plain, "p.jpg");
  const RgbImage rotated = decode_image(jpg_rot, "r.jpg");
  EXPECT_EQ(rotated.width, h);
  EXPECT_EQ(rotated.height, w);
  expect_same(rotated, apply_exif_orientation(plain, 6));
  // Values PIL ignores leave the image as stored.
  EXPECT_EQ(exif_orientation(test::exif_with_orientation(9)), 1);
  EXPECT_EQ(exif_orientation(std::vector<uint8_t>{'I', 'I', 42, 0, 200, 0, 0, 0}), 1);
}

TEST(VisionDecode, WebpLosslessDropsAlpha) {
  const int w = 5, h = 4;
  const auto rgba = random_bytes(w * h * 4, 70, 1, 255);  // alpha > 0: lossless keeps RGB
  expect_same(decode_image(test::encode_webp_lossless(rgba, w, h), "w.webp"),
              expected_image(w, h, [&](int x, int y) {
                const uint8_t* p = &rgba[(y * w + x) * 4];
                return std::array<uint8_t, 3>{p[0], p[1], p[2]};
              }));
}

// The message of the input error `f` throws, or "" (and a test failure) if it throws none.
template <typename F>
std::string input_error(F f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(VisionDecode, BadImagesNameTheFile) {
  const auto png = encode_png({.width = 20, .height = 10, .rows = random_bytes(600, 80)});
  const auto jpg = encode_jpeg(random_bytes(20 * 10 * 3, 81), 20, 10, 3, 90);
  const auto webp = test::encode_webp_lossless(random_bytes(20 * 10 * 4, 82, 1, 255), 20, 10);
  for (const auto* file : {&png, &jpg, &webp}) {
    const std::vector<uint8_t> cut(file->begin(), file->begin() + file->size() * 2 / 3);
    const std::string e = input_error([&] { decode_image(cut, "dir/cut.img"); });
    EXPECT_NE(e.find("[vision] dir/cut.img: corrupt or truncated"), std::string::npos) << e;
  }
  EXPECT_NE(input_error([] { decode_image({}, "empty.png"); }).find("empty.png: empty file"),
            std::string::npos);
  const std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
  EXPECT_NE(input_error([&] {
              decode_image(gif, "x.gif");
            }).find("x.gif: unsupported image format: GIF (expected JPEG, PNG or WebP)"),
            std::string::npos);
  EXPECT_NE(input_error([] {
              decode_image(random_bytes(64, 83), "noise.bin");
            }).find("noise.bin: unsupported image format: not an image file"),
            std::string::npos);
  EXPECT_NE(input_error([] {
              load_image("/nonexistent/dir/a.png");
            }).find("/nonexistent/dir/a.png: cannot open"),
            std::string::npos);
}

TEST(VisionDecode, OversizedAndZeroSizedAreRefusedBeforeDecoding) {
  // A PNG whose header claims 20000 x 20000 (4e8 pixels, past PIL's bomb limit): refused from
  // the header, before the pixel buffer; the rest of the file is junk and is never read.
  auto png = encode_png({.width = 20, .height = 10, .rows = random_bytes(600, 90)});
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) png[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  };
  put32(16, 20000);
  put32(20, 20000);
  png_uint_32 crc = crc32(0, png.data() + 12, 17);  // IHDR type + data
  put32(29, crc);
  EXPECT_NE(input_error([&] {
              decode_image(png, "big.png");
            }).find("big.png: 20000x20000 = 400000000 pixels is over the limit"),
            std::string::npos);
  const std::string e = input_error([] { check_image_size(0, 5, "zero.png"); });
  EXPECT_NE(e.find("zero.png: the image has no pixels (0x5)"), std::string::npos) << e;
}

TEST(VisionDecode, AspectRatioOver200IsARowErrorNamingTheFile) {
  const auto file = encode_png({.width = 1, .height = 201, .rows = random_bytes(603, 95)});
  const RgbImage im = decode_image(file, "thin.png");
  const std::string e = input_error([&] {
    preprocess_image(im, VisionPreprocessConfig{}, ResizeBackend::kTorchvision, "thin.png");
  });
  EXPECT_NE(e.find("thin.png: 1x201 has an aspect ratio of 201"), std::string::npos) << e;
}

}  // namespace
}  // namespace fitlm::vision
