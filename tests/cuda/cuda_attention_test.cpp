// Flash attention forward/backward on the GPU against the CPU reference: causal, GQA 4:1 and 1:1,
// every supported head_dim (32, 64, 80, 96, 128, 256), packed segments of unequal length
// (cu_seqlens), bf16 and fp16 storage. Each backward runs twice and must give the same bytes.
// Cases that promise equal segments (AttentionShape::segment_len) run cuDNN's fused attention,
// required by FITLM_ATTENTION=cudnn so that a shape cuDNN refuses fails instead of silently
// testing fitlm's kernels again.
#include <numeric>

#include "cuda_test_util.h"

namespace fitlm::cuda_test {

struct AttnCase {
  std::vector<int32_t> seg_lens;
  int n_heads, n_kv, head_dim;
  bool cudnn = false;  // promise equal segments: the cuDNN path
};

class CudaAttention : public ::testing::TestWithParam<std::tuple<DType, AttnCase>> {};

TEST_P(CudaAttention, MatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto& [dt, c] = GetParam();
  ScopedAttentionMode mode(c.cudnn);
  auto gpu = make_cuda_backend(0, dt);
  CpuBackend cpu;
  std::vector<int32_t> cu{0};
  for (int32_t len : c.seg_lens) cu.push_back(cu.back() + len);
  const int64_t t = cu.back(), qc = int64_t{c.n_heads} * c.head_dim,
                kc = int64_t{c.n_kv} * c.head_dim;
  const int64_t n_seg = static_cast<int64_t>(c.seg_lens.size());
  AttentionShape sh{c.n_heads, c.n_kv, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
  if (c.cudnn) {
    for (int32_t len : c.seg_lens)
      ASSERT_EQ(len, c.seg_lens[0]) << "cuDNN cases need equal segments";
    sh.segment_len = c.seg_lens[0];
  }
  auto q = rounded(random_vec(t * qc, 1, 1.5f), dt), k = rounded(random_vec(t * kc, 2, 1.5f), dt);
  auto v = rounded(random_vec(t * kc, 3), dt), dout = rounded(random_vec(t * qc, 4), dt);

  auto dq_in = to_device(*gpu, q, dt, {t, qc}), dk_in = to_device(*gpu, k, dt, {t, kc});
  auto dv_in = to_device(*gpu, v, dt, {t, kc}), ddout = to_device(*gpu, dout, dt, {t, qc});
  auto dcu = to_device_i32(*gpu, cu, {n_seg + 1});
  auto out = poisoned(*gpu, dt, {t, qc});
  auto lse = poisoned(*gpu, DType::kF32, {int64_t{c.n_heads}, t});
  gpu->attention_forward(*dq_in, *dk_in, *dv_in, *dcu, sh, *out, *lse);

  std::vector<float> want_out(t * qc), want_lse(c.n_heads * t);
  cpu.attention_forward(host_tensor(q, {t, qc}), host_tensor(k, {t, kc}), host_tensor(v, {t, kc}),
                        host_i32(cu, {n_seg + 1}), sh, host_tensor(want_out, {t, qc}),
                        host_tensor(want_lse, {int64_t{c.n_heads}, t}));
  const std::string name = std::string(" [") + (c.cudnn ? "cudnn " : "") +
                           std::string(dtype_name(dt)) + " hd" + std::to_string(c.head_dim) + " " +
                           std::to_string(c.n_heads) + ":" + std::to_string(c.n_kv) + " segs " +
                           std::to_string(n_seg) + "]";
  auto check = [&](const std::string& what, const std::vector<float>& got,
                   const std::vector<float>& want, double tol) {
    const double e = rel_err(got, want);
    record("attention " + what + name, e);
    EXPECT_LT(e, tol) << what;
  };
  check("out", from_device(*gpu, *out), want_out, 1e-2);
  // cuDNN orders lse [segment, head, position] (backend.h); the CPU orders it [head, token].
  std::vector<float> want_lse_gpu_order = want_lse;
  if (c.cudnn)
    for (int64_t h = 0; h < c.n_heads; ++h)
      for (int64_t i = 0; i < t; ++i) {
        const int64_t seg = i / sh.segment_len, pos = i % sh.segment_len;
        want_lse_gpu_order[(seg * c.n_heads + h) * sh.segment_len + pos] = want_lse[h * t + i];
      }
  check("lse", from_device(*gpu, *lse), want_lse_gpu_order, 1e-4);

  // The CPU backward runs on the CPU's own forward output, rounded as the GPU stores it.
  auto out_r = rounded(want_out, dt);
  std::vector<float> wq(t * qc), wk(t * kc), wv(t * kc);
  cpu.attention_backward(
      host_tensor(dout, {t, qc}), host_tensor(q, {t, qc}), host_tensor(k, {t, kc}),
      host_tensor(v, {t, kc}), host_tensor(out_r, {t, qc}),
      host_tensor(want_lse, {int64_t{c.n_heads}, t}), host_i32(cu, {n_seg + 1}), sh,
      host_tensor(wq, {t, qc}), host_tensor(wk, {t, kc}), host_tensor(wv, {t, kc}), Tensor{});
  // Both dK/dV paths: f32 accumulators in a (poisoned) workspace, and direct writes without.
  auto ws = poisoned(*gpu, DType::kF32, {attention_workspace_elems(t, sh)});
  for (bool with_ws : {true, false}) {
    if (!with_ws && c.cudnn && n_seg > 1) continue;  // cuDNN's layout needs its workspace
    SCOPED_TRACE(with_ws ? "with workspace" : "without workspace");
    auto gq = poisoned(*gpu, dt, {t, qc}), gk = poisoned(*gpu, dt, {t, kc});
    auto gv = poisoned(*gpu, dt, {t, kc});
    gpu->attention_backward(*ddout, *dq_in, *dk_in, *dv_in, *out, *lse, *dcu, sh, *gq, *gk, *gv,
                            with_ws ? *ws : Tensor{});
    const auto got_q = from_device(*gpu, *gq), got_k = from_device(*gpu, *gk),
               got_v = from_device(*gpu, *gv);
    check("dq", got_q, wq, 1e-2);
    check("dk", got_k, wk, 1e-2);
    check("dv", got_v, wv, 1e-2);
    // Deterministic: a second run over re-poisoned outputs and workspace gives the same bits.
    auto gq2 = poisoned(*gpu, dt, {t, qc}), gk2 = poisoned(*gpu, dt, {t, kc});
    auto gv2 = poisoned(*gpu, dt, {t, kc});
    auto ws2 = poisoned(*gpu, DType::kF32, {attention_workspace_elems(t, sh)});
    gpu->attention_backward(*ddout, *dq_in, *dk_in, *dv_in, *out, *lse, *dcu, sh, *gq2, *gk2, *gv2,
                            with_ws ? *ws2 : Tensor{});
    EXPECT_TRUE(from_device(*gpu, *gq2) == got_q) << "dq differs between two runs" << name;
    EXPECT_TRUE(from_device(*gpu, *gk2) == got_k) << "dk differs between two runs" << name;
    EXPECT_TRUE(from_device(*gpu, *gv2) == got_v) << "dv differs between two runs" << name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Combine(
        ::testing::Values(DType::kBF16, DType::kF16),
        ::testing::Values(AttnCase{{37}, 4, 1, 64},             // GQA 4:1, T=37
                          AttnCase{{100, 37, 163}, 8, 2, 128},  // 3 packed segs
                          AttnCase{{129, 64, 70}, 4, 4, 64},    // 1:1, 3 segs
                          AttnCase{{200}, 4, 1, 128}, AttnCase{{200}, 4, 1, 128, true},  // cuDNN
                          AttnCase{{37}, 4, 1, 64, true},          // cuDNN, odd
                          AttnCase{{96, 96, 96}, 4, 4, 64, true},  // 1:1
                          AttnCase{{256, 256}, 8, 2, 128, true},   // GQA
                          // The other head sizes of real models, packed (fitlm's
                          // kernels) and equal-length (cuDNN).
                          AttnCase{{70, 1, 123}, 8, 2, 32}, AttnCase{{97, 64, 30}, 4, 1, 80},
                          AttnCase{{33, 150}, 6, 3, 96}, AttnCase{{130, 5, 64}, 4, 2, 256},
                          AttnCase{{128, 128}, 4, 1, 32, true}, AttnCase{{100}, 4, 4, 80, true},
                          AttnCase{{96, 96}, 6, 2, 96, true},
                          AttnCase{{128, 128}, 4, 2, 256, true})));

}  // namespace fitlm::cuda_test
