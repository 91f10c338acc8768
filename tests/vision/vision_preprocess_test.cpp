// smart_resize, preprocessor_config.json parsing and patchify (vision/): edge cases with
// expectations computed by hand or with the formula of transformers 5.17's smart_resize.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "fitlm/core/error.h"
#include "fitlm/vision/patchify.h"
#include "fitlm/vision/preprocess.h"
#include "fitlm/vision/preprocess_config.h"
#include "fitlm/vision/smart_resize.h"

namespace fitlm::vision {
namespace {

using json_input::Json;

std::pair<int64_t, int64_t> sr(int64_t h, int64_t w, int64_t f, int64_t lo, int64_t hi) {
  const ResizedSize s = smart_resize(h, w, f, lo, hi, "img.png");
  return {s.height, s.width};
}

TEST(VisionSmartResize, MatchesTransformersFormula) {
  using P = std::pair<int64_t, int64_t>;
  // Python's round is half to even: 42/28 = 1.5 -> 2, 70/28 = 2.5 -> 2 (not 3).
  EXPECT_EQ(sr(42, 70, 28, 0, 1000000000), (P{56, 56}));
  // Over max_pixels: scaled down by sqrt(hw / max), floored to the factor.
  EXPECT_EQ(sr(1000, 2000, 28, 3136, 100000), (P{196, 420}));
  EXPECT_EQ(sr(4000, 3000, 28, 3136, 1003520), (P{1148, 840}));
  // Under min_pixels (side shorter than the factor too, which 5.17 scales up): ceil'd up.
  EXPECT_EQ(sr(10, 10, 28, 3136, 12845056), (P{56, 56}));
  EXPECT_EQ(sr(7, 9, 32, 65536, 16777216), (P{256, 320}));
  // Plain rounding inside the bounds.
  EXPECT_EQ(sr(480, 640, 28, 3136, 12845056), (P{476, 644}));
  EXPECT_EQ(sr(1080, 1920, 32, 65536, 16777216), (P{1088, 1920}));
  // Aspect 200 is still taken; the upscale need not end under max_pixels (HF does not check).
  EXPECT_EQ(sr(10, 2000, 28, 3136, 12845056), (P{28, 812}));
  EXPECT_EQ(sr(10, 2000, 28, 3136, 20000), (P{28, 812}));
}

TEST(VisionSmartResize, RefusesAspectOver200AndNothingLeft) {
  try {
    sr(10, 2001, 28, 3136, 12845056);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("img.png: 2001x10 has an aspect ratio of 200.1"),
              std::string::npos)
        << e.what();
  }
  // min_pixels 0 and sides under half the factor round to 0: nothing to patchify.
  EXPECT_THROW(sr(10, 12, 28, 0, 100000), Error);
}

TEST(VisionConfig, DefaultsHubFileAndPrecedence) {
  const VisionPreprocessConfig d = parse_vision_preprocess_config(Json::object(), "c.json");
  EXPECT_EQ(d.patch_size, 14);
  EXPECT_EQ(d.min_pixels, 3136);
  EXPECT_EQ(d.max_pixels, 1003520);
  EXPECT_EQ(d.features(), 1176);
  // Qwen2.5-VL's hub file.
  const VisionPreprocessConfig q = parse_vision_preprocess_config(
      Json::parse(R"({"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
        "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.48145466, 0.4578275,
        0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098})"),
      "q.json");
  EXPECT_EQ(q.max_pixels, 12845056);
  EXPECT_EQ(q.factor(), 28);
  // Qwen3-VL style: a size dict, mean = std = 0.5 as one number.
  const VisionPreprocessConfig q3 = parse_vision_preprocess_config(
      Json::parse(R"({"size": {"shortest_edge": 65536, "longest_edge": 16777216},
        "patch_size": 16, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "Qwen2VLImageProcessorFast"})"),
      "q3.json");
  EXPECT_EQ(q3.min_pixels, 65536);
  EXPECT_EQ(q3.factor(), 32);
  EXPECT_EQ(q3.image_mean[2], 0.5);
  // Top-level min/max_pixels win over size, as in Qwen2VLImageProcessor.__init__.
  const VisionPreprocessConfig both = parse_vision_preprocess_config(
      Json::parse(R"({"size": {"shortest_edge": 1, "longest_edge": 2}, "min_pixels": 100,
        "max_pixels": 200})"),
      "b.json");
  EXPECT_EQ(both.min_pixels, 100);
  EXPECT_EQ(both.max_pixels, 200);
}

std::string config_error(const char* text) {
  try {
    parse_vision_preprocess_config(Json::parse(text), "m/preprocessor_config.json");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    return e.what();
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}

TEST(VisionConfig, ErrorsNameFileAndField) {
  const char* f = "[vision] m/preprocessor_config.json: field ";
  auto has = [&](const std::string& e, const std::string& want) {
    EXPECT_NE(e.find(f + want), std::string::npos) << e;
  };
  has(config_error(R"({"patch_size": "14"})"),
      "'patch_size': expected an integer >= 1, found \"14\"");
  has(config_error(R"({"merge_size": 0})"), "'merge_size': expected an integer >= 1, found 0");
  has(config_error(R"({"size": {"shortest_edge": 10}})"), "'size': expected {\"shortest_edge\"");
  has(config_error(R"({"size": {"shortest_edge": 10, "longest_edge": 1.5}})"),
      "'size.longest_edge': expected an integer >= 1, found 1.5");
  has(config_error(R"({"image_mean": [0.5, 0.5]})"), "'image_mean': expected 3 numbers");
  has(config_error(R"({"image_std": [0.5, 0, 0.5]})"), "'image_std': expected numbers > 0");
  has(config_error(R"({"resample": 2})"), "'resample': only 3 (bicubic");
  has(config_error(R"({"do_normalize": "yes"})"), "'do_normalize': expected true or false");
  has(config_error(R"({"image_processor_type": "CLIPImageProcessor"})"),
      "'image_processor_type': expected Qwen2VLImageProcessor");
  has(config_error(R"({"do_convert_rgb": false})"), "'do_convert_rgb': false is not supported");
}

TEST(VisionConfig, FileErrors) {
  const auto dir = std::filesystem::temp_directory_path() / "fitlm_vision_config_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  try {
    load_vision_preprocess_config(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("preprocessor_config.json: no preprocessor_config.json"),
              std::string::npos)
        << e.what();
  }
  std::ofstream(dir / "preprocessor_config.json") << "{\"patch_size\": 14,";
  try {
    load_vision_preprocess_config(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("preprocessor_config.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "preprocessor_config.json") << R"({"patch_size": 4, "merge_size": 2})";
  EXPECT_EQ(load_vision_preprocess_config(dir).factor(), 8);
  EXPECT_EQ(load_vision_preprocess_config(dir / "preprocessor_config.json").patch_size, 4);
  std::filesystem::remove_all(dir);
}

// The transpose HF writes: view chw as (C, T=1 broadcast, gh/M, M, P, gw/M, M, P), permute to
// (gh/M, gw/M, M, M, C, T, P, P), read out contiguous -- done with generic strides here, not
// with patchify's nested loops.
std::vector<float> reference_patchify(const std::vector<float>& chw, int64_t H, int64_t W,
                                      int64_t P, int64_t M, int64_t T) {
  const int64_t C = 3;
  // Source dims and their element strides in chw (t has stride 0: the frames are copies).
  const std::array<int64_t, 8> dims = {C, T, H / P / M, M, P, W / P / M, M, P};
  const std::array<int64_t, 8> strides = {H * W, 0, M * P * W, P * W, W, M * P, P, 1};
  const std::array<int, 8> perm = {2, 5, 3, 6, 0, 1, 4, 7};
  std::vector<float> out;
  std::array<int64_t, 8> idx{};
  const int64_t n = C * T * H * W;
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = 0;
    for (int d = 0; d < 8; ++d) off += idx[perm[d]] * strides[perm[d]];
    out.push_back(chw[off]);
    for (int d = 7; d >= 0; --d) {  // odometer over the permuted dims
      if (++idx[perm[d]] < dims[perm[d]]) break;
      idx[perm[d]] = 0;
    }
  }
  return out;
}

TEST(VisionPatchify, RowAndFeatureOrderMatchHfPermute) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  for (auto [H, W, P, M, T] : std::vector<std::array<int64_t, 5>>{
           {8, 12, 2, 2, 2}, {12, 6, 3, 2, 1}, {28, 56, 14, 2, 2}, {9, 9, 3, 3, 3}}) {
    std::vector<float> chw(3 * H * W);
    for (auto& v : chw) v = u(rng);
    const std::vector<float> got = patchify(chw, H, W, P, M, T);
    EXPECT_EQ(got, reference_patchify(chw, H, W, P, M, T)) << H << "x" << W;
    // The index map of patchify.h for one element, as written there.
    const int64_t gw = W / P, bh = H / P / M - 1, bw = gw / M - 1, mh = M - 1, mw = 0, c = 2,
                  t = T - 1, py = P - 1, px = 1 % P;
    const int64_t row = ((bh * (gw / M) + bw) * M + mh) * M + mw;
    const int64_t feat = ((c * T + t) * P + py) * P + px;
    EXPECT_EQ(got[row * 3 * T * P * P + feat],
              chw[(c * H + (bh * M + mh) * P + py) * W + (bw * M + mw) * P + px]);
  }
}

TEST(VisionPreprocess, NormaliseFusedVersusNumpyOrder) {
  RgbImage im(1, 256);
  for (int i = 0; i < 256; ++i) std::fill_n(im.row(0) + i * 3, 3, static_cast<uint8_t>(i));
  const VisionPreprocessConfig c;
  const std::vector<float> fast = normalize_image(im, c, ResizeBackend::kTorchvision);
  const std::vector<float> pil = normalize_image(im, c, ResizeBackend::kPil);
  int differ = 0;
  for (int ch = 0; ch < 3; ++ch)
    for (int v = 0; v < 256; ++v) {
      const float m = static_cast<float>(c.image_mean[ch]), s = static_cast<float>(c.image_std[ch]);
      EXPECT_EQ(fast[ch * 256 + v], (static_cast<float>(v) - m * 255.f) / (s * 255.f));
      EXPECT_EQ(pil[ch * 256 + v], (static_cast<float>(v / 255.0) - m) / s);
      EXPECT_NEAR(fast[ch * 256 + v], pil[ch * 256 + v], 1e-6);
      differ += fast[ch * 256 + v] != pil[ch * 256 + v];
    }
  EXPECT_GT(differ, 0);  // the two orders do round differently: the backends are not aliases
}

}  // namespace
}  // namespace fitlm::vision
