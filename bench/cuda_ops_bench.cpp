// CUDA op benchmark (gtest-free): the cuBLASLt bf16 GEMM rate at 8192³ and the flash attention
// kernels at S=2048, 32 heads, head_dim 128, against a roofline and a naive (unfused) estimate;
// memory-bound ops and the 4-bit dequantization in GB/s, the latter next to a device copy.
// Runs the same kernels the engine uses, through the Backend interface.
//   usage: cuda_ops_bench [--quick]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "fitlm/backend/backend.h"
#include "fitlm/backend/cuda/cuda_backend.h"
#include "fitlm/core/quant4.h"
#include "fitlm/core/quant4_tensor.h"

using namespace fitlm;

namespace {

struct Buf {
  Backend& be;
  Tensor t;
  Buf(Backend& b, DType dt, Shape s) : be(b), t(nullptr, dt, s, b.device()) {
    t.data = be.allocate(t.bytes());
  }
  ~Buf() { be.deallocate(t.data); }
  operator Tensor() const { return t; }
};

// Random normal data: never time on zeros (they run faster than real data).
void randomize(Backend& be, const Tensor& t, float scale, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  for (auto& x : v) x = d(rng);
  be.upload(t, v.data(), DType::kF32);
}

// Median milliseconds per call over `reps` timed batches of `iters` calls, after warm-up.
double time_ms(Backend& be, const std::function<void()>& fn, int iters, int reps = 7) {
  for (int i = 0; i < 2; ++i) fn();
  be.synchronize();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    be.synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count() / iters);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device\n");
    return 1;
  }
  auto be = make_cuda_backend(0, DType::kBF16);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  // ---- GEMM ----------------------------------------------------------------------------------
  double gemm_tflops = 0.0;
  {
    const int64_t n = 8192;
    Buf a(*be, DType::kBF16, {n, n}), b(*be, DType::kBF16, {n, n}), c(*be, DType::kBF16, {n, n});
    randomize(*be, a, 1.0f, 1);
    randomize(*be, b, 1.0f, 2);
    const double ms = time_ms(
        *be, [&] { be->gemm(a, false, b, true, c, 1.0f, 0.0f); }, 10);
    gemm_tflops = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    std::printf("gemm bf16 8192^3 (x·Wᵀ, bf16 out): %.3f ms  %.0f TFLOP/s\n", ms, gemm_tflops);
    Buf cf(*be, DType::kF32, {n, n});
    randomize(*be, cf, 1.0f, 3);
    const double ms2 = time_ms(
        *be, [&] { be->gemm(a, true, b, false, cf, 1.0f, 1.0f); }, 10);
    std::printf("gemm bf16 8192^3 (aᵀ·b += into f32, weight-grad shape): %.3f ms  %.0f TFLOP/s\n",
                ms2, 2.0 * n * n * n / (ms2 * 1e-3) / 1e12);
  }

  // ---- attention -----------------------------------------------------------------------------
  for (const int n_kv : {32, 8}) {
    const int s = 2048, nh = 32, hd = 128, n_seq = quick ? 1 : 4;
    const int64_t t = int64_t{s} * n_seq;
    AttentionShape sh{nh, n_kv, hd, 1.0f / std::sqrt(float(hd))};
    Buf q(*be, DType::kBF16, {t, int64_t{nh} * hd}), k(*be, DType::kBF16, {t, int64_t{n_kv} * hd});
    Buf v(*be, DType::kBF16, {t, int64_t{n_kv} * hd}), o(*be, DType::kBF16, {t, int64_t{nh} * hd});
    Buf dout(*be, DType::kBF16, {t, int64_t{nh} * hd}),
        dq(*be, DType::kBF16, {t, int64_t{nh} * hd});
    Buf dk(*be, DType::kBF16, {t, int64_t{n_kv} * hd}),
        dv(*be, DType::kBF16, {t, int64_t{n_kv} * hd});
    Buf lse(*be, DType::kF32, {nh, t}), cu(*be, DType::kI32, {n_seq + 1});
    Buf ws(*be, DType::kF32, {attention_workspace_elems(t, sh)});
    randomize(*be, q, 1.0f, 4);
    randomize(*be, k, 1.0f, 5);
    randomize(*be, v, 1.0f, 6);
    randomize(*be, dout, 1.0f, 7);
    std::vector<int32_t> cuh(n_seq + 1);
    for (int i = 0; i <= n_seq; ++i) cuh[i] = i * s;
    be->upload(cu, cuh.data(), DType::kI32);
    // Causal: half of the S×S score matrix per sequence. Forward = 2 products of 2·S²/2·hd each.
    const double fwd_flop = 4.0 * double(s) * s * hd * nh / 2.0 * n_seq;
    const double ms_f = time_ms(
        *be, [&] { be->attention_forward(q, k, v, cu, sh, o, lse); }, 20);
    const double ms_b = time_ms(
        *be, [&] { be->attention_backward(dout, q, k, v, o, lse, cu, sh, dq, dk, dv, ws); }, 10);
    // Naive unfused forward: S×S scores materialised in bf16 (write S, read S, write P, read P
    // = 8 bytes per score, causal half) at ~3 TB/s, plus the two products at the GEMM rate.
    const double naive_ms = 8.0 * double(s) * s * nh * n_seq / 2.0 / 3.0e12 * 1e3 +
                            fwd_flop / (gemm_tflops * 1e12) * 1e3;
    std::printf(
        "attention fwd  T=%lld (%d x %d) heads %d/%d hd %d: %.3f ms  %.0f TFLOP/s  "
        "(roofline at GEMM rate %.3f ms, naive unfused ~%.3f ms)\n",
        static_cast<long long>(t), n_seq, s, nh, n_kv, hd, ms_f, fwd_flop / (ms_f * 1e-3) / 1e12,
        fwd_flop / (gemm_tflops * 1e12) * 1e3, naive_ms);
    // FA2 convention: backward = 2.5 × forward FLOPs (5 products); ours recomputes 2 more.
    std::printf("attention bwd  same shape: %.3f ms  %.0f TFLOP/s (FA2 count, 2.5x fwd)\n", ms_b,
                2.5 * fwd_flop / (ms_b * 1e-3) / 1e12);
  }

  // ---- memory-bound ops (GB/s counts each input read once and each output written once) -----
  {
    const int64_t t = 8192, h = 4096;
    Buf x(*be, DType::kBF16, {t, h}), w(*be, DType::kBF16, {h}), y(*be, DType::kBF16, {t, h});
    Buf rstd(*be, DType::kF32, {t});
    randomize(*be, x, 1.0f, 8);
    randomize(*be, w, 1.0f, 9);
    double ms = time_ms(
        *be, [&] { be->rmsnorm_forward(x, w, 1e-6f, y, rstd); }, 20);
    std::printf("rmsnorm_forward [8192, 4096] bf16: %.3f ms  %.0f GB/s\n", ms,
                2.0 * t * h * 2 / (ms * 1e-3) / 1e9);
    ms = time_ms(
        *be, [&] { be->add(x, y, y); }, 20);
    std::printf("add [8192, 4096] bf16: %.3f ms  %.0f GB/s\n", ms,
                3.0 * t * h * 2 / (ms * 1e-3) / 1e9);
    const int64_t it = 8192 * 14336 / 4;
    Buf g(*be, DType::kBF16, {it}), u(*be, DType::kBF16, {it}), so(*be, DType::kBF16, {it});
    randomize(*be, g, 1.0f, 10);
    randomize(*be, u, 1.0f, 11);
    ms = time_ms(
        *be, [&] { be->swiglu_forward(g, u, so); }, 20);
    std::printf("swiglu_forward %lld bf16: %.3f ms  %.0f GB/s\n", static_cast<long long>(it), ms,
                3.0 * it * 2 / (ms * 1e-3) / 1e9);
  }
  // ---- 4-bit weights (QLoRA): dequantize4 of an 8B MLP matrix, against a plain device copy ---
  {
    const int64_t rows = 4096, cols = 14336, n = rows * cols, bs = 64;
    const int64_t n_packed = quant4_packed_bytes(n), blocks = quant4_blocks(n, bs),
                  n_nested = quant4_nested_blocks(n, bs);
    Buf packed(*be, DType::kU8, {n_packed}), codes(*be, DType::kU8, {blocks});
    Buf nested(*be, DType::kF32, {n_nested}), map(*be, DType::kF32, {256});
    Buf w(*be, DType::kBF16, {rows, cols}), w2(*be, DType::kBF16, {rows, cols});
    std::mt19937 rng(13);
    std::uniform_int_distribution<int> byte(0, 255);
    std::vector<uint8_t> bytes(static_cast<size_t>(n_packed));
    for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
    be->upload(packed, bytes.data(), DType::kU8);
    bytes.resize(static_cast<size_t>(blocks));
    for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
    be->upload(codes, bytes.data(), DType::kU8);
    std::vector<float> nested_h(static_cast<size_t>(n_nested));
    std::uniform_real_distribution<float> scale(0.005f, 0.05f);
    for (auto& x : nested_h) x = scale(rng);
    be->upload(nested, nested_h.data(), DType::kF32);
    be->upload(map, quant::dynamic_map().data(), DType::kF32);
    Quant4Tensor q;
    q.type = quant::QuantType::kNF4;
    q.blocksize = bs;
    q.shape = {rows, cols};
    q.packed = packed;
    q.absmax = codes;
    q.nested_absmax = nested;
    q.nested_map = map;
    q.offset = 0.03f;
    q.round_to = DType::kBF16;
    const double ms = time_ms(
        *be, [&] { be->dequantize4(q, w); }, 20);
    const double read = double(n_packed) + double(blocks) + 4.0 * double(n_nested) + 1024.0,
                 written = 2.0 * double(n);
    const double ms_copy = time_ms(
        *be, [&] { be->copy(w, w2); }, 20);
    std::printf(
        "dequantize4 nf4+dq bs64 [4096, 14336] -> bf16: %.3f ms  %.0f GB/s (%.1f MB read + %.1f "
        "MB written); copy of the %.1f MB output: %.3f ms  %.0f GB/s (read + write)\n",
        ms, (read + written) / (ms * 1e-3) / 1e9, read / 1e6, written / 1e6, written / 1e6, ms_copy,
        2.0 * written / (ms_copy * 1e-3) / 1e9);
  }
  {
    const int64_t t = 2048, vocab = 128256;
    Buf z(*be, DType::kBF16, {t, vocab}), labels(*be, DType::kI32, {t}),
        loss(*be, DType::kF32, {t});
    randomize(*be, z, 2.0f, 12);
    std::vector<int32_t> lab(t);
    for (int64_t i = 0; i < t; ++i) lab[i] = static_cast<int32_t>((i * 7919) % vocab);
    be->upload(labels, lab.data(), DType::kI32);
    // The gradient overwrites the logits; timing re-runs it on its own output (still finite).
    const double ms = time_ms(
        *be, [&] { be->cross_entropy(z, labels, loss, 1.0f / t, true); }, 10);
    std::printf(
        "cross_entropy [2048, 128256] bf16 + grad: %.3f ms  %.0f GB/s (2 reads + 1 write)\n", ms,
        3.0 * t * vocab * 2 / (ms * 1e-3) / 1e9);
  }
  return 0;
}
