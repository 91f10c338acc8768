// The CUDA mixture-of-experts ops against the CPU ones (the reference) on the same random inputs,
// with 16-bit storage (bf16, fp16) for the float tensors that may be 16-bit, f32 for routing.
// Inputs are rounded to the storage dtype first; outputs are poisoned with NaN; index outputs
// must match exactly. The ops are deterministic: a second run must give the same bits.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cuda_test_util.h"

namespace fitlm::cuda_test {
namespace {

std::vector<int32_t> download_i32(Backend& be, const Tensor& t) {
  std::vector<float> f(static_cast<size_t>(t.numel()));
  be.download(t, f.data());  // i32 -> f32 is exact for these small indices
  return std::vector<int32_t>(f.begin(), f.end());
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Random distinct experts per token.
std::vector<int32_t> random_experts(int64_t t_count, int k, int e_count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ex;
  std::vector<int32_t> all(static_cast<size_t>(e_count));
  for (int64_t t = 0; t < t_count; ++t) {
    for (int e = 0; e < e_count; ++e) all[static_cast<size_t>(e)] = e;
    std::shuffle(all.begin(), all.end(), rng);
    ex.insert(ex.end(), all.begin(), all.begin() + k);
  }
  return ex;
}

// row_of of a routing, from the CPU's permutation.
std::vector<int32_t> row_of_for(CpuBackend& cpu, std::vector<int32_t> ex, int64_t t_count, int k,
                                int e_count) {
  const int64_t n = t_count * k;
  std::vector<int32_t> token(n), pair(n), row_of(n);
  std::vector<int64_t> counts;
  cpu.moe_permute(host_i32(ex, {t_count, k}), e_count, host_i32(token, {n}), host_i32(pair, {n}),
                  host_i32(row_of, {t_count, k}), counts);
  return row_of;
}

class CudaMoeOps : public ::testing::TestWithParam<DType> {
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

TEST_P(CudaMoeOps, Route) {
  const int64_t t_count = 301;
  for (const auto& [e_count, k] : {std::pair{4, 1}, std::pair{8, 2}, std::pair{60, 4},
                                   std::pair{64, 8}, std::pair{128, 8}, std::pair{512, 32}}) {
    for (bool renorm : {false, true}) {
      const std::string op = "moe_route E" + std::to_string(e_count) + " k" + std::to_string(k) +
                             (renorm ? " renorm" : "");
      auto logits = rounded(random_vec(t_count * e_count, 10 + e_count + k, 2.0f), dt());
      std::vector<float> p(t_count * e_count), w(t_count * k);
      std::vector<int32_t> ex(t_count * k);
      cpu.moe_route(host_tensor(logits, {t_count, e_count}), k, renorm,
                    host_tensor(p, {t_count, e_count}), host_tensor(w, {t_count, k}),
                    host_i32(ex, {t_count, k}));
      auto dl = to_device(*gpu, logits, dt(), {t_count, e_count});
      auto dp = poisoned(*gpu, DType::kF32, {t_count, e_count});
      auto dw = poisoned(*gpu, DType::kF32, {t_count, k});
      auto de = to_device_i32(*gpu, std::vector<int32_t>(t_count * k, -7), {t_count, k});
      gpu->moe_route(*dl, k, renorm, *dp, *dw, *de);
      EXPECT_EQ(download_i32(*gpu, *de), ex) << op;
      check(op + " probs", from_device(*gpu, *dp), p, 1e-5);
      check(op + " weights", from_device(*gpu, *dw), w, 1e-5);
      const auto w1 = from_device(*gpu, *dw);
      gpu->moe_route(*dl, k, renorm, *dp, *dw, *de);
      EXPECT_TRUE(same_bits(from_device(*gpu, *dw), w1)) << op << ": not deterministic";
    }
  }
}

TEST_P(CudaMoeOps, RouteTies) {
  const int64_t e_count = 6;
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f, 0.25f,  //
                               1.5f, 1.5f, 1.5f,  1.5f, 1.5f, 1.5f};
  auto dl = to_device(*gpu, logits, dt(), {2, e_count});
  auto dp = poisoned(*gpu, DType::kF32, {2, e_count});
  auto dw = poisoned(*gpu, DType::kF32, {2, 3});
  auto de = to_device_i32(*gpu, std::vector<int32_t>(6, -7), {2, 3});
  gpu->moe_route(*dl, 3, true, *dp, *dw, *de);
  EXPECT_EQ(download_i32(*gpu, *de), (std::vector<int32_t>{1, 3, 4, 0, 1, 2}));
}

TEST_P(CudaMoeOps, RouteBackward) {
  const int64_t t_count = 257;
  for (const auto& [e_count, k] :
       {std::pair{4, 2}, std::pair{64, 8}, std::pair{100, 3}, std::pair{512, 32}}) {
    for (bool renorm : {false, true}) {
      for (bool with_extra : {false, true}) {
        for (DType out_dt : {dt(), DType::kF32}) {
          const std::string op = "moe_route_backward E" + std::to_string(e_count) + " k" +
                                 std::to_string(k) + (renorm ? " renorm" : "") +
                                 (with_extra ? " extra" : "") + " -> " +
                                 std::string(dtype_name(out_dt));
          auto logits = random_vec(t_count * e_count, 20 + e_count, 1.5f);
          std::vector<float> p(t_count * e_count), w(t_count * k);
          std::vector<int32_t> ex(t_count * k);
          cpu.moe_route(host_tensor(logits, {t_count, e_count}), k, renorm,
                        host_tensor(p, {t_count, e_count}), host_tensor(w, {t_count, k}),
                        host_i32(ex, {t_count, k}));
          auto dwts = random_vec(t_count * k, 30 + k);
          auto extra = random_vec(t_count * e_count, 40 + e_count, 0.5f);
          std::vector<float> want(t_count * e_count);
          cpu.moe_route_backward(host_tensor(p, {t_count, e_count}), host_tensor(w, {t_count, k}),
                                 host_i32(ex, {t_count, k}), host_tensor(dwts, {t_count, k}),
                                 renorm,
                                 with_extra ? host_tensor(extra, {t_count, e_count}) : Tensor{},
                                 host_tensor(want, {t_count, e_count}));
          auto g_p = to_device(*gpu, p, DType::kF32, {t_count, e_count});
          auto g_w = to_device(*gpu, w, DType::kF32, {t_count, k});
          auto g_e = to_device_i32(*gpu, ex, {t_count, k});
          auto g_dw = to_device(*gpu, dwts, DType::kF32, {t_count, k});
          auto g_x = to_device(*gpu, extra, DType::kF32, {t_count, e_count});
          auto g_out = poisoned(*gpu, out_dt, {t_count, e_count});
          gpu->moe_route_backward(*g_p, *g_w, *g_e, *g_dw, renorm,
                                  with_extra ? g_x->tensor() : Tensor{}, *g_out);
          check(op, from_device(*gpu, *g_out), rounded(want, out_dt), tol_for(out_dt));
        }
      }
    }
  }
}

TEST_P(CudaMoeOps, Permute) {
  const int64_t t_count = 333;
  const int k = 4, e_count = 9;
  // Expert 5 gets no token.
  auto ex = random_experts(t_count, k, e_count - 1, 50);
  for (auto& e : ex)
    if (e >= 5) ++e;
  for (const auto& experts : {ex, std::vector<int32_t>(t_count * k, 3)}) {
    const int64_t n = t_count * k;
    std::vector<int32_t> token(n), pair(n), row_of(n);
    std::vector<int64_t> counts, g_counts;
    std::vector<int32_t> exc = experts;
    cpu.moe_permute(host_i32(exc, {t_count, k}), e_count, host_i32(token, {n}), host_i32(pair, {n}),
                    host_i32(row_of, {t_count, k}), counts);
    auto g_ex = to_device_i32(*gpu, experts, {t_count, k});
    auto g_token = to_device_i32(*gpu, std::vector<int32_t>(n, -7), {n});
    auto g_pair = to_device_i32(*gpu, std::vector<int32_t>(n, -7), {n});
    auto g_row = to_device_i32(*gpu, std::vector<int32_t>(n, -7), {t_count, k});
    gpu->moe_permute(*g_ex, e_count, *g_token, *g_pair, *g_row, g_counts);
    EXPECT_EQ(g_counts, counts);
    EXPECT_EQ(download_i32(*gpu, *g_token), token);
    EXPECT_EQ(download_i32(*gpu, *g_pair), pair);
    EXPECT_EQ(download_i32(*gpu, *g_row), row_of);
  }
  auto bad = to_device_i32(*gpu, {0, 9}, {1, 2});
  auto a = to_device_i32(*gpu, {0, 0}, {2}), b = to_device_i32(*gpu, {0, 0}, {2}),
       c = to_device_i32(*gpu, {0, 0}, {1, 2});
  std::vector<int64_t> counts;
  EXPECT_THROW(gpu->moe_permute(*bad, e_count, *a, *b, *c, counts), Error);
}

TEST_P(CudaMoeOps, GatherRows) {
  const int64_t t_count = 211, h = 333, n = 517;
  auto src = rounded(random_vec(t_count * h, 60), dt());
  std::mt19937 rng(61);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(t_count - 1));
  std::vector<int32_t> index(n);
  for (auto& i : index) i = pick(rng);
  auto scale = random_vec(n, 62);
  auto g_src = to_device(*gpu, src, dt(), {t_count, h});
  auto g_idx = to_device_i32(*gpu, index, {n});
  auto g_sc = to_device(*gpu, scale, DType::kF32, {n});
  for (bool scaled : {false, true}) {
    for (DType out_dt : {dt(), DType::kF32}) {
      const std::string op = std::string("gather_rows") + (scaled ? " scaled" : "") + " -> " +
                             std::string(dtype_name(out_dt));
      std::vector<float> want(n * h);
      cpu.gather_rows(host_tensor(src, {t_count, h}), host_i32(index, {n}),
                      scaled ? host_tensor(scale, {n}) : Tensor{}, host_tensor(want, {n, h}));
      auto g_dst = poisoned(*gpu, out_dt, {n, h});
      gpu->gather_rows(*g_src, *g_idx, scaled ? g_sc->tensor() : Tensor{}, *g_dst);
      check(op, from_device(*gpu, *g_dst), rounded(want, out_dt), tol_for(out_dt));
    }
  }
  // A bad index is reported by the next synchronize().
  auto bad = to_device_i32(*gpu, {0, static_cast<int32_t>(t_count)}, {2});
  auto g_dst = poisoned(*gpu, dt(), {2, h});
  gpu->gather_rows(*g_src, *bad, {}, *g_dst);
  EXPECT_THROW(gpu->synchronize(), Error);
  EXPECT_NO_THROW(gpu->synchronize());  // the flag is cleared
}

TEST_P(CudaMoeOps, CombineAndWeightGrad) {
  const int64_t t_count = 203, h = 515;
  const int k = 6, e_count = 16;
  const auto row_of = row_of_for(cpu, random_experts(t_count, k, e_count, 70), t_count, k, e_count);
  auto rows = rounded(random_vec(t_count * k * h, 71), dt());
  auto weights = random_vec(t_count * k, 72);
  auto y0 = rounded(random_vec(t_count * h, 73), dt());
  auto dy = rounded(random_vec(t_count * h, 74), dt());
  std::vector<int32_t> ro = row_of;
  auto g_rows = to_device(*gpu, rows, dt(), {t_count * k, h});
  auto g_ro = to_device_i32(*gpu, row_of, {t_count, k});
  auto g_w = to_device(*gpu, weights, DType::kF32, {t_count, k});
  for (bool weighted : {false, true}) {
    for (bool accumulate : {false, true}) {
      const std::string op = std::string("moe_combine") + (weighted ? " weighted" : "") +
                             (accumulate ? " accumulate" : "");
      std::vector<float> want = y0;
      cpu.moe_combine(host_tensor(rows, {t_count * k, h}), host_i32(ro, {t_count, k}),
                      weighted ? host_tensor(weights, {t_count, k}) : Tensor{},
                      host_tensor(want, {t_count, h}), accumulate);
      auto g_y = to_device(*gpu, y0, dt(), {t_count, h});
      if (!accumulate) gpu->fill(*g_y, std::nanf(""));
      gpu->moe_combine(*g_rows, *g_ro, weighted ? g_w->tensor() : Tensor{}, *g_y, accumulate);
      const auto got = from_device(*gpu, *g_y);
      check(op, got, rounded(want, dt()), tol_for(dt()));
      if (!accumulate) {
        gpu->moe_combine(*g_rows, *g_ro, weighted ? g_w->tensor() : Tensor{}, *g_y, false);
        EXPECT_TRUE(same_bits(from_device(*gpu, *g_y), got)) << op << ": not deterministic";
      }
    }
  }
  std::vector<float> want(t_count * k);
  cpu.moe_weight_grad(host_tensor(dy, {t_count, h}), host_tensor(rows, {t_count * k, h}),
                      host_i32(ro, {t_count, k}), host_tensor(want, {t_count, k}));
  auto g_dy = to_device(*gpu, dy, dt(), {t_count, h});
  auto g_dw = poisoned(*gpu, DType::kF32, {t_count, k});
  gpu->moe_weight_grad(*g_dy, *g_rows, *g_ro, *g_dw);
  const auto got = from_device(*gpu, *g_dw);
  check("moe_weight_grad (f32)", got, want, 1e-5);
  gpu->moe_weight_grad(*g_dy, *g_rows, *g_ro, *g_dw);
  EXPECT_TRUE(same_bits(from_device(*gpu, *g_dw), got)) << "moe_weight_grad: not deterministic";
}

// Expert e's [n, k] block of a [E, n, k] tensor.
Tensor expert_block(const Tensor& w, int64_t e, int64_t n, int64_t k) {
  return Tensor(static_cast<char*>(w.data) + e * n * k * static_cast<int64_t>(dtype_size(w.dtype)),
                w.dtype, Shape{n, k}, w.device);
}

// gemm_grouped as the expert FFNs use it (uneven rows per expert, one expert without rows):
// every group equals the CPU's gemm, for the three products of the forward and backward
// (x·Wᵀ, dy·W with beta = 1, dyᵀ·x into f32 master gradients), and reruns give the same bits.
TEST_P(CudaMoeOps, GroupedGemm) {
  const std::vector<int64_t> counts{37, 0, 129, 1, 64, 250};
  const int64_t experts = static_cast<int64_t>(counts.size()), n = 96, k = 160;
  int64_t rows = 0;
  for (int64_t c : counts) rows += c;
  auto x = rounded(random_vec(rows * k, 70), dt());
  auto w = rounded(random_vec(experts * n * k, 71), dt());
  auto dy = rounded(random_vec(rows * n, 72), dt());
  auto y0 = rounded(random_vec(rows * k, 73), dt());
  auto g0 = random_vec(experts * n * k, 74);
  auto g_x = to_device(*gpu, x, dt(), {rows, k});
  auto g_w = to_device(*gpu, w, dt(), {experts * n, k});
  auto g_dy = to_device(*gpu, dy, dt(), {rows, n});
  struct Case {
    std::string op;
    bool ta, tb;
    float beta;
    DType out;
  };
  for (const Case& cs : {Case{"grouped x·Wᵀ", false, true, 0.0f, dt()},
                         Case{"grouped dx += dy·W", false, false, 1.0f, dt()},
                         Case{"grouped dW += dyᵀ·x (16→f32)", true, false, 1.0f, DType::kF32}}) {
    const bool weight_out = cs.ta;  // c is the expert's [n, k] block
    const bool data_in = !cs.ta && cs.tb;
    const int64_t c_cols = data_in ? n : k;
    const std::vector<float>& c_init = weight_out ? g0 : (cs.beta != 0 ? y0 : g0);
    const int64_t c_rows = weight_out ? experts * n : rows;
    std::vector<float> init(c_init.begin(), c_init.begin() + c_rows * c_cols);
    if (cs.out != DType::kF32) init = rounded(init, cs.out);
    std::vector<float> want = init;
    auto run = [&] {
      auto g_c = to_device(*gpu, init, cs.out, {c_rows, c_cols});
      std::vector<Backend::GemmGroup> groups;
      int64_t first = 0;
      for (int64_t e = 0; e < experts; ++e) {
        const int64_t r = counts[static_cast<size_t>(e)];
        if (cs.ta)
          groups.push_back({g_dy->tensor().slice_rows(first, first + r),
                            g_x->tensor().slice_rows(first, first + r),
                            expert_block(g_c->tensor(), e, n, k)});
        else
          groups.push_back({data_in ? g_x->tensor().slice_rows(first, first + r)
                                    : g_dy->tensor().slice_rows(first, first + r),
                            expert_block(g_w->tensor(), e, n, k),
                            g_c->tensor().slice_rows(first, first + r)});
        first += r;
      }
      gpu->gemm_grouped(groups, cs.ta, cs.tb, 1.0f, cs.beta);
      return from_device(*gpu, *g_c);
    };
    int64_t first = 0;
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t r = counts[static_cast<size_t>(e)];
      const Tensor hx = host_tensor(x, {rows, k}).slice_rows(first, first + r);
      const Tensor hdy = host_tensor(dy, {rows, n}).slice_rows(first, first + r);
      const Tensor hw = expert_block(host_tensor(w, {experts * n, k}), e, n, k);
      if (cs.ta)
        cpu.gemm(hdy, true, hx, false, expert_block(host_tensor(want, {c_rows, c_cols}), e, n, k),
                 1.0f, cs.beta);
      else
        cpu.gemm(data_in ? hx : hdy, false, hw, cs.tb,
                 host_tensor(want, {c_rows, c_cols}).slice_rows(first, first + r), 1.0f, cs.beta);
      first += r;
    }
    const std::vector<float> got = run();
    check(cs.op, got, cs.out == DType::kF32 ? want : rounded(want, cs.out),
          cs.out == DType::kF32 ? 1e-5 : 1e-2);
    EXPECT_TRUE(same_bits(got, run())) << cs.op << ": a rerun differs";
  }
}

INSTANTIATE_TEST_SUITE_P(Storage, CudaMoeOps, ::testing::Values(DType::kBF16, DType::kF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace fitlm::cuda_test
