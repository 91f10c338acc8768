// Packed rows through cuDNN's variable-length (ragged) SDPA against the CPU reference: several
// segments of unequal length in one cu_seqlens (no segment_len promise), GQA and MHA, head_dim
// 64 and 128, bf16 and fp16, a segment of one token, a row of one segment. FITLM_ATTENTION=cudnn
// makes a shape cuDNN refuses fail instead of testing fitlm's kernels. Also: two backward runs
// over the same inputs give the same bytes (ragged and dense cuDNN graphs, segments long enough
// that several key tiles add into each dQ row), and the segment-count buckets that bound the
// number of plans a run with random segment lengths builds.
#include <numeric>
#include <random>
#include <set>
#include <tuple>

#include "cuda_test_util.h"
#include "fitlm/backend/cuda/cudnn_attention.h"

namespace fitlm::cuda_test {
namespace {

struct PackedCase {
  std::vector<int32_t> seg_lens;
  int n_heads, n_kv, head_dim;
  // fitlm refuses the ragged graph for this shape (run without FITLM_ATTENTION, so the
  // backend falls back to its own kernels, which must then give the right answer).
  bool refused = false;
};

struct Inputs {
  std::vector<int32_t> cu{0};
  int64_t t = 0, qc = 0, kc = 0, n_seg = 0;
  std::vector<float> q, k, v, dout;
};

Inputs make_inputs(const PackedCase& c, DType dt, uint32_t seed) {
  Inputs in;
  for (int32_t len : c.seg_lens) in.cu.push_back(in.cu.back() + len);
  in.t = in.cu.back();
  in.qc = int64_t{c.n_heads} * c.head_dim;
  in.kc = int64_t{c.n_kv} * c.head_dim;
  in.n_seg = static_cast<int64_t>(c.seg_lens.size());
  in.q = rounded(random_vec(in.t * in.qc, seed + 1, 1.5f), dt);
  in.k = rounded(random_vec(in.t * in.kc, seed + 2, 1.5f), dt);
  in.v = rounded(random_vec(in.t * in.kc, seed + 3), dt);
  in.dout = rounded(random_vec(in.t * in.qc, seed + 4), dt);
  return in;
}

std::string describe(const PackedCase& c, DType dt) {
  std::string segs;
  for (int32_t len : c.seg_lens) segs += (segs.empty() ? "" : ",") + std::to_string(len);
  return std::string(" [ragged ") + std::string(dtype_name(dt)) + " hd" +
         std::to_string(c.head_dim) + " " + std::to_string(c.n_heads) + ":" +
         std::to_string(c.n_kv) + " segs " + segs + "]";
}

class CudnnPackedAttention : public ::testing::TestWithParam<std::tuple<DType, PackedCase>> {};

TEST_P(CudnnPackedAttention, MatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto& [dt, c] = GetParam();
  ScopedAttentionMode mode(/*cudnn=*/true);
  if (c.refused) unsetenv("FITLM_ATTENTION");
  auto gpu = make_cuda_backend(0, dt);
  CpuBackend cpu;
  Inputs in = make_inputs(c, dt, 10);
  const int64_t t = in.t, qc = in.qc, kc = in.kc, nh = c.n_heads;
  AttentionShape sh{c.n_heads, c.n_kv, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};

  auto dq_in = to_device(*gpu, in.q, dt, {t, qc}), dk_in = to_device(*gpu, in.k, dt, {t, kc});
  auto dv_in = to_device(*gpu, in.v, dt, {t, kc}), ddout = to_device(*gpu, in.dout, dt, {t, qc});
  auto dcu = to_device_i32(*gpu, in.cu, {in.n_seg + 1});
  auto out = poisoned(*gpu, dt, {t, qc});
  auto lse = poisoned(*gpu, DType::kF32, {nh, t});
  gpu->attention_forward(*dq_in, *dk_in, *dv_in, *dcu, sh, *out, *lse);

  std::vector<float> want_out(t * qc), want_lse(nh * t);
  cpu.attention_forward(host_tensor(in.q, {t, qc}), host_tensor(in.k, {t, kc}),
                        host_tensor(in.v, {t, kc}), host_i32(in.cu, {in.n_seg + 1}), sh,
                        host_tensor(want_out, {t, qc}), host_tensor(want_lse, {nh, t}));
  const std::string name = describe(c, dt);
  auto check = [&](const std::string& what, const std::vector<float>& got,
                   const std::vector<float>& want, double tol) {
    const double e = rel_err(got, want);
    record("attention " + what + name, e);
    EXPECT_LT(e, tol) << what << name;
  };
  check("out", from_device(*gpu, *out), want_out, 1e-2);
  // The ragged cuDNN graph orders lse token-major [T, heads] (backend.h); the CPU and fitlm's
  // kernels (a refused shape) [heads, T].
  std::vector<float> want_lse_gpu = want_lse;
  if (!c.refused)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < t; ++i) want_lse_gpu[i * nh + h] = want_lse[h * t + i];
  check("lse", from_device(*gpu, *lse), want_lse_gpu, 1e-4);

  auto out_r = rounded(want_out, dt);
  std::vector<float> wq(t * qc), wk(t * kc), wv(t * kc);
  cpu.attention_backward(host_tensor(in.dout, {t, qc}), host_tensor(in.q, {t, qc}),
                         host_tensor(in.k, {t, kc}), host_tensor(in.v, {t, kc}),
                         host_tensor(out_r, {t, qc}), host_tensor(want_lse, {nh, t}),
                         host_i32(in.cu, {in.n_seg + 1}), sh, host_tensor(wq, {t, qc}),
                         host_tensor(wk, {t, kc}), host_tensor(wv, {t, kc}), Tensor{});
  auto ws = poisoned(*gpu, DType::kF32, {attention_workspace_elems(t, sh)});
  auto gq = poisoned(*gpu, dt, {t, qc}), gk = poisoned(*gpu, dt, {t, kc});
  auto gv = poisoned(*gpu, dt, {t, kc});
  gpu->attention_backward(*ddout, *dq_in, *dk_in, *dv_in, *out, *lse, *dcu, sh, *gq, *gk, *gv, *ws);
  check("dq", from_device(*gpu, *gq), wq, 1e-2);
  check("dk", from_device(*gpu, *gk), wk, 1e-2);
  check("dv", from_device(*gpu, *gv), wv, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudnnPackedAttention,
    ::testing::Combine(::testing::Values(DType::kBF16, DType::kF16),
                       ::testing::Values(PackedCase{{100, 37, 163}, 8, 2, 128},        // GQA 4:1
                                         PackedCase{{129, 64, 70}, 4, 4, 64},          // MHA
                                         PackedCase{{1, 50, 200}, 4, 1, 64},           // length 1
                                         PackedCase{{70, 300, 1, 5, 130}, 8, 8, 128},  // 5 segs
                                         PackedCase{{300}, 4, 2, 128},  // a row of one segment
                                         PackedCase{{256, 256, 255}, 8, 2, 64},
                                         // The other head sizes of real models.
                                         PackedCase{{70, 1, 123}, 8, 2, 32},
                                         PackedCase{{97, 64, 30}, 4, 1, 80},
                                         PackedCase{{33, 150}, 6, 3, 96},
                                         // cuDNN 9.14's ragged backward gave wrong dQ and
                                         // NaN dK/dV at 256 (H200, session 5): refused.
                                         PackedCase{{130, 5, 64}, 4, 2, 256, true})));

// Two backward runs over the same inputs (fresh poisoned outputs and workspace each time) give
// byte-identical dQ, dK and dV. Segments of 600-1200 tokens: ≥ 5 key tiles add into a dQ row, so
// an order-dependent f32 accumulation would show (two addends commute; three need not).
struct DeterminismCase {
  std::vector<int32_t> seg_lens;
  bool promise_equal;  // dense cuDNN graph (segment_len) instead of the ragged one
};

class CudnnAttentionDeterminism : public ::testing::TestWithParam<DeterminismCase> {};

TEST_P(CudnnAttentionDeterminism, TwoBackwardRunsAreByteIdentical) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const DeterminismCase& d = GetParam();
  const DType dt = DType::kBF16;
  const PackedCase c{d.seg_lens, 32, 8, 128};
  ScopedAttentionMode mode(/*cudnn=*/true);
  auto gpu = make_cuda_backend(0, dt);
  Inputs in = make_inputs(c, dt, 20);
  const int64_t t = in.t, qc = in.qc, kc = in.kc;
  AttentionShape sh{c.n_heads, c.n_kv, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
  if (d.promise_equal) sh.segment_len = d.seg_lens[0];
  auto dq_in = to_device(*gpu, in.q, dt, {t, qc}), dk_in = to_device(*gpu, in.k, dt, {t, kc});
  auto dv_in = to_device(*gpu, in.v, dt, {t, kc}), ddout = to_device(*gpu, in.dout, dt, {t, qc});
  auto dcu = to_device_i32(*gpu, in.cu, {in.n_seg + 1});
  auto out = poisoned(*gpu, dt, {t, qc});
  auto lse = poisoned(*gpu, DType::kF32, {int64_t{c.n_heads}, t});
  gpu->attention_forward(*dq_in, *dk_in, *dv_in, *dcu, sh, *out, *lse);
  std::vector<std::vector<float>> first;
  int differing = 0;
  for (int run = 0; run < 3; ++run) {
    auto ws = poisoned(*gpu, DType::kF32, {attention_workspace_elems(t, sh)});
    auto gq = poisoned(*gpu, dt, {t, qc}), gk = poisoned(*gpu, dt, {t, kc});
    auto gv = poisoned(*gpu, dt, {t, kc});
    gpu->attention_backward(*ddout, *dq_in, *dk_in, *dv_in, *out, *lse, *dcu, sh, *gq, *gk, *gv,
                            *ws);
    std::vector<std::vector<float>> got{from_device(*gpu, *gq), from_device(*gpu, *gk),
                                        from_device(*gpu, *gv)};
    if (run == 0) {
      first = got;
      continue;
    }
    const char* names[] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; ++i) {
      int64_t n_diff = 0;
      for (size_t j = 0; j < got[i].size(); ++j) n_diff += got[i][j] != first[i][j] ? 1 : 0;
      if (n_diff) ++differing;
      EXPECT_EQ(n_diff, 0) << names[i] << " differs in " << n_diff << " of " << got[i].size()
                           << " elements between backward runs 1 and " << run + 1
                           << (d.promise_equal ? " (dense graph)" : " (ragged graph)");
    }
  }
  (void)differing;
}

INSTANTIATE_TEST_SUITE_P(Runs, CudnnAttentionDeterminism,
                         ::testing::Values(DeterminismCase{{700, 1200, 148}, false},
                                           DeterminismCase{{1024, 1024}, true}));

// Random packings of one row length fall into a few segment-count buckets (plans), not one per
// count: 200 random rows of 2048 tokens cut from segments of 64-1024 tokens.
TEST(CudnnPackedAttentionBuckets, RandomSegmentLengthsShareAFewShapes) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(64, 1024);
  std::set<std::tuple<int64_t, int64_t>> shapes;
  for (int row = 0; row < 200; ++row) {
    int64_t n_seg = 0;
    for (int64_t used = 0; used < 2048; used += len(rng)) ++n_seg;
    const cuda::SdpaShape s = cuda::CudnnAttention::ragged_shape(n_seg, 2048, 32, 8, 128, false);
    EXPECT_GE(s.batch, n_seg);
    EXPECT_LT(s.batch, 2 * n_seg);
    EXPECT_EQ(s.seq, 2048);
    shapes.insert({s.batch, s.seq});
  }
  EXPECT_LE(shapes.size(), 4u);
  // The worst case of one row: 1 to 2048 segments → 12 buckets, far under the 64-shape cap.
  std::set<int64_t> all;
  for (int64_t n = 1; n <= 2048; ++n)
    all.insert(cuda::CudnnAttention::ragged_shape(n, 2048, 32, 8, 128, false).batch);
  EXPECT_EQ(all.size(), 12u);
}

}  // namespace
}  // namespace fitlm::cuda_test
