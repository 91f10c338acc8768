// fitlm's image pipeline against transformers 5.17's own Qwen2-VL image processors: the
// fixtures (tests/vision/fixtures, made on the device by scripts/device/vision_fixtures.py)
// hold 23 generated image files (PNG gray/gray16/RGBA/LA/palette+tRNS/1-bit, JPEG RGB 4:2:0
// and 4:4:4/gray/EXIF-rotated 3, 5, 6, 8, WebP lossy and lossless with alpha; upscaled,
// downscaled, one axis unchanged, tall, aspect refused) and HF's outputs for three configs:
//   - the RGB that load_image gives (shape and FNV-1a 64 of the bytes): decoding must be equal;
//   - pixel_values and image_grid_thw of the default processor (torchvision backend): equal
//     bit for bit in float32;
//   - the same of the PIL processor: equal bit for bit too (the tolerance below is 0);
//   - the error text where HF refuses the image.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/vision/image_load.h"
#include "fitlm/vision/preprocess.h"

namespace fitlm::vision {
namespace {

const std::filesystem::path kFixtures =
    std::filesystem::path(FITLM_TEST_DATA_DIR) / "vision" / "fixtures";

// The gzip'd safetensors file, inflated into a temporary file that SafetensorsFile maps.
io::SafetensorsFile open_fixtures() {
  const auto gz_path = kFixtures / "vision_fixtures.safetensors.gz";
  gzFile gz = gzopen(gz_path.c_str(), "rb");
  if (!gz) throw std::runtime_error("cannot open " + gz_path.string());
  std::vector<char> data;
  char buf[1 << 16];
  int n;
  while ((n = gzread(gz, buf, sizeof(buf))) > 0) data.insert(data.end(), buf, buf + n);
  gzclose(gz);
  const auto tmp = std::filesystem::temp_directory_path() /
                   ("fitlm_vision_fixtures_" + std::to_string(::getpid()) + ".safetensors");
  std::ofstream(tmp, std::ios::binary)
      .write(data.data(), static_cast<std::streamsize>(data.size()));
  io::SafetensorsFile f = io::SafetensorsFile::open(tmp);
  std::filesystem::remove(tmp);  // the mapping stays valid
  return f;
}

std::string fnv1a64(const std::vector<uint8_t>& b) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (uint8_t x : b) h = (h ^ x) * 0x100000001B3ull;
  return fmt::format("{:016x}", h);
}

TEST(VisionFixtures, EqualTransformersProcessors) {
  const io::SafetensorsFile st = open_fixtures();
  const json_input::Json manifest =
      json_input::parse_file(kFixtures / "vision_fixtures.json", "test");
  ASSERT_EQ(manifest["versions"]["transformers"], "5.17.0");
  // The default AutoImageProcessor is the torchvision one; backend="pil" the PIL one.
  EXPECT_EQ(manifest["processors"]["small"]["fast"],
            "transformers.models.qwen2_vl.image_processing_qwen2_vl.Qwen2VLImageProcessor");
  EXPECT_EQ(manifest["processors"]["small"]["slow"],
            "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil");
  int compared = 0, refused = 0;
  const auto& cases = manifest["cases"];
  ASSERT_GE(cases.size(), 20u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    const VisionPreprocessConfig config =
        parse_vision_preprocess_config(manifest["configs"][c["config"].get<std::string>()], name);
    const std::span<const std::byte> file = st.bytes(fmt::format("case{}.file", i));
    const RgbImage rgb =
        decode_image({reinterpret_cast<const uint8_t*>(file.data()), file.size()}, name);
    EXPECT_EQ(std::vector<int64_t>({rgb.height, rgb.width, 3}),
              c["rgb_shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(fnv1a64(rgb.pixels), c["rgb_fnv1a64"].get<std::string>()) << "decoded RGB differs";
    for (const auto& [path, backend] :
         {std::pair{"fast", ResizeBackend::kTorchvision}, std::pair{"slow", ResizeBackend::kPil}}) {
      SCOPED_TRACE(path);
      if (c.contains(std::string(path) + "_error")) {
        const std::string hf = c[std::string(path) + "_error"].get<std::string>();
        EXPECT_NE(hf.find("aspect ratio"), std::string::npos) << hf;
        try {
          preprocess_image(rgb, config, backend, name);
          ADD_FAILURE() << "HF refused the image (" << hf << "), fitlm did not";
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("aspect ratio"), std::string::npos) << e.what();
          ++refused;
        }
        continue;
      }
      const PreprocessedImage got = preprocess_image(rgb, config, backend, name);
      const std::string key = fmt::format("case{}.{}.", i, path);
      const io::SafetensorsTensorInfo& info = st.info(key + "pixel_values");
      ASSERT_EQ(info.shape, (std::vector<int64_t>{got.grid.h * got.grid.w, config.features()}));
      std::vector<int64_t> grid(3);
      std::memcpy(grid.data(), st.data(key + "image_grid_thw"), 3 * sizeof(int64_t));
      EXPECT_EQ(grid, (std::vector<int64_t>{got.grid.t, got.grid.h, got.grid.w}));
      std::vector<float> want(static_cast<size_t>(info.numel()));
      st.read_f32(key + "pixel_values", want.data());
      ASSERT_EQ(got.pixel_values.size(), want.size());
      double worst = 0;
      size_t unequal = 0;
      for (size_t k = 0; k < want.size(); ++k) {
        worst = std::max(worst, std::abs(double(got.pixel_values[k]) - double(want[k])));
        unequal += std::memcmp(&got.pixel_values[k], &want[k], sizeof(float)) != 0;
      }
      EXPECT_EQ(unequal, 0u) << "max |diff| " << worst << " over " << want.size() << " values";
      ++compared;
    }
  }
  EXPECT_EQ(compared, 2 * (static_cast<int>(cases.size()) - 1));
  EXPECT_EQ(refused, 2);
}

}  // namespace
}  // namespace fitlm::vision
