// merge_safetensors: every tensor of every input, bytes, dtype and shape as they were; a name
// in two inputs refused naming both files.
#include "fitlm/io/safetensors_merge.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "../text/test_temp_dir.h"
#include "fitlm/core/error.h"
#include "fitlm/io/safetensors.h"

namespace fitlm::io {
namespace {

TEST(SafetensorsMerge, KeepsEveryTensorAsItWas) {
  test::TempDir tmp("st_merge");
  std::mt19937 rng(4);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> a(6), b(12), c(5);
  for (auto* v : {&a, &b, &c})
    for (float& x : *v) x = n(rng);
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5};
  SafetensorsWriter w1, w2;
  w1.add_f32("base_model.model.layers.0.q.lora_A.weight", StDType::kF32, {2, 3}, a.data());
  w1.add_f32("base_model.model.layers.0.q.lora_B.weight", StDType::kBF16, {3, 4}, b.data());
  w2.add_f32("base_model.model.layers.1.q.lora_A.weight", StDType::kF16, {5}, c.data());
  w2.add_bytes("ids", StDType::kI32, {5}, ids.data());
  w1.write(tmp.path() / "stage-0.safetensors");
  w2.write(tmp.path() / "stage-1.safetensors");
  merge_safetensors({tmp.path() / "stage-0.safetensors", tmp.path() / "stage-1.safetensors"},
                    tmp.path() / "merged.safetensors");
  const SafetensorsFile m = SafetensorsFile::open(tmp.path() / "merged.safetensors");
  ASSERT_EQ(m.tensors().size(), 4u);
  for (const char* part : {"stage-0", "stage-1"}) {
    const SafetensorsFile f =
        SafetensorsFile::open(tmp.path() / (std::string(part) + ".safetensors"));
    for (const SafetensorsTensorInfo& t : f.tensors()) {
      const SafetensorsTensorInfo& got = m.info(t.name);
      EXPECT_EQ(got.dtype, t.dtype) << t.name;
      EXPECT_EQ(got.shape, t.shape) << t.name;
      ASSERT_EQ(got.bytes(), t.bytes()) << t.name;
      EXPECT_EQ(std::memcmp(m.data(t.name), f.data(t.name), t.bytes()), 0) << t.name;
    }
  }
}

TEST(SafetensorsMerge, ANameInTwoInputsIsRefused) {
  test::TempDir tmp("st_merge_dup");
  const std::vector<float> v = {1.5f, -2.0f};
  SafetensorsWriter w;
  w.add_f32("x", StDType::kF32, {2}, v.data());
  w.write(tmp.path() / "a.safetensors");
  w.write(tmp.path() / "b.safetensors");
  try {
    merge_safetensors({tmp.path() / "a.safetensors", tmp.path() / "b.safetensors"},
                      tmp.path() / "m.safetensors");
    ADD_FAILURE() << "merged a duplicate";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(e.message().find("tensor 'x' is in both"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("b.safetensors"), std::string::npos) << e.message();
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "m.safetensors"));
}

}  // namespace
}  // namespace fitlm::io
