#include "fitlm/vision/patchify.h"

#include "fitlm/core/error.h"

namespace fitlm::vision {

std::vector<float> patchify(std::span<const float> chw, int64_t height, int64_t width,
                            int64_t patch, int64_t merge, int64_t temporal) {
  constexpr int64_t kChannels = 3;
  FITLM_CHECK(height % (patch * merge) == 0 && width % (patch * merge) == 0, "vision",
              "{}x{} is not a multiple of {}", height, width, patch * merge);
  FITLM_CHECK(static_cast<int64_t>(chw.size()) == kChannels * height * width, "vision",
              "{} values for 3x{}x{}", chw.size(), height, width);
  const int64_t gh = height / patch, gw = width / patch;
  const int64_t features = kChannels * temporal * patch * patch;
  std::vector<float> out(static_cast<size_t>(gh * gw * features));
  float* dst = out.data();
  for (int64_t bh = 0; bh < gh / merge; ++bh)
    for (int64_t bw = 0; bw < gw / merge; ++bw)
      for (int64_t mh = 0; mh < merge; ++mh)
        for (int64_t mw = 0; mw < merge; ++mw) {
          const int64_t y0 = (bh * merge + mh) * patch, x0 = (bw * merge + mw) * patch;
          for (int64_t c = 0; c < kChannels; ++c)
            for (int64_t t = 0; t < temporal; ++t)
              for (int64_t py = 0; py < patch; ++py) {
                const float* src = chw.data() + (c * height + y0 + py) * width + x0;
                for (int64_t px = 0; px < patch; ++px) *dst++ = src[px];
              }
        }
  return out;
}

}  // namespace fitlm::vision
