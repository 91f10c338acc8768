// EXIF orientation, applied as PIL.ImageOps.exif_transpose applies it (transformers'
// load_image calls it before convert("RGB"), so a phone photo reaches the model upright).
#pragma once

#include <cstdint>
#include <span>

#include "fitlm/vision/rgb_image.h"

namespace fitlm::vision {

// The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block (an optional
// "Exif\0\0" prefix is skipped, as PIL's Exif.load does). 1 (as stored) when the block is
// empty, malformed, has no such tag, or holds a value outside 1..8: exif_transpose then leaves
// the image alone too.
int exif_orientation(std::span<const uint8_t> exif);

// The image turned upright for `orientation`: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
// 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise (PIL's FLIP_LEFT_RIGHT,
// ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90); 1 is a copy.
RgbImage apply_exif_orientation(const RgbImage& in, int orientation);

}  // namespace fitlm::vision
