// Sharded checkpoints: write_sharded + ShardedSafetensors round trips, stale-file cleanup, and
// errors for a broken index.
#include "fitlm/io/safetensors_index.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "safetensors_test_util.h"

namespace fitlm::io {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_bytes;

template <typename Fn>
void expect_bad_input(Fn&& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "expected \"" << needle << "\" in: " << e.what();
    return;
  }
  ADD_FAILURE() << "no error; expected one containing \"" << needle << "\"";
}

// Ten bf16 tensors of 64 values (128 bytes each), values i*1000 + j (exact in bf16 up to 256).
struct TenTensors {
  std::vector<std::vector<float>> values;
  std::vector<SafetensorsEntry> entries;
  TenTensors() {
    values.resize(10);
    for (int i = 0; i < 10; ++i) {
      for (int j = 0; j < 64; ++j) values[i].push_back(static_cast<float>(i * 4 + j % 4));
      entries.push_back(SafetensorsEntry::from_f32(fmt::format("layers.{}.w", i), StDType::kBF16,
                                                   {8, 8}, values[i].data()));
    }
  }
};

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

TEST(ShardedSafetensors, RoundTripAcrossShards) {
  TempDir dir;
  TenTensors t;
  const auto written = write_sharded(dir.path(), t.entries, 300, {{"note", "x"}});  // 2 per shard
  ASSERT_EQ(written.size(), 6u);
  for (int i = 1; i <= 5; ++i)
    EXPECT_TRUE(fs::exists(dir / fmt::format("model-{:05d}-of-00005.safetensors", i)));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));

  const nlohmann::json index = read_json(dir / "model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"], 1280);
  EXPECT_EQ(index["weight_map"]["layers.0.w"], "model-00001-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["layers.9.w"], "model-00005-of-00005.safetensors");

  const ShardedSafetensors st = ShardedSafetensors::open(dir.path());
  EXPECT_EQ(st.shards().size(), 5u);
  EXPECT_EQ(st.names().size(), 10u);
  EXPECT_EQ(st.index_path().filename(), "model.safetensors.index.json");
  EXPECT_EQ(st.shards()[0].metadata().at("note"), "x");
  EXPECT_EQ(st.shards()[0].metadata().at("format"), "pt");
  for (int i = 0; i < 10; ++i) {
    const std::string name = fmt::format("layers.{}.w", i);
    ASSERT_TRUE(st.contains(name));
    EXPECT_EQ(st.info(name).shape, (std::vector<int64_t>{8, 8}));
    std::vector<float> out(64);
    st.read_f32(name, out.data());
    EXPECT_EQ(out, t.values[i]) << name;
    EXPECT_EQ(st.file_of(name).path().filename(),
              fmt::format("model-{:05d}-of-00005.safetensors", i / 2 + 1));
  }
  expect_bad_input([&] { st.info("missing"); }, "tensor 'missing': not in this checkpoint");
  // Opening through the index file itself works too.
  EXPECT_EQ(ShardedSafetensors::open(dir / "model.safetensors.index.json").names().size(), 10u);
}

TEST(ShardedSafetensors, OversizedTensorGetsOwnShard) {
  TempDir dir;
  TenTensors t;
  write_sharded(dir.path(), t.entries, 100, {});  // every tensor (128 B) exceeds the limit
  EXPECT_EQ(ShardedSafetensors::open(dir.path()).shards().size(), 10u);
}

TEST(ShardedSafetensors, SingleFileWhenItFitsAndStaleFilesRemoved) {
  TempDir dir;
  TenTensors t;
  write_sharded(dir.path(), t.entries, 300, {});
  write_bytes(dir / "config.json", "{}");  // not ours: must survive
  const auto written = write_sharded(dir.path(), t.entries, 0, {});
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].filename(), "model.safetensors");
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "model-00001-of-00005.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "config.json"));

  const ShardedSafetensors st = ShardedSafetensors::open(dir.path());
  EXPECT_EQ(st.shards().size(), 1u);
  EXPECT_TRUE(st.index_path().empty());
  std::vector<float> out(64);
  st.read_f32("layers.3.w", out.data());
  EXPECT_EQ(out, t.values[3]);

  // And back to shards: the single file goes, so transformers cannot pick up a stale one.
  write_sharded(dir.path(), t.entries, 700, {});
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_EQ(ShardedSafetensors::open(dir.path()).shards().size(), 2u);
  // Opening a single file directly.
  EXPECT_EQ(ShardedSafetensors::open(dir / "model-00002-of-00002.safetensors").names().size(), 5u);
}

class BrokenIndex : public ::testing::Test {
 protected:
  void SetUp() override { write_sharded(dir_.path(), t_.entries, 700, {}); }  // 2 shards
  void write_index(const std::string& text) {
    write_bytes(dir_ / "model.safetensors.index.json", text);
  }
  void expect_error(const std::string& needle) {
    expect_bad_input([&] { ShardedSafetensors::open(dir_.path()); }, needle);
    expect_bad_input([&] { ShardedSafetensors::open(dir_.path()); },
                     "model.safetensors.index.json");
  }
  TempDir dir_;
  TenTensors t_;
};

TEST_F(BrokenIndex, MissingShardFile) {
  fs::remove(dir_ / "model-00002-of-00002.safetensors");
  expect_error("shard 'model-00002-of-00002.safetensors' (holding tensor 'layers.");
  expect_error("does not exist");
}

TEST_F(BrokenIndex, NotJson) {
  write_index("{\"weight_map\": {");
  expect_error("not valid JSON");
}

TEST_F(BrokenIndex, NoWeightMap) {
  write_index(R"({"metadata": {"total_size": 5}})");
  expect_error("expected an object with a \"weight_map\" object");
  write_index(R"([1])");
  expect_error("\"weight_map\"");
}

TEST_F(BrokenIndex, WeightMapValueNotString) {
  write_index(R"({"weight_map": {"layers.0.w": 3}})");
  expect_error("tensor 'layers.0.w': weight_map value must be a shard file name, found number");
}

TEST_F(BrokenIndex, DuplicateTensorName) {
  write_index(R"({"weight_map": {"layers.0.w": "model-00001-of-00002.safetensors",)"
              R"( "layers.0.w": "model-00002-of-00002.safetensors"}})");
  expect_error("tensor 'layers.0.w': appears more than once in weight_map");
}

TEST_F(BrokenIndex, ShardOutsideDirectory) {
  write_index(R"({"weight_map": {"layers.0.w": "../model-00001-of-00002.safetensors"}})");
  expect_error("must be a file name inside");
  write_index(R"({"weight_map": {"layers.0.w": "/etc/passwd"}})");
  expect_error("must be a file name inside");
}

TEST_F(BrokenIndex, TensorNotInItsShard) {
  write_index(R"({"weight_map": {"layers.0.w": "model-00002-of-00002.safetensors"}})");
  expect_error(
      "tensor 'layers.0.w': mapped to shard 'model-00002-of-00002.safetensors' which "
      "does not hold it");
}

TEST_F(BrokenIndex, MalformedShardNamesItself) {
  write_bytes(dir_ / "model-00002-of-00002.safetensors", "short");
  expect_bad_input([&] { ShardedSafetensors::open(dir_.path()); },
                   "model-00002-of-00002.safetensors: file is 5 bytes");
}

TEST(ShardedSafetensors, EmptyDirectory) {
  TempDir dir;
  expect_bad_input([&] { ShardedSafetensors::open(dir.path()); },
                   "found neither model.safetensors.index.json nor model.safetensors");
}

}  // namespace
}  // namespace fitlm::io
