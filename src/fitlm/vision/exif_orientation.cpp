#include "fitlm/vision/exif_orientation.h"

#include <cstring>

namespace fitlm::vision {

int exif_orientation(std::span<const uint8_t> exif) {
  if (exif.size() >= 6 && std::memcmp(exif.data(), "Exif\0\0", 6) == 0) exif = exif.subspan(6);
  if (exif.size() < 8) return 1;
  bool little;
  if (exif[0] == 'I' && exif[1] == 'I') {
    little = true;
  } else if (exif[0] == 'M' && exif[1] == 'M') {
    little = false;
  } else {
    return 1;
  }
  auto u16 = [&](size_t at) -> uint32_t {
    return little ? exif[at] | (exif[at + 1] << 8) : (exif[at] << 8) | exif[at + 1];
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return little ? u16(at) | (u16(at + 2) << 16) : (u16(at) << 16) | u16(at + 2);
  };
  if (u16(2) != 42) return 1;
  const size_t ifd = u32(4);
  if (ifd > exif.size() || exif.size() - ifd < 2) return 1;
  const size_t entries = u16(ifd);
  for (size_t i = 0; i < entries; ++i) {
    const size_t e = ifd + 2 + 12 * i;
    if (e + 12 > exif.size()) return 1;
    if (u16(e) != 0x0112) continue;
    const uint32_t type = u16(e + 2), count = u32(e + 4);
    // PIL reads a SHORT (or LONG) of count 1; a tuple value matches none of its methods.
    uint32_t v = 0;
    if (type == 3 && count == 1) {
      v = u16(e + 8);
    } else if (type == 4 && count == 1) {
      v = u32(e + 8);
    } else {
      return 1;
    }
    return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
  }
  return 1;
}

RgbImage apply_exif_orientation(const RgbImage& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int64_t h = in.height, w = in.width;
  const bool swap = orientation >= 5;
  RgbImage out(swap ? w : h, swap ? h : w);
  for (int64_t oy = 0; oy < out.height; ++oy) {
    uint8_t* dst = out.row(oy);
    for (int64_t ox = 0; ox < out.width; ++ox) {
      int64_t sy = oy, sx = ox;  // the source pixel that lands at (oy, ox)
      switch (orientation) {
        case 2: sx = w - 1 - ox; break;
        case 3: sy = h - 1 - oy, sx = w - 1 - ox; break;
        case 4: sy = h - 1 - oy; break;
        case 5: sy = ox, sx = oy; break;
        case 6: sy = h - 1 - ox, sx = oy; break;
        case 7: sy = h - 1 - ox, sx = w - 1 - oy; break;
        case 8: sy = ox, sx = w - 1 - oy; break;
      }
      std::memcpy(dst + ox * 3, in.row(sy) + sx * 3, 3);
    }
  }
  return out;
}

}  // namespace fitlm::vision
