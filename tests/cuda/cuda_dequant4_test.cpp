// CudaBackend::dequantize4 against CpuBackend::dequantize4 and quant::dequantize4, bit for bit:
// random packed bytes and block scales (f32 absmax, or u8 codes with a random sorted nested map,
// random nested absmax and offset), sizes with partial blocks, odd counts and counts that are
// not a multiple of the kernel's 8-element unit, blocksizes 32..4096, NF4 and FP4, every output
// dtype × round_to; buffers off the vector path's alignment; a size that needs the grid-stride
// loop; and real normal data quantized by quant::quantize4. Outputs are poisoned with NaN first
// and have NaN guards on both sides, so an element written wrongly, not at all or out of bounds
// fails. Inputs are finite (NaN payloads are the one thing the two backends may spell
// differently).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "fitlm/core/quant4.h"
#include "fitlm/core/quant4_tensor.h"

namespace fitlm::cuda_test {
namespace {

using quant::QuantType;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

// One 4-bit tensor on the host, in Quant4Tensor's layout.
struct HostQ4 {
  QuantType type = QuantType::kNF4;
  int64_t blocksize = 64;
  int64_t n = 0;
  bool dq = false;
  std::vector<uint8_t> packed, codes;
  std::vector<float> absmax, nested_absmax, nested_map;
  float offset = 0.0f;
};

// Random bytes and scales. Scales span many decades (f16 subnormal outputs at the bottom, f16
// overflow to inf at the top) and about one in eight is negative (−0 from the zero codes).
HostQ4 random_q4(QuantType type, int64_t bs, int64_t n, bool dq, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  auto scale = [&](float lo_exp10, float hi_exp10, bool may_be_negative) {
    const float m = std::pow(10.0f, lo_exp10 + (hi_exp10 - lo_exp10) * unit(rng));
    return may_be_negative && unit(rng) < 0.125f ? -m : m;
  };
  HostQ4 h;
  h.type = type;
  h.blocksize = bs;
  h.n = n;
  h.dq = dq;
  h.packed.resize(static_cast<size_t>(quant4_packed_bytes(n)));
  for (auto& b : h.packed) b = static_cast<uint8_t>(byte(rng));  // odd n: a random pad nibble
  const int64_t blocks = quant4_blocks(n, bs);
  if (!dq) {
    h.absmax.resize(static_cast<size_t>(blocks));
    for (auto& a : h.absmax) a = scale(-5.0f, 5.0f, true);
    return h;
  }
  h.codes.resize(static_cast<size_t>(blocks));
  for (auto& c : h.codes) c = static_cast<uint8_t>(byte(rng));
  h.nested_absmax.resize(static_cast<size_t>(quant4_nested_blocks(n, bs)));
  for (auto& a : h.nested_absmax) a = scale(-3.0f, 5.0f, false);
  h.nested_map.resize(256);
  for (auto& m : h.nested_map) m = 2.0f * unit(rng) - 1.0f;
  std::sort(h.nested_map.begin(), h.nested_map.end());
  h.offset = 2.5f * unit(rng) - 0.5f;
  return h;
}

HostQ4 from_quantized(const quant::Quantized4& q) {
  HostQ4 h;
  h.type = q.type;
  h.blocksize = q.blocksize;
  h.n = q.numel;
  h.dq = q.double_quant;
  h.packed = q.packed;
  h.absmax = q.absmax;
  h.codes = q.absmax_codes;
  h.nested_absmax = q.nested_absmax;
  h.nested_map.assign(q.nested_map.begin(), q.nested_map.end());
  h.offset = q.offset;
  return h;
}

Quant4Tensor host_view(HostQ4& h, DType round_to) {
  Quant4Tensor q;
  q.type = h.type;
  q.blocksize = h.blocksize;
  q.shape = Shape{h.n};
  q.packed = Tensor(h.packed.data(), DType::kU8, {static_cast<int64_t>(h.packed.size())});
  if (h.dq) {
    q.absmax = Tensor(h.codes.data(), DType::kU8, {static_cast<int64_t>(h.codes.size())});
    q.nested_absmax =
        Tensor(h.nested_absmax.data(), DType::kF32, {static_cast<int64_t>(h.nested_absmax.size())});
    q.nested_map = Tensor(h.nested_map.data(), DType::kF32, {256});
    q.offset = h.offset;
  } else {
    q.absmax = Tensor(h.absmax.data(), DType::kF32, {static_cast<int64_t>(h.absmax.size())});
  }
  q.round_to = round_to;
  return q;
}

// The same tensor on the device; packed starts `packed_offset` bytes into its buffer.
struct DeviceQ4 {
  std::vector<std::unique_ptr<DeviceTensor>> bufs;
  Quant4Tensor q;
};

Tensor upload_at(Backend& be, DeviceQ4& d, const void* src, DType dt, int64_t n,
                 int64_t offset = 0) {
  d.bufs.push_back(std::make_unique<DeviceTensor>(be, dt, Shape{n + offset}));
  Tensor t(static_cast<char*>(d.bufs.back()->tensor().data) + offset * dtype_size(dt), dt, {n},
           be.device());
  be.upload(t, src, dt);
  return t;
}

std::unique_ptr<DeviceQ4> to_device_q4(Backend& be, const HostQ4& h, int64_t packed_offset = 0) {
  auto d = std::make_unique<DeviceQ4>();
  Quant4Tensor& q = d->q;
  q.type = h.type;
  q.blocksize = h.blocksize;
  q.shape = Shape{h.n};
  q.packed = upload_at(be, *d, h.packed.data(), DType::kU8, static_cast<int64_t>(h.packed.size()),
                       packed_offset);
  if (h.dq) {
    q.absmax = upload_at(be, *d, h.codes.data(), DType::kU8, static_cast<int64_t>(h.codes.size()));
    q.nested_absmax = upload_at(be, *d, h.nested_absmax.data(), DType::kF32,
                                static_cast<int64_t>(h.nested_absmax.size()));
    q.nested_map = upload_at(be, *d, h.nested_map.data(), DType::kF32, 256);
    q.offset = h.offset;
  } else {
    q.absmax =
        upload_at(be, *d, h.absmax.data(), DType::kF32, static_cast<int64_t>(h.absmax.size()));
  }
  return d;
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::string describe(const HostQ4& h, DType round_to, DType out) {
  char s[160];
  std::snprintf(s, sizeof s, "%s%s blocksize %lld n %lld round_to %s out %s",
                std::string(quant::quant_type_name(h.type)).c_str(), h.dq ? "+dq" : "",
                static_cast<long long>(h.blocksize), static_cast<long long>(h.n),
                std::string(dtype_name(round_to)).c_str(), std::string(dtype_name(out)).c_str());
  return s;
}

class CudaDequant4 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    gpu = make_cuda_backend(0, DType::kBF16);
  }

  // Runs q (on the device) into a NaN-poisoned `out_dt` buffer at `out_offset` elements (16 NaN
  // guard elements after) and expects every element to have the bits of `want` (the f32
  // reference, already rounded to q.round_to) stored as out_dt, and the guards untouched.
  void expect_bitwise(const Quant4Tensor& q, DType out_dt, const std::vector<float>& want,
                      int64_t out_offset, const std::string& what) {
    const int64_t n = static_cast<int64_t>(want.size()), total = out_offset + n + 16;
    auto buf = poisoned(*gpu, out_dt, {total});
    const Tensor out(static_cast<char*>(buf->tensor().data) + out_offset * dtype_size(out_dt),
                     out_dt, {n}, gpu->device());
    gpu->dequantize4(q, out);
    const auto got = from_device(*gpu, *buf);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; ++i) {
      const float w = round_to_storage(want[i], out_dt);
      if (bits(got[out_offset + i]) != bits(w)) {
        if (first < 0) first = i;
        ++bad;
      }
    }
    int64_t guards_hit = 0;
    for (int64_t i = 0; i < total; ++i)
      if ((i < out_offset || i >= out_offset + n) && !std::isnan(got[i])) ++guards_hit;
    EXPECT_EQ(guards_hit, 0) << what << ": wrote outside out";
    if (first >= 0) {
      const float w = round_to_storage(want[first], out_dt), g = got[out_offset + first];
      ADD_FAILURE() << what << ": " << bad << " of " << n << " elements differ; first at " << first
                    << ": got " << g << " (0x" << std::hex << bits(g) << ") want " << w << " (0x"
                    << bits(w) << ")" << std::dec;
    }
  }

  // Every round_to × out dtype of h, against CpuBackend::dequantize4.
  void check_all_dtypes(HostQ4& h, int64_t packed_offset = 0, int64_t out_offset = 0) {
    auto d = to_device_q4(*gpu, h, packed_offset);
    for (const DType round_to : kFloatDTypes) {
      std::vector<float> want(static_cast<size_t>(h.n));
      cpu.dequantize4(host_view(h, round_to), host_tensor(want, {h.n}));
      Quant4Tensor q = d->q;
      q.round_to = round_to;
      for (const DType out : kFloatDTypes) {
        char off[64];
        std::snprintf(off, sizeof off, " (packed +%lld B, out +%lld)",
                      static_cast<long long>(packed_offset), static_cast<long long>(out_offset));
        expect_bitwise(q, out, want, out_offset, describe(h, round_to, out) + off);
      }
    }
  }

  std::unique_ptr<Backend> gpu;
  CpuBackend cpu;
};

TEST_F(CudaDequant4, RandomMatchesCpuBitForBit) {
  struct Size {
    int64_t blocksize, n;
  };
  const Size sizes[] = {
      {32, 1},
      {32, 2},
      {32, 7},
      {32, 8},
      {32, 9},
      {32, 15},
      {32, 33},
      {32, 32 * 600 + 17},  // > 256 blocks
      {64, 64 * 37 + 3},
      {64, 4096},
      {64, 64 * 300},
      {128, 128 * 50 + 77},
      {128, 1001},
      {256, 256 * 257 + 9},
      {1024, 1024 * 7 + 1},
      {4096, 100},
      {4096, 4096},
      {4096, 4096 * 3 + 5},
  };
  uint32_t seed = 100;
  for (const QuantType type : {QuantType::kNF4, QuantType::kFP4})
    for (const bool dq : {false, true})
      for (const Size& s : sizes) {
        HostQ4 h = random_q4(type, s.blocksize, s.n, dq, seed++);
        check_all_dtypes(h);
      }
}

// Packed not 4-byte aligned or out not 16-byte aligned: the scalar kernel; out 16-byte aligned
// at a nonzero offset: the vector kernel.
TEST_F(CudaDequant4, OffAlignmentBuffers) {
  uint32_t seed = 500;
  for (const bool dq : {false, true}) {
    for (const int64_t packed_offset : {1, 2, 3, 4}) {
      HostQ4 h = random_q4(QuantType::kNF4, 64, 64 * 100 + 5, dq, seed++);
      check_all_dtypes(h, packed_offset, 0);
    }
    for (const int64_t out_offset : {1, 2, 3, 8}) {
      HostQ4 h = random_q4(QuantType::kFP4, 128, 128 * 40 + 11, dq, seed++);
      check_all_dtypes(h, 0, out_offset);
    }
  }
}

// More elements than one pass of the capped grid covers (2112 blocks × 8192 elements).
TEST_F(CudaDequant4, LargeTensorGridStride) {
  HostQ4 h = random_q4(QuantType::kNF4, 64, int64_t{4096} * 4600 + 3, true, 900);
  auto d = to_device_q4(*gpu, h);
  for (const DType round_to : {DType::kBF16, DType::kF32}) {
    std::vector<float> want(static_cast<size_t>(h.n));
    cpu.dequantize4(host_view(h, round_to), host_tensor(want, {h.n}));
    Quant4Tensor q = d->q;
    q.round_to = round_to;
    for (const DType out : {DType::kBF16, DType::kF32})
      expect_bitwise(q, out, want, 0, describe(h, round_to, out));
  }
}

// Real weights: normal data through quant::quantize4 with double quantization, against the host
// reference quant::dequantize4 (f32 out, round_to f32), and in bf16 against its rounding.
TEST_F(CudaDequant4, QuantizedNormalDataMatchesHostReference) {
  const int64_t rows = 96, cols = 1000, n = rows * cols;
  uint32_t seed = 1000;
  for (const QuantType type : {QuantType::kNF4, QuantType::kFP4})
    for (const int64_t bs : {64, 128}) {
      const auto x = random_vec(n, seed++, 0.02f);
      const quant::Quantized4 qz = quant::quantize4(x, type, bs, true);
      std::vector<float> want(static_cast<size_t>(n));
      quant::dequantize4(qz, want);
      const HostQ4 h = from_quantized(qz);
      auto d = to_device_q4(*gpu, h);
      Quant4Tensor q = d->q;
      q.shape = Shape{rows, cols};
      q.round_to = DType::kF32;
      expect_bitwise(q, DType::kF32, want, 0, describe(h, DType::kF32, DType::kF32));
      q.round_to = DType::kBF16;
      std::vector<float> want16 = rounded(want, DType::kBF16);
      expect_bitwise(q, DType::kBF16, want16, 0, describe(h, DType::kBF16, DType::kBF16));
    }
}

}  // namespace
}  // namespace fitlm::cuda_test

namespace fitlm::cuda_test {
namespace {

// dequantize4_many (a layer's matrices in one launch): every matrix bit-identical to the CPU,
// for a batch of mixed sizes (odd counts, partial blocks, several blocksizes), one that mixes
// double quantization (split into separate launches) and one over the batch limit.
TEST_F(CudaDequant4, ManyMatchesCpuBitForBit) {
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> batches = {
      {{64, 4096 * 1024}, {64, 1024 * 512 + 3}, {32, 17}, {128, 128 * 9 + 64}, {64, 8}},
      {{64, 64 * 700},
       {64, 1},
       {256, 256 * 300 + 11},
       {64, 64 * 64},
       {32, 32 * 5},
       {64, 9},
       {4096, 4096 * 2},
       {64, 640},
       {64, 777},
       {128, 128 * 3}},
  };
  uint32_t seed = 900;
  for (const auto& sizes : batches)
    for (const int dq_mode : {0, 1, 2}) {  // none, all, alternating
      std::vector<HostQ4> hosts;
      std::vector<std::unique_ptr<DeviceQ4>> devs;
      std::vector<std::unique_ptr<DeviceTensor>> outs;
      std::vector<std::pair<const Quant4Tensor*, Tensor>> work;
      for (size_t k = 0; k < sizes.size(); ++k) {
        const bool dq = dq_mode == 1 || (dq_mode == 2 && k % 2 == 1);
        hosts.push_back(random_q4(k % 3 == 0 ? QuantType::kFP4 : QuantType::kNF4, sizes[k].first,
                                  sizes[k].second, dq, seed++));
      }
      for (HostQ4& h : hosts) {
        devs.push_back(to_device_q4(*gpu, h));
        devs.back()->q.round_to = DType::kBF16;
        outs.push_back(poisoned(*gpu, DType::kBF16, {h.n}));
        work.emplace_back(&devs.back()->q, outs.back()->tensor());
      }
      gpu->dequantize4_many(work);
      for (size_t k = 0; k < hosts.size(); ++k) {
        std::vector<float> want(static_cast<size_t>(hosts[k].n));
        cpu.dequantize4(host_view(hosts[k], DType::kBF16), host_tensor(want, {hosts[k].n}));
        const auto got = from_device(*gpu, *outs[k]);
        int64_t bad = 0;
        for (size_t i = 0; i < want.size(); ++i)
          bad += bits(got[i]) != bits(round_to_storage(want[i], DType::kBF16)) ? 1 : 0;
        EXPECT_EQ(bad, 0) << "batch matrix " << k << " "
                          << describe(hosts[k], DType::kBF16, DType::kBF16) << " dq_mode "
                          << dq_mode;
      }
    }
}

}  // namespace
}  // namespace fitlm::cuda_test
