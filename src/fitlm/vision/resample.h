// Bicubic resizing of 8-bit RGB with the fixed-point arithmetic of the two libraries that the
// Hugging Face Qwen-VL image processors resize with (transformers 5.17):
//
//  - kTorchvision: the default processor (Qwen2VLImageProcessor on the TorchvisionBackend)
//    calls torchvision.transforms.v2.functional.resize(uint8 CHW, BICUBIC, antialias=True).
//    On the CPU torchvision hands uint8 straight to torch.nn.functional.interpolate
//    (_do_native_uint8_resize_on_cpu is true for BICUBIC), i.e. ATen's
//    _upsample_bicubic2d_aa on uint8 (UpSampleKernel.cpp): per axis, Keys cubic weights
//    (a = -0.5) over a support of 2 * max(1, in/out), normalised in double, then rounded to
//    int16 with a precision chosen from the largest weight
//    (_compute_index_ranges_int16_weights); horizontal pass first, a uint8 intermediate, then
//    the vertical pass; each output = clamp((2^(p-1) + sum w*x) >> p, 0, 255). The AVX2 and
//    generic kernels do the same integer sums, so the result does not depend on the CPU.
//    (On a GPU, or passing float images, torchvision takes a float path: +-1 level apart.)
//  - kPil: the PIL processor (Qwen2VLImageProcessorPil, `backend="pil"`) calls
//    PIL.Image.resize(BICUBIC): the same filter and bounds (Resample.c precompute_coeffs), but
//    a fixed 22-bit precision and PIL's own spelling of the cubic's outer piece.
//
// Both skip an axis whose size does not change, and return the image itself when neither does.
#pragma once

#include <cstdint>
#include <vector>

#include "fitlm/vision/rgb_image.h"

namespace fitlm::vision {

enum class ResizeBackend { kTorchvision, kPil };

// One axis of a separable resampler: output i reads `count[i]` inputs from `start[i]` with the
// integer weights w[i * ksize ...] at `precision` fractional bits.
struct AxisWeights {
  int64_t in_size = 0, out_size = 0;
  int64_t ksize = 0;
  int precision = 0;
  std::vector<int64_t> start, count;  // [out_size]
  std::vector<int32_t> w;             // [out_size, ksize]
};

AxisWeights bicubic_axis_weights(int64_t in_size, int64_t out_size, ResizeBackend backend);

RgbImage resize_bicubic(const RgbImage& in, int64_t out_height, int64_t out_width,
                        ResizeBackend backend);

}  // namespace fitlm::vision
