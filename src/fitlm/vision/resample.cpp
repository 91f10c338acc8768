#include "fitlm/vision/resample.h"

#include <algorithm>
#include <cmath>

#include "fitlm/core/error.h"

namespace fitlm::vision {
namespace {

// ATen's HelperInterpCubic::aa_filter with A = -0.5 (cubic_convolution1/2 of UpSample.h).
double torch_cubic(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

// Pillow's bicubic_filter (Resample.c), a = -0.5: the outer piece factored the other way,
// which can round differently in the last bit.
double pil_cubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

int32_t to_fixed(double v, int precision) {
  const double s = v * static_cast<double>(1 << precision);
  return static_cast<int32_t>(s < 0 ? -0.5 + s : 0.5 + s);
}

}  // namespace

AxisWeights bicubic_axis_weights(int64_t in_size, int64_t out_size, ResizeBackend backend) {
  FITLM_CHECK(in_size > 0 && out_size > 0, "vision", "resize {} -> {}", in_size, out_size);
  const bool pil = backend == ResizeBackend::kPil;
  AxisWeights a;
  a.in_size = in_size;
  a.out_size = out_size;
  // Both: scale = in/out in double, support 2 * max(scale, 1), centre (i + 0.5) * scale,
  // taps [int(centre - support + 0.5), int(centre + support + 0.5)) clipped to the input,
  // weights filter((j - centre + 0.5) / max(scale, 1)) normalised to sum 1.
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = scale >= 1.0 ? scale : 1.0;
  const double support = 2.0 * filterscale;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  a.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  a.start.resize(out_size);
  a.count.resize(out_size);
  std::vector<double> wf(static_cast<size_t>(out_size * a.ksize), 0.0);
  double wt_max = 0.0;
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    int64_t xsize = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp<int64_t>(xsize, 0, a.ksize);  // ATen's guard against a rounding overrun
    double* k = wf.data() + i * a.ksize;
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      const double x = (static_cast<double>(j + xmin) - center + 0.5) * invscale;
      k[j] = pil ? pil_cubic(x) : torch_cubic(x);
      total += k[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        k[j] /= total;
        wt_max = std::max(wt_max, k[j]);
      }
    }
    a.start[i] = xmin;
    a.count[i] = xsize;
  }
  if (pil) {
    a.precision = 22;  // PRECISION_BITS = 32 - 8 - 2
  } else {
    // The largest precision whose largest weight still fits int16 one bit up.
    int p = 0;
    for (p = 0; p < 22; ++p) {
      const int next = static_cast<int>(0.5 + wt_max * static_cast<double>(1 << (p + 1)));
      if (next >= (1 << 15)) break;
    }
    a.precision = p;
  }
  a.w.resize(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) a.w[i] = to_fixed(wf[i], a.precision);
  return a;
}

namespace {

uint8_t clamp_shift(int64_t acc, int precision) {
  const int64_t v = acc >> precision;  // arithmetic shift, as both libraries' int sums
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

int64_t rounding_bias(int precision) {
  return precision > 0 ? int64_t{1} << (precision - 1) : 0;
}

RgbImage resample_horizontal(const RgbImage& in, const AxisWeights& a) {
  RgbImage out(in.height, a.out_size);
  const int64_t bias = rounding_bias(a.precision);
  for (int64_t y = 0; y < in.height; ++y) {
    const uint8_t* src = in.row(y);
    uint8_t* dst = out.row(y);
    for (int64_t x = 0; x < a.out_size; ++x) {
      const int32_t* k = a.w.data() + x * a.ksize;
      const uint8_t* s = src + a.start[x] * 3;
      for (int c = 0; c < 3; ++c) {
        int64_t acc = bias;
        for (int64_t j = 0; j < a.count[x]; ++j) acc += int64_t{k[j]} * s[j * 3 + c];
        dst[x * 3 + c] = clamp_shift(acc, a.precision);
      }
    }
  }
  return out;
}

RgbImage resample_vertical(const RgbImage& in, const AxisWeights& a) {
  RgbImage out(a.out_size, in.width);
  const int64_t bias = rounding_bias(a.precision);
  const int64_t n = in.width * 3;
  std::vector<int64_t> acc(static_cast<size_t>(n));
  for (int64_t y = 0; y < a.out_size; ++y) {
    std::fill(acc.begin(), acc.end(), bias);
    const int32_t* k = a.w.data() + y * a.ksize;
    for (int64_t j = 0; j < a.count[y]; ++j) {
      const uint8_t* src = in.row(a.start[y] + j);
      for (int64_t i = 0; i < n; ++i) acc[i] += int64_t{k[j]} * src[i];
    }
    uint8_t* dst = out.row(y);
    for (int64_t i = 0; i < n; ++i) dst[i] = clamp_shift(acc[i], a.precision);
  }
  return out;
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& in, int64_t out_height, int64_t out_width,
                        ResizeBackend backend) {
  FITLM_CHECK(out_height > 0 && out_width > 0, "vision", "resize to {}x{}", out_height, out_width);
  if (out_height == in.height && out_width == in.width) return in;
  RgbImage cur = in;
  if (out_width != in.width)
    cur = resample_horizontal(cur, bicubic_axis_weights(in.width, out_width, backend));
  if (out_height != in.height)
    cur = resample_vertical(cur, bicubic_axis_weights(in.height, out_height, backend));
  return cur;
}

}  // namespace fitlm::vision
