// Qwen2-VL patch rows (transformers 5.17 Qwen2VLImageProcessor.patchify): a normalised image
// [C, H, W] becomes [grid_h * grid_w, C * T * P * P] with grid = H / P, W / P, where
//   rows    go merge-block row, merge-block column, row inside the block, column inside it
//           (so each merge_size^2 group of rows is one token after the vision merger);
//   features go channel, temporal copy, patch row, patch column.
// A still image is its own temporal_patch_size frames (grid_t = 1): the T copies are equal.
// As the index map: row ((bh * (gw / M) + bw) * M + mh) * M + mw, feature
// ((c * T + t) * P + py) * P + px holds chw[c][(bh * M + mh) * P + py][(bw * M + mw) * P + px].
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace fitlm::vision {

// `chw` is [3, height, width]; height and width are multiples of patch * merge.
std::vector<float> patchify(std::span<const float> chw, int64_t height, int64_t width,
                            int64_t patch, int64_t merge, int64_t temporal);

}  // namespace fitlm::vision
