// Every CUDA op against its CPU twin (the reference) on random inputs of odd sizes, in bf16 and
// in fp16 storage mode. Inputs are rounded to the storage dtype before both backends see them;
// outputs are poisoned with NaN first. Tolerances: 1e-2 norm-wise for 16-bit outputs, 1e-5 for
// f32 paths.
#include <cstdio>
#include <map>
#include <mutex>
#include <string>

#include "cuda_test_util.h"

namespace fitlm::cuda_test {

namespace {
std::mutex g_mu;
std::map<std::string, double>& worst() {
  static std::map<std::string, double> m;
  return m;
}
class PrintWorst : public ::testing::Environment {
 public:
  void TearDown() override {
    std::printf("\n%-40s %s\n", "op [dtype]", "max rel err vs CPU");
    for (const auto& [op, e] : worst()) std::printf("%-40s %.3e\n", op.c_str(), e);
  }
};
const auto* g_env = ::testing::AddGlobalTestEnvironment(new PrintWorst);
}  // namespace

void record(const std::string& op, double err) {
  std::lock_guard<std::mutex> lock(g_mu);
  double& w = worst()[op];
  if (!(err <= w)) w = err;  // NaN sticks
}

class CudaOps : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    gpu = make_cuda_backend(0, GetParam());
  }
  DType dt() const { return GetParam(); }
  std::string tag(const std::string& op) const {
    return op + " [" + std::string(dtype_name(dt())) + "]";
  }
  void check(const std::string& op, const std::vector<float>& got, const std::vector<float>& want,
             double tol) {
    const double e = rel_err(got, want);
    record(tag(op), e);
    EXPECT_LT(e, tol) << op;
  }
  std::unique_ptr<Backend> gpu;
  CpuBackend cpu;
};

TEST_P(CudaOps, UploadCopyCastFill) {
  const int64_t n = 1003;
  auto x = rounded(random_vec(n, 1), dt());
  auto d = to_device(*gpu, x, dt(), {n});
  check("upload/download", from_device(*gpu, *d), x, 0.0 + 1e-12);
  auto f = poisoned(*gpu, DType::kF32, {n});
  gpu->copy(*d, *f);  // 16-bit -> f32 on the device
  check("copy cast->f32", from_device(*gpu, *f), x, 1e-12);
  auto back = poisoned(*gpu, dt(), {n});
  gpu->copy(*f, *back);
  check("copy cast->16", from_device(*gpu, *back), x, 1e-12);
  gpu->fill(*back, 0.5f);
  check("fill", from_device(*gpu, *back), std::vector<float>(n, 0.5f), 1e-12);
}

TEST_P(CudaOps, AddAxpyScaleBias) {
  const int64_t rows = 37, cols = 96, n = rows * cols;
  auto a = rounded(random_vec(n, 2), dt()), b = rounded(random_vec(n, 3), dt());
  auto bias = rounded(random_vec(cols, 4), dt());
  auto da = to_device(*gpu, a, dt(), {rows, cols}), db = to_device(*gpu, b, dt(), {rows, cols});
  auto out = poisoned(*gpu, dt(), {rows, cols});
  gpu->add(*da, *db, *out);
  std::vector<float> want(n);
  cpu.add(host_tensor(a, {rows, cols}), host_tensor(b, {rows, cols}),
          host_tensor(want, {rows, cols}));
  check("add", from_device(*gpu, *out), want, 1e-2);

  // Mixed: a 16-bit x into an f32 accumulator (gradient accumulation).
  auto y = random_vec(n, 5);
  auto dy = to_device(*gpu, y, DType::kF32, {rows, cols});
  gpu->axpy(0.37f, *da, *dy);
  cpu.axpy(0.37f, host_tensor(a, {rows, cols}), host_tensor(y, {rows, cols}));
  check("axpy 16->f32", from_device(*gpu, *dy), y, 1e-5);

  gpu->scale(*dy, -1.7f);
  cpu.scale(host_tensor(y, {rows, cols}), -1.7f);
  check("scale f32", from_device(*gpu, *dy), y, 1e-5);

  auto dbias = to_device(*gpu, bias, dt(), {cols});
  gpu->add_bias(*da, *dbias);
  cpu.add_bias(host_tensor(a, {rows, cols}), host_tensor(bias, {cols}));
  check("add_bias", from_device(*gpu, *da), a, 1e-2);

  auto g = random_vec(cols, 6);
  auto dg = to_device(*gpu, g, DType::kF32, {cols});
  gpu->bias_backward(*db, *dg);
  cpu.bias_backward(host_tensor(b, {rows, cols}), host_tensor(g, {cols}));
  check("bias_backward (f32 +=)", from_device(*gpu, *dg), g, 1e-5);
}

TEST_P(CudaOps, DropoutMatchesCpuMask) {
  const int64_t n = 37 * 1003;
  auto x = rounded(random_vec(n, 7), dt());
  auto dx = to_device(*gpu, x, dt(), {n});
  auto out = poisoned(*gpu, dt(), {n});
  gpu->dropout(*dx, *out, 0.3f, 0x1234abcdull);
  std::vector<float> want(n);
  cpu.dropout(host_tensor(x, {n}), host_tensor(want, {n}), 0.3f, 0x1234abcdull);
  const auto got = from_device(*gpu, *out);
  int64_t mask_mismatch = 0;
  for (int64_t i = 0; i < n; ++i) mask_mismatch += (got[i] == 0.0f) != (want[i] == 0.0f);
  EXPECT_EQ(mask_mismatch, 0);
  check("dropout", got, want, 1e-2);
  // f32 path: identical to the CPU up to rounding of x / (1 − p).
  auto xf = random_vec(n, 8);
  auto dxf = to_device(*gpu, xf, DType::kF32, {n});
  auto outf = poisoned(*gpu, DType::kF32, {n});
  gpu->dropout(*dxf, *outf, 0.1f, 99);
  cpu.dropout(host_tensor(xf, {n}), host_tensor(want, {n}), 0.1f, 99);
  check("dropout f32", from_device(*gpu, *outf), want, 1e-6);
}

TEST_P(CudaOps, Gemm) {
  const int64_t m = 37, k = 1003, n = 96;
  // y [m,n] = x [m,k] · Wᵀ, W [n,k] (HF layout), 16-bit in and out.
  auto x = rounded(random_vec(m * k, 10), dt()), w = rounded(random_vec(n * k, 11), dt());
  auto dx = to_device(*gpu, x, dt(), {m, k}), dw = to_device(*gpu, w, dt(), {n, k});
  auto y = poisoned(*gpu, dt(), {m, n});
  gpu->gemm(*dx, false, *dw, true, *y, 1.0f, 0.0f);
  std::vector<float> want(m * n);
  cpu.gemm(host_tensor(x, {m, k}), false, host_tensor(w, {n, k}), true, host_tensor(want, {m, n}),
           1.0f, 0.0f);
  check("gemm x·Wᵀ", from_device(*gpu, *y), want, 1e-2);

  // Weight gradient into an f32 master grad: dW [n,k] += dyᵀ [n,m] · x [m,k], beta = 1.
  auto gy = rounded(random_vec(m * n, 12), dt());
  auto dgy = to_device(*gpu, gy, dt(), {m, n});
  auto g0 = random_vec(n * k, 13);
  auto dgw = to_device(*gpu, g0, DType::kF32, {n, k});
  gpu->gemm(*dgy, true, *dx, false, *dgw, 1.0f, 1.0f);
  cpu.gemm(host_tensor(gy, {m, n}), true, host_tensor(x, {m, k}), false, host_tensor(g0, {n, k}),
           1.0f, 1.0f);
  check("gemm dW += dyᵀ·x (16→f32)", from_device(*gpu, *dgw), g0, 1e-5);

  // Input gradient: dx [m,k] = dy [m,n] · W [n,k].
  auto gx = poisoned(*gpu, dt(), {m, k});
  gpu->gemm(*dgy, false, *dw, false, *gx, 1.0f, 0.0f);
  std::vector<float> want_gx(m * k);
  cpu.gemm(host_tensor(gy, {m, n}), false, host_tensor(w, {n, k}), false,
           host_tensor(want_gx, {m, k}), 1.0f, 0.0f);
  check("gemm dy·W", from_device(*gpu, *gx), want_gx, 1e-2);

  // f32 everything, every transpose combination, alpha and beta.
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int64_t mm = 45, kk = 77, nn = 33;
      auto a = random_vec(mm * kk, 20 + ta), b = random_vec(kk * nn, 30 + tb);
      auto c = random_vec(mm * nn, 40);
      const Shape sa = ta ? Shape{kk, mm} : Shape{mm, kk}, sb = tb ? Shape{nn, kk} : Shape{kk, nn};
      auto da32 = to_device(*gpu, a, DType::kF32, sa), db32 = to_device(*gpu, b, DType::kF32, sb);
      auto dc32 = to_device(*gpu, c, DType::kF32, {mm, nn});
      gpu->gemm(*da32, ta, *db32, tb, *dc32, 0.5f, 0.25f);
      cpu.gemm(host_tensor(a, sa), ta, host_tensor(b, sb), tb, host_tensor(c, {mm, nn}), 0.5f,
               0.25f);
      check("gemm f32", from_device(*gpu, *dc32), c, 1e-5);
    }
}

TEST_P(CudaOps, Embedding) {
  const int64_t vocab = 1003, h = 96, t = 37;
  auto table = rounded(random_vec(vocab * h, 50), dt());
  std::vector<int32_t> ids(t);
  for (int64_t i = 0; i < t; ++i) ids[i] = static_cast<int32_t>((i * 389 + 7) % vocab);
  ids[5] = ids[9] = ids[30] = 17;  // repeated ids accumulate in the backward
  auto dtab = to_device(*gpu, table, dt(), {vocab, h});
  auto did = to_device_i32(*gpu, ids, {t});
  auto out = poisoned(*gpu, dt(), {t, h});
  gpu->embedding_forward(*did, *dtab, *out);
  std::vector<float> want(t * h);
  cpu.embedding_forward(host_i32(ids, {t}), host_tensor(table, {vocab, h}),
                        host_tensor(want, {t, h}));
  check("embedding_forward", from_device(*gpu, *out), want, 1e-12);

  auto dout = rounded(random_vec(t * h, 51), dt());
  auto ddout = to_device(*gpu, dout, dt(), {t, h});
  auto g = random_vec(vocab * h, 52);
  auto dg = to_device(*gpu, g, DType::kF32, {vocab, h});
  gpu->embedding_backward(*did, *ddout, *dg);
  cpu.embedding_backward(host_i32(ids, {t}), host_tensor(dout, {t, h}), host_tensor(g, {vocab, h}));
  check("embedding_backward (f32 +=)", from_device(*gpu, *dg), g, 1e-5);

  ids[3] = static_cast<int32_t>(vocab);  // out of range: reported at synchronize()
  auto bad = to_device_i32(*gpu, ids, {t});
  gpu->embedding_forward(*bad, *dtab, *out);
  EXPECT_THROW(gpu->synchronize(), Error);
  gpu->synchronize();  // the flag was cleared
}

TEST_P(CudaOps, RmsNorm) {
  for (const int64_t h : {96, 4099}) {
    const int64_t t = 37;
    auto x = rounded(random_vec(t * h, 60, 2.0f), dt());
    std::vector<float> w = rounded(random_vec(h, 61), dt());
    for (auto& v : w) v += 1.0f;
    auto dx = to_device(*gpu, x, dt(), {t, h}), dw = to_device(*gpu, w, dt(), {h});
    auto out = poisoned(*gpu, dt(), {t, h});
    auto rstd = poisoned(*gpu, DType::kF32, {t});
    gpu->rmsnorm_forward(*dx, *dw, 1e-6f, *out, *rstd);
    std::vector<float> want(t * h), want_rstd(t);
    cpu.rmsnorm_forward(host_tensor(x, {t, h}), host_tensor(w, {h}), 1e-6f,
                        host_tensor(want, {t, h}), host_tensor(want_rstd, {t}));
    check("rmsnorm_forward", from_device(*gpu, *out), want, 1e-2);
    check("rmsnorm rstd (f32)", from_device(*gpu, *rstd), want_rstd, 1e-5);

    auto g = rounded(random_vec(t * h, 62), dt());
    auto dg = to_device(*gpu, g, dt(), {t, h});
    auto gx = poisoned(*gpu, dt(), {t, h});
    auto gw0 = random_vec(h, 63);
    auto gw = to_device(*gpu, gw0, DType::kF32, {h});
    gpu->rmsnorm_backward(*dg, *dx, *dw, *rstd, *gx, *gw);
    std::vector<float> want_gx(t * h);
    cpu.rmsnorm_backward(host_tensor(g, {t, h}), host_tensor(x, {t, h}), host_tensor(w, {h}),
                         host_tensor(want_rstd, {t}), host_tensor(want_gx, {t, h}),
                         host_tensor(gw0, {h}));
    check("rmsnorm_backward dx", from_device(*gpu, *gx), want_gx, 1e-2);
    check("rmsnorm_backward dw (f32 +=)", from_device(*gpu, *gw), gw0, 1e-5);
  }
}

TEST_P(CudaOps, Rope) {
  for (const int hd : {64, 128}) {
    const int64_t t = 37;
    const int nh = 3;
    auto x = rounded(random_vec(t * nh * hd, 70), dt());
    std::vector<int32_t> pos(t);
    for (int64_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>(i < 20 ? i : 4000 + i * 91);
    std::vector<float> inv_freq(hd / 2);
    for (int j = 0; j < hd / 2; ++j)
      inv_freq[j] = std::pow(500000.0f, -2.0f * static_cast<float>(j) / static_cast<float>(hd));
    auto d = to_device(*gpu, x, dt(), {t, nh * int64_t{hd}});
    auto dpos = to_device_i32(*gpu, pos, {t});
    auto dfreq = to_device(*gpu, inv_freq, DType::kF32, {hd / 2});
    for (const bool inverse : {false, true}) {
      gpu->rope(*d, nh, hd, *dpos, *dfreq, inverse);
      cpu.rope(host_tensor(x, {t, nh * int64_t{hd}}), nh, hd, host_i32(pos, {t}),
               host_tensor(inv_freq, {hd / 2}), inverse);
      check(inverse ? "rope inverse" : "rope", from_device(*gpu, *d), x, 1e-2);
      x = rounded(x, dt());  // the device tensor holds rounded values between the two calls
    }
  }
}

TEST_P(CudaOps, SwiGlu) {
  // 1003 columns: the scalar kernels; 1024: the 8-wide vector kernels.
  for (const int64_t i : {int64_t{1003}, int64_t{1024}}) {
    SCOPED_TRACE(i);
    const int64_t t = 37, n = t * i;
    auto gate = rounded(random_vec(n, 80, 2.0f), dt()), up = rounded(random_vec(n, 81), dt());
    auto dgate_in = to_device(*gpu, gate, dt(), {t, i}), dup_in = to_device(*gpu, up, dt(), {t, i});
    auto out = poisoned(*gpu, dt(), {t, i});
    gpu->swiglu_forward(*dgate_in, *dup_in, *out);
    std::vector<float> want(n);
    cpu.swiglu_forward(host_tensor(gate, {t, i}), host_tensor(up, {t, i}),
                       host_tensor(want, {t, i}));
    check("swiglu_forward", from_device(*gpu, *out), want, 1e-2);

    auto g = rounded(random_vec(n, 82), dt());
    auto dg = to_device(*gpu, g, dt(), {t, i});
    auto gg = poisoned(*gpu, dt(), {t, i}), gu = poisoned(*gpu, dt(), {t, i});
    gpu->swiglu_backward(*dg, *dgate_in, *dup_in, *gg, *gu);
    std::vector<float> want_g(n), want_u(n);
    cpu.swiglu_backward(host_tensor(g, {t, i}), host_tensor(gate, {t, i}), host_tensor(up, {t, i}),
                        host_tensor(want_g, {t, i}), host_tensor(want_u, {t, i}));
    check("swiglu_backward dgate", from_device(*gpu, *gg), want_g, 1e-2);
    check("swiglu_backward dup", from_device(*gpu, *gu), want_u, 1e-2);
    // In place, as the model runs it (dgate into gate, dup into up): the same bits.
    gpu->swiglu_backward(*dg, *dgate_in, *dup_in, *dgate_in, *dup_in);
    EXPECT_EQ(from_device(*gpu, *dgate_in), from_device(*gpu, *gg)) << "in-place dgate";
    EXPECT_EQ(from_device(*gpu, *dup_in), from_device(*gpu, *gu)) << "in-place dup";
  }
}

TEST_P(CudaOps, CrossEntropy) {
  for (const int64_t vocab : {int64_t{1003}, int64_t{152064}}) {
    const int64_t t = vocab > 2000 ? 5 : 37;
    auto z = rounded(random_vec(t * vocab, 90, 3.0f), dt());
    std::vector<int32_t> labels(t);
    for (int64_t r = 0; r < t; ++r) labels[r] = static_cast<int32_t>((r * 7919 + 3) % vocab);
    labels[1] = -100;
    auto dz = to_device(*gpu, z, dt(), {t, vocab});
    auto dl = to_device_i32(*gpu, labels, {t});
    auto losses = poisoned(*gpu, DType::kF32, {t});
    const float scale = 1.0f / static_cast<float>(t);
    gpu->cross_entropy(*dz, *dl, *losses, scale, true);
    std::vector<float> want_loss(t);
    cpu.cross_entropy(host_tensor(z, {t, vocab}), host_i32(labels, {t}),
                      host_tensor(want_loss, {t}), scale, true);
    check("cross_entropy loss (f32)", from_device(*gpu, *losses), want_loss, 1e-5);
    check("cross_entropy grad (in place)", from_device(*gpu, *dz), z, 1e-2);
  }
}

TEST_P(CudaOps, SumSquaresAndAdamW) {
  const int64_t n = 100003;
  auto x = rounded(random_vec(n, 100), dt());
  auto d16 = to_device(*gpu, x, dt(), {n});
  const double want = cpu.sum_squares(host_tensor(x, {n}));
  const double e16 = std::abs(gpu->sum_squares(*d16) - want) / want;
  record(tag("sum_squares"), e16);
  EXPECT_LT(e16, 1e-9);

  auto p = random_vec(n, 101), m = random_vec(n, 102, 0.1f), v = random_vec(n, 103, 0.1f);
  for (auto& e : v) e = std::abs(e);
  auto dp = to_device(*gpu, p, DType::kF32, {n}), dm = to_device(*gpu, m, DType::kF32, {n});
  auto dv = to_device(*gpu, v, DType::kF32, {n});
  AdamWParams hp;
  hp.lr = 1e-3f;
  hp.weight_decay = 0.1f;
  for (int64_t step = 1; step <= 3; ++step) {
    hp.step = step;
    gpu->adamw_step(*dp, *d16, *dm, *dv, hp, 0.5f);  // 16-bit gradient, f32 state
    cpu.adamw_step(host_tensor(p, {n}), host_tensor(x, {n}), host_tensor(m, {n}),
                   host_tensor(v, {n}), hp, 0.5f);
  }
  check("adamw param (f32)", from_device(*gpu, *dp), p, 1e-5);
  check("adamw m (f32)", from_device(*gpu, *dm), m, 1e-5);
  check("adamw v (f32)", from_device(*gpu, *dv), v, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Storage, CudaOps, ::testing::Values(DType::kBF16, DType::kF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace fitlm::cuda_test
