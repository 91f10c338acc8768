// Round trips through SafetensorsWriter/SafetensorsFile and the reader's checks on hand-made
// malformed files. The PyTorch cross-check lives in safetensors_torch_test.py.
#include "fitlm/io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "fitlm/core/error.h"
#include "safetensors_test_util.h"

namespace fitlm::io {
namespace {

using testing::make_file;
using testing::TempDir;
using testing::write_bytes;

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Runs `fn`, expects a kBadInput Error whose text contains `needle`; returns the text.
template <typename Fn>
std::string expect_bad_input(Fn&& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "expected \"" << needle << "\" in: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error; expected one containing \"" << needle << "\"";
  return "";
}

TEST(Safetensors, RoundTripFloatTypesAndShapes) {
  TempDir dir;
  const auto a = random_floats(12, 1), b = random_floats(5, 2), c = random_floats(24, 3),
             s = random_floats(1, 4), big = random_floats(2 * 3 * 2 * 2 * 3, 5);
  const std::vector<uint8_t> u8{0, 1, 2, 250, 255, 7, 9};
  const std::vector<int64_t> i64{-5, 1LL << 40, 3, 0};
  const std::vector<int8_t> i8{-128, 127, 0};
  const std::vector<int32_t> i32{-1, 2, 1 << 30};

  SafetensorsWriter w;
  w.add_f32("a.f32", StDType::kF32, {3, 4}, a.data());
  w.add_f32("b.bf16", StDType::kBF16, {5}, b.data());
  w.add_f32("c.f16", StDType::kF16, {2, 3, 4}, c.data());
  w.add_f32("scalar", StDType::kF32, {}, s.data());
  w.add_f32("empty", StDType::kF32, {0, 3}, nullptr);
  w.add_f32("empty.bf16", StDType::kBF16, {0}, nullptr);
  w.add_f32("rank5", StDType::kBF16, {2, 3, 2, 2, 3}, big.data());
  w.add_bytes("u8", StDType::kU8, {7}, u8.data());
  w.add_bytes("i64", StDType::kI64, {2, 2}, i64.data());
  w.add_bytes("i8", StDType::kI8, {3}, i8.data());
  w.add_bytes("i32", StDType::kI32, {3}, i32.data());
  w.set_metadata("producer", "fitlm-test");
  const auto path = dir / "m.safetensors";
  w.write(path);
  EXPECT_FALSE(std::filesystem::exists(dir / "m.safetensors.tmp"));

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.tensors().size(), 11u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("producer"), "fitlm-test");

  // Header length is padded to a multiple of 8 so the data buffer is aligned.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);

  std::vector<float> out(24);
  f.read_f32("a.f32", out.data());
  for (int i = 0; i < 12; ++i) EXPECT_EQ(out[i], a[i]);
  EXPECT_EQ(f.info("a.f32").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(f.info("a.f32").dtype, StDType::kF32);

  f.read_f32("b.bf16", out.data());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], bf16_to_f32(f32_to_bf16(b[i])));
  std::vector<uint16_t> half(24);
  f.read_as("b.bf16", DType::kBF16, half.data());  // same dtype: exact bytes
  for (int i = 0; i < 5; ++i) EXPECT_EQ(half[i], f32_to_bf16(b[i]));

  f.read_f32("c.f16", out.data());
  for (int i = 0; i < 24; ++i) EXPECT_EQ(out[i], f16_to_f32(f32_to_f16(c[i])));
  f.read_as("c.f16", DType::kBF16, half.data());  // f16 -> bf16 through fp32
  for (int i = 0; i < 24; ++i) EXPECT_EQ(half[i], f32_to_bf16(f16_to_f32(f32_to_f16(c[i]))));

  EXPECT_TRUE(f.info("scalar").shape.empty());
  EXPECT_EQ(f.info("scalar").numel(), 1);
  f.read_f32("scalar", out.data());
  EXPECT_EQ(out[0], s[0]);

  EXPECT_EQ(f.info("empty").numel(), 0);
  EXPECT_EQ(f.info("empty").bytes(), 0u);
  EXPECT_EQ(f.info("empty.bf16").bytes(), 0u);
  f.read_f32("empty", out.data());  // a no-op, but must not fail

  std::vector<float> out5(big.size());
  f.read_f32("rank5", out5.data());
  for (size_t i = 0; i < big.size(); ++i) EXPECT_EQ(out5[i], bf16_to_f32(f32_to_bf16(big[i])));

  EXPECT_EQ(std::memcmp(f.data("u8"), u8.data(), 7), 0);
  std::vector<int64_t> i64_out(4);
  f.read_as("i64", DType::kI64, i64_out.data());
  EXPECT_EQ(i64_out, i64);
  EXPECT_EQ(std::memcmp(f.data("i8"), i8.data(), 3), 0);
  EXPECT_EQ(f.bytes("i32").size(), 12u);

  expect_bad_input([&] { f.read_f32("i64", out.data()); }, "stored as I64, cannot be read as f32");
  expect_bad_input([&] { f.info("nope"); }, "tensor 'nope': not in this file");
}

TEST(Safetensors, LargeTensorConvertsInParallelChunks) {
  TempDir dir;
  const auto v = random_floats((1 << 20) + 37, 9);  // crosses the writer's chunk size and the
                                                    // reader's OpenMP threshold
  SafetensorsWriter w;
  w.add_f32("w", StDType::kBF16, {static_cast<int64_t>(v.size())}, v.data());
  w.write(dir / "big.safetensors");
  const SafetensorsFile f = SafetensorsFile::open(dir / "big.safetensors");
  std::vector<float> out(v.size());
  f.read_f32("w", out.data());
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(out[i], bf16_to_f32(f32_to_bf16(v[i]))) << i;
}

TEST(Safetensors, MoveKeepsMappingAlive) {
  TempDir dir;
  const float x[3] = {1, 2, 3};
  SafetensorsWriter w;
  w.add_f32("x", StDType::kF32, {3}, x);
  w.write(dir / "x.safetensors");
  SafetensorsFile a = SafetensorsFile::open(dir / "x.safetensors");
  SafetensorsFile b = std::move(a);
  SafetensorsFile c = SafetensorsFile::open(dir / "x.safetensors");
  c = std::move(b);
  float out[3];
  c.read_f32("x", out);
  EXPECT_EQ(out[2], 3.0f);
}

TEST(Safetensors, OverwriteIsAtomicReplacement) {
  TempDir dir;
  const float x[2] = {1, 2}, y[2] = {5, 6};
  SafetensorsWriter w1, w2;
  w1.add_f32("x", StDType::kF32, {2}, x);
  w2.add_f32("x", StDType::kF32, {2}, y);
  w1.write(dir / "x.safetensors");
  const SafetensorsFile old = SafetensorsFile::open(dir / "x.safetensors");
  w2.write(dir / "x.safetensors");
  float out[2];
  old.read_f32("x", out);  // the old mapping still sees the old inode
  EXPECT_EQ(out[0], 1.0f);
  SafetensorsFile::open(dir / "x.safetensors").read_f32("x", out);
  EXPECT_EQ(out[0], 5.0f);
}

TEST(Safetensors, UnsupportedDtypeParsesButFailsOnRead) {
  TempDir dir;
  const uint8_t fp8[4] = {1, 2, 3, 4};
  SafetensorsWriter w;
  w.add_bytes("q", StDType::kF8_E4M3, {2, 2}, fp8);
  w.write(dir / "q.safetensors");
  const SafetensorsFile f = SafetensorsFile::open(dir / "q.safetensors");
  EXPECT_EQ(f.info("q").dtype, StDType::kF8_E4M3);
  float out[4];
  expect_bad_input([&] { f.read_f32("q", out); }, "unsupported dtype F8_E4M3 for tensor 'q'");
  expect_bad_input([&] { f.data("q"); }, "unsupported dtype F8_E4M3");
}

TEST(Safetensors, WriterRejectsBadEntries) {
  const float x[1] = {1};
  SafetensorsWriter w;
  w.add_f32("x", StDType::kF32, {1}, x);
  expect_bad_input([&] { w.add_f32("x", StDType::kF32, {1}, x); }, "added twice");
  expect_bad_input([&] { w.add_f32("__metadata__", StDType::kF32, {1}, x); }, "reserved");
  expect_bad_input([&] { w.add_f32("n", StDType::kF32, {-1}, x); }, "negative dimension");
  expect_bad_input([&] { w.add_f32("i", StDType::kI32, {1}, x); }, "cannot convert f32 values");
  expect_bad_input([&] { w.add_bytes("z", StDType::kF32, {2}, nullptr); }, "no source data");
  expect_bad_input([&] { w.write("/nonexistent-dir-fitlm/x.safetensors"); }, "cannot create");
}

// A produced source is called once, while the file is written (after add(), not in it), with a
// buffer of numel() floats; its values are converted as a borrowed f32 source's would be.
TEST(Safetensors, ProducedSourcesAreWrittenLikeBorrowedOnes) {
  TempDir dir;
  const auto a = random_floats(7 * 3, 11), b = random_floats(5, 12);
  int calls = 0;
  SafetensorsWriter produced, borrowed;
  produced.add_f32_produced("a", StDType::kBF16, {7, 3}, [&](float* out) {
    ++calls;
    std::memcpy(out, a.data(), a.size() * sizeof(float));
  });
  produced.add_f32_produced("b", StDType::kF32, {5}, [&](float* out) {
    ++calls;
    std::memcpy(out, b.data(), b.size() * sizeof(float));
  });
  produced.add_f32_produced("none", StDType::kF16, {0}, [&](float*) { ++calls; });
  EXPECT_EQ(calls, 0);
  borrowed.add_f32("a", StDType::kBF16, {7, 3}, a.data());
  borrowed.add_f32("b", StDType::kF32, {5}, b.data());
  borrowed.add_f32("none", StDType::kF16, {0}, nullptr);
  produced.write(dir / "p.safetensors");
  borrowed.write(dir / "b.safetensors");
  EXPECT_EQ(calls, 2);  // not for the empty tensor
  const SafetensorsFile p = SafetensorsFile::open(dir / "p.safetensors");
  const SafetensorsFile q = SafetensorsFile::open(dir / "b.safetensors");
  for (const char* name : {"a", "b"}) {
    ASSERT_EQ(p.bytes(name).size(), q.bytes(name).size()) << name;
    EXPECT_EQ(std::memcmp(p.bytes(name).data(), q.bytes(name).data(), p.bytes(name).size()), 0)
        << name;
  }
  SafetensorsWriter bad;
  SafetensorsEntry both = SafetensorsEntry::from_f32("both", StDType::kF32, {1}, a.data());
  both.produce_f32 = [](float*) {};
  expect_bad_input([&] { bad.add(both); }, "more than one source");
  expect_bad_input([&] { bad.add_f32_produced("i", StDType::kI32, {1}, [](float*) {}); },
                   "cannot convert f32 values");
}

TEST(Safetensors, AllDtypeNamesParse) {
  for (const char* s :
       {"BOOL",    "F4",          "F6_E2M3",     "F6_E3M2", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
        "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",     "U16", "F16", "BF16",    "I32",
        "U32",     "F32",         "C64",         "F64",     "I64", "U64"}) {
    const auto t = st_dtype_from_name(s);
    ASSERT_TRUE(t.has_value()) << s;
    EXPECT_EQ(st_dtype_name(*t), s);
  }
  EXPECT_FALSE(st_dtype_from_name("f32").has_value());
  // F4 packs two values per byte: a [3, 2] tensor is 3 bytes.
  TempDir dir;
  write_bytes(dir / "f4.safetensors",
              make_file(R"({"q":{"dtype":"F4","shape":[3,2],"data_offsets":[0,3]}})", "abc"));
  EXPECT_EQ(SafetensorsFile::open(dir / "f4.safetensors").info("q").bytes(), 3u);
}

// ---- malformed files ------------------------------------------------------------------------

class MalformedSafetensors : public ::testing::Test {
 protected:
  // Writes the bytes, expects open() to fail with `needle`, and checks the file is named.
  void expect_open_error(const std::string& bytes, const std::string& needle) {
    const auto p = dir_ / "bad.safetensors";
    write_bytes(p, bytes);
    const std::string msg = expect_bad_input([&] { SafetensorsFile::open(p); }, needle);
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("[safetensors] ", 0), 0u) << msg;
  }
  TempDir dir_;
};

TEST_F(MalformedSafetensors, MissingFile) {
  expect_bad_input([&] { SafetensorsFile::open(dir_ / "none.safetensors"); }, "cannot open");
}

TEST_F(MalformedSafetensors, TruncatedFile) {
  expect_open_error("\x05\0\0\0", "too short for the 8-byte header length");
  expect_open_error("", "file is 0 bytes");
}

TEST_F(MalformedSafetensors, HeaderLengthPastEof) {
  expect_open_error(make_file("{}", "", 1000), "header length 1000 runs past the end of the file");
}

TEST_F(MalformedSafetensors, HeaderLengthOverLimit) {
  expect_open_error(make_file("{}", "", 100'000'001), "exceeds the limit of 100000000");
  expect_open_error(make_file("{}", "", ~uint64_t{1}), "exceeds the limit");  // 8+N must not wrap
}

TEST_F(MalformedSafetensors, HeaderNotJson) {
  expect_open_error(make_file("{not json", ""), "header is not valid UTF-8 JSON");
  expect_open_error(make_file("{\"a\xff\":1}", ""), "header is not valid UTF-8 JSON");
  expect_open_error(make_file("[1,2]", ""), "header must be a JSON object, found array");
}

TEST_F(MalformedSafetensors, OverlappingOffsets) {
  expect_open_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              std::string(12, '\0')),
                    "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
}

TEST_F(MalformedSafetensors, GapInOffsets) {
  expect_open_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                              std::string(12, '\0')),
                    "tensor 'b': data_offsets begin at 8, expected 4 (a gap of 4");
  expect_open_error(
      make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
      "gap of 4 unused bytes after the header");
}

TEST_F(MalformedSafetensors, BadDtypeString) {
  expect_open_error(
      make_file(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
      "tensor 'w': unknown dtype \"F33\"");
  expect_open_error(
      make_file(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
      "tensor 'w': expected a string \"dtype\"");
}

TEST_F(MalformedSafetensors, ShapeSizeMismatch) {
  expect_open_error(
      make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
      "tensor 'w': shape [3] of F32 needs 12 bytes, data_offsets [0, 8] hold 8");
  expect_open_error(
      make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')),
      "must hold non-negative integers");
  expect_open_error(make_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
                              std::string(4, '\0')),
                    "must hold non-negative integers");
  expect_open_error(
      make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                std::string(4, '\0')),
      "is too large");
  expect_open_error(
      make_file(R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", std::string(2, '\0')),
      "does not fill a whole number of bytes");
}

TEST_F(MalformedSafetensors, DataPastEnd) {
  expect_open_error(
      make_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')),
      "tensor 'w': data_offsets [0, 16] run past the end of the data buffer (8");
  expect_open_error(
      make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(6, '\0')),
      "tensors cover 4 bytes of data but the file holds 6");
}

TEST_F(MalformedSafetensors, BadOffsetsAndEntries) {
  expect_open_error(
      make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", std::string(4, '\0')),
      "has begin > end");
  expect_open_error(make_file(R"({"w":{"dtype":"F32","shape":[1]}})", std::string(4, '\0')),
                    "tensor 'w': expected \"data_offsets\"");
  expect_open_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})",
                              std::string(4, '\0')),
                    "expected \"data_offsets\"");
  expect_open_error(make_file(R"({"w":[1,2]})", ""), "tensor 'w': expected an object");
  expect_open_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                              std::string(4, '\0')),
                    "tensor 'w': appears more than once");
}

TEST_F(MalformedSafetensors, BadMetadata) {
  expect_open_error(make_file(R"({"__metadata__":{"format":1}})", ""),
                    "__metadata__ key 'format' must be a string");
  expect_open_error(make_file(R"({"__metadata__":[1]})", ""), "__metadata__ must be an object");
}

TEST_F(MalformedSafetensors, AcceptsEdgeCasesOfValidFiles) {
  const auto p = dir_ / "ok.safetensors";
  write_bytes(p, make_file("{}", ""));  // no tensors at all
  EXPECT_TRUE(SafetensorsFile::open(p).tensors().empty());
  write_bytes(p, make_file(R"({"__metadata__":null})", ""));
  EXPECT_TRUE(SafetensorsFile::open(p).metadata().empty());
  // Odd header length (unpadded writers exist) leaves f32 data unaligned: still readable.
  const float v = 2.5f;
  std::string data(4, '\0');
  std::memcpy(data.data(), &v, 4);
  write_bytes(p, make_file(R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}  )", data));
  float out = 0;
  SafetensorsFile::open(p).read_f32("x", &out);
  EXPECT_EQ(out, 2.5f);
}

// Random corruption of a valid file must give an Error or a valid parse, never a crash (run
// under -DFITLM_ASAN=ON to make out-of-bounds reads fail loudly).
TEST_F(MalformedSafetensors, RandomCorruptionNeverCrashes) {
  const auto v = random_floats(6, 11);
  SafetensorsWriter w;
  w.add_f32("a", StDType::kF32, {2, 3}, v.data());
  w.add_f32("b", StDType::kBF16, {3}, v.data());
  w.add_f32("c", StDType::kF16, {}, v.data());
  w.write(dir_ / "good.safetensors");
  std::ifstream in(dir_ / "good.safetensors", std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), {});

  const auto p = dir_ / "fuzz.safetensors";
  auto try_open = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    try {
      const SafetensorsFile f = SafetensorsFile::open(p);
      std::vector<float> out(64);
      for (const auto& t : f.tensors())
        if (st_dtype_is_float_loadable(t.dtype) && t.numel() <= 64) f.read_f32(t.name, out.data());
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    }
  };
  for (size_t len = 0; len < good.size(); ++len) try_open(good.substr(0, len));
  std::mt19937 rng(123);
  for (int i = 0; i < 600; ++i) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % bad.size();
      // Mostly digits and JSON punctuation, so the header often stays parseable.
      static const char kChars[] = "0123456789[],:{}\" \xff";
      bad[at] = (rng() % 2) ? kChars[rng() % (sizeof(kChars) - 1)] : static_cast<char>(rng());
    }
    try_open(bad);
  }
}

}  // namespace
}  // namespace fitlm::io
