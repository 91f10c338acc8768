// The CPU backend's mixture-of-experts ops (backend.h, "mixture of experts") against naive
// references written here: f64 softmax and a selection-loop top-k for moe_route, central finite
// differences of the routing loss for moe_route_backward, a sort of (expert, t, j) triples for
// moe_permute, and f64 loops for the row ops. Random normal inputs (never zeros), f32 and bf16
// storage where the op takes float tensors of any dtype.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "fitlm/backend/backend.h"
#include "fitlm/backend/profiling_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

std::vector<float> random_vec(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// What a tensor of `t` holds for these values.
std::vector<float> rounded(std::vector<float> v, DType t) {
  for (float& x : v) x = round_to_storage(x, t);
  return v;
}

// ‖a − b‖ / ‖b‖ in f64 (NaN fails every `<`).
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  return rel_err(a, std::vector<double>(b.begin(), b.end()));
}

double tol_for(DType t) {
  return t == DType::kF32 ? 1e-6 : 1e-2;
}

class MoeOps : public ::testing::Test {
 protected:
  // A host tensor of `dt` holding `v` (rounded to dt).
  HostBuffer make(DType dt, Shape s, const std::vector<float>& v) {
    HostBuffer b(dt, s);
    EXPECT_EQ(static_cast<int64_t>(v.size()), s.numel());
    be->upload(b.tensor(), v.data(), DType::kF32);
    return b;
  }
  HostBuffer make_i32(Shape s, const std::vector<int32_t>& v) {
    HostBuffer b(DType::kI32, s);
    EXPECT_EQ(static_cast<int64_t>(v.size()), s.numel());
    std::copy(v.begin(), v.end(), b.tensor().as<int32_t>());
    return b;
  }
  // Filled with NaN, so an element the op never writes fails the check.
  HostBuffer poisoned(DType dt, Shape s) {
    HostBuffer b(dt, s);
    be->fill(b.tensor(), std::nanf(""));
    return b;
  }
  std::vector<float> read(const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    be->download(t, v.data());
    return v;
  }
  static std::vector<int32_t> read_i32(const Tensor& t) {
    const int32_t* p = t.as<const int32_t>();
    return std::vector<int32_t>(p, p + t.numel());
  }

  std::unique_ptr<Backend> be = make_backend("cpu");
};

// ---- naive references -------------------------------------------------------------------------

std::vector<double> softmax64(const float* x, int64_t e_count) {
  double m = x[0];
  for (int64_t e = 1; e < e_count; ++e) m = std::max(m, static_cast<double>(x[e]));
  std::vector<double> p(static_cast<size_t>(e_count));
  double s = 0.0;
  for (int64_t e = 0; e < e_count; ++e) s += p[static_cast<size_t>(e)] = std::exp(x[e] - m);
  for (double& v : p) v /= s;
  return p;
}

// k rounds of "the largest not yet taken, the first one on a tie".
std::vector<int32_t> topk_ref(const std::vector<double>& p, int k) {
  std::vector<bool> taken(p.size(), false);
  std::vector<int32_t> out;
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (size_t e = 0; e < p.size(); ++e)
      if (!taken[e] && (best < 0 || p[e] > p[static_cast<size_t>(best)]))
        best = static_cast<int>(e);
    taken[static_cast<size_t>(best)] = true;
    out.push_back(best);
  }
  return out;
}

// The routing loss of one row with the choice held fixed: L = Σ_j c_j·w_j + Σ_e g_e·p_e.
double route_loss(const std::vector<double>& x, const int32_t* ex, int k, bool renormalize,
                  const float* c, const float* g) {
  const double m = *std::max_element(x.begin(), x.end());
  std::vector<double> p(x.size());
  double s = 0.0;
  for (size_t e = 0; e < x.size(); ++e) s += p[e] = std::exp(x[e] - m);
  for (double& v : p) v /= s;
  double chosen = 0.0;
  for (int j = 0; j < k; ++j) chosen += p[static_cast<size_t>(ex[j])];
  double loss = 0.0;
  for (int j = 0; j < k; ++j)
    loss += c[j] * p[static_cast<size_t>(ex[j])] / (renormalize ? chosen : 1.0);
  if (g)
    for (size_t e = 0; e < x.size(); ++e) loss += g[e] * p[e];
  return loss;
}

// ---- moe_route --------------------------------------------------------------------------------

using RouteParam = std::tuple<std::tuple<int, int>, bool, DType>;  // (E, k), renorm, dtype

class MoeRoute : public MoeOps, public ::testing::WithParamInterface<RouteParam> {};

TEST_P(MoeRoute, MatchesReference) {
  const auto [ek, renorm, dt] = GetParam();
  const auto [e_count, k] = ek;
  const int64_t t_count = 37;
  const auto logits = rounded(random_vec(t_count * e_count, 11 + e_count + k, 2.0f), dt);
  auto lg = make(dt, {t_count, e_count}, logits);
  auto probs = poisoned(DType::kF32, {t_count, e_count});
  auto weights = poisoned(DType::kF32, {t_count, k});
  auto experts = make_i32({t_count, k}, std::vector<int32_t>(t_count * k, -7));
  be->moe_route(lg, k, renorm, probs, weights, experts);

  std::vector<double> want_p, want_w;
  std::vector<int32_t> want_e;
  for (int64_t t = 0; t < t_count; ++t) {
    const auto p = softmax64(logits.data() + t * e_count, e_count);
    want_p.insert(want_p.end(), p.begin(), p.end());
    const auto top = topk_ref(p, k);
    double s = 0.0;
    for (int32_t e : top) s += p[static_cast<size_t>(e)];
    for (int32_t e : top) {
      want_e.push_back(e);
      want_w.push_back(p[static_cast<size_t>(e)] / (renorm ? s : 1.0));
    }
  }
  EXPECT_EQ(read_i32(experts), want_e);
  EXPECT_LT(rel_err(read(probs), want_p), 1e-6);
  EXPECT_LT(rel_err(read(weights), want_w), 1e-6);
  // Each row of probs sums to 1; weights descend; renormalised weights sum to 1.
  const auto w = read(weights);
  for (int64_t t = 0; t < t_count; ++t) {
    double s = 0.0;
    for (int j = 0; j < k; ++j) {
      s += w[static_cast<size_t>(t * k + j)];
      if (j > 0) {
        EXPECT_GE(w[static_cast<size_t>(t * k + j - 1)], w[static_cast<size_t>(t * k + j)]);
      }
    }
    if (renorm) {
      EXPECT_NEAR(s, 1.0, 1e-6);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoeRoute,
    ::testing::Combine(::testing::Values(std::make_tuple(4, 1), std::make_tuple(4, 2),
                                         std::make_tuple(8, 2), std::make_tuple(8, 8),
                                         std::make_tuple(16, 8), std::make_tuple(64, 1),
                                         std::make_tuple(64, 2), std::make_tuple(64, 8)),
                       ::testing::Bool(), ::testing::Values(DType::kF32, DType::kBF16)),
    [](const auto& info) {
      const auto& ek = std::get<0>(info.param);
      return "E" + std::to_string(std::get<0>(ek)) + "k" + std::to_string(std::get<1>(ek)) +
             (std::get<1>(info.param) ? "_renorm_" : "_raw_") +
             std::string(dtype_name(std::get<2>(info.param)));
    });

TEST_F(MoeOps, RouteTiesGoToTheLowerExpert) {
  // Row 0: three equal maxima; row 1: all equal; row 2: equal runner-ups behind one maximum.
  const int64_t e_count = 6;
  const std::vector<float> logits = {0.5f,  2.0f,  -1.0f, 2.0f,  2.0f,  0.25f,  //
                                     1.5f,  1.5f,  1.5f,  1.5f,  1.5f,  1.5f,   //
                                     -0.5f, 0.75f, 3.0f,  0.75f, -2.0f, 0.75f};
  const int k = 3;
  auto lg = make(DType::kF32, {3, e_count}, logits);
  auto probs = poisoned(DType::kF32, {3, e_count});
  auto weights = poisoned(DType::kF32, {3, k});
  auto experts = make_i32({3, k}, std::vector<int32_t>(3 * k, -7));
  be->moe_route(lg, k, true, probs, weights, experts);
  EXPECT_EQ(read_i32(experts), (std::vector<int32_t>{1, 3, 4, 0, 1, 2, 2, 1, 3}));
  const auto w = read(weights);
  for (int j = 0; j < k; ++j) {
    EXPECT_FLOAT_EQ(w[static_cast<size_t>(j)], 1.0f / 3.0f);
    EXPECT_FLOAT_EQ(w[static_cast<size_t>(k + j)], 1.0f / 3.0f);
  }
  EXPECT_EQ(w[7], w[8]);
  // Not renormalised: the probabilities themselves (1/6 each in the all-equal row).
  be->moe_route(lg, k, false, probs, weights, experts);
  EXPECT_EQ(read_i32(experts), (std::vector<int32_t>{1, 3, 4, 0, 1, 2, 2, 1, 3}));
  for (int j = 0; j < k; ++j) EXPECT_FLOAT_EQ(read(weights)[static_cast<size_t>(k + j)], 1.0f / 6);
}

TEST_F(MoeOps, RouteRejectsBadArguments) {
  const int64_t t_count = 5, e_count = 8;
  auto lg = make(DType::kF32, {t_count, e_count}, random_vec(t_count * e_count, 3));
  auto probs = poisoned(DType::kF32, {t_count, e_count});
  auto weights = poisoned(DType::kF32, {t_count, 2});
  auto experts = make_i32({t_count, 2}, std::vector<int32_t>(t_count * 2, 0));
  EXPECT_THROW(be->moe_route(lg, 3, true, probs, weights, experts), Error);  // k vs [T, 2]
  EXPECT_THROW(be->moe_route(lg, 0, true, probs, weights, experts), Error);
  EXPECT_THROW(be->moe_route(lg, 9, true, probs, weights, experts), Error);  // k > E
  auto probs16 = poisoned(DType::kBF16, {t_count, e_count});
  EXPECT_THROW(be->moe_route(lg, 2, true, probs16, weights, experts), Error);  // probs not f32
  EXPECT_THROW(be->moe_route(lg, 2, true, probs, weights, weights), Error);    // experts not i32
  EXPECT_NO_THROW(be->moe_route(lg, 2, true, probs, weights, experts));
}

// ---- moe_route_backward -----------------------------------------------------------------------

using BackwardParam = std::tuple<std::tuple<int, int>, bool, bool, DType>;  // extra, dlogits dt

class MoeRouteBackward : public MoeOps, public ::testing::WithParamInterface<BackwardParam> {};

TEST_P(MoeRouteBackward, MatchesFiniteDifferences) {
  const auto [ek, renorm, with_extra, dt] = GetParam();
  const auto [e_count, k] = ek;
  const int64_t t_count = 23;
  const auto logits = random_vec(t_count * e_count, 100 + e_count + k, 1.5f);
  const auto c = random_vec(t_count * k, 200 + k);              // ∂L/∂weights
  const auto g = random_vec(t_count * e_count, 300 + e_count);  // extra ∂L/∂probs
  auto lg = make(DType::kF32, {t_count, e_count}, logits);
  auto probs = poisoned(DType::kF32, {t_count, e_count});
  auto weights = poisoned(DType::kF32, {t_count, k});
  auto experts = make_i32({t_count, k}, std::vector<int32_t>(t_count * k, 0));
  be->moe_route(lg, k, renorm, probs, weights, experts);
  auto dw = make(DType::kF32, {t_count, k}, c);
  auto extra = make(DType::kF32, {t_count, e_count}, g);
  auto dlogits = poisoned(dt, {t_count, e_count});
  be->moe_route_backward(probs, weights, experts, dw, renorm,
                         with_extra ? extra.tensor() : Tensor{}, dlogits);

  const auto ex = read_i32(experts);
  std::vector<double> want;
  const double h = 1e-5;
  for (int64_t t = 0; t < t_count; ++t) {
    std::vector<double> x(logits.begin() + t * e_count, logits.begin() + (t + 1) * e_count);
    const int32_t* e_row = ex.data() + t * k;
    const float* g_row = with_extra ? g.data() + t * e_count : nullptr;
    for (int64_t e = 0; e < e_count; ++e) {
      const double x0 = x[static_cast<size_t>(e)];
      x[static_cast<size_t>(e)] = x0 + h;
      const double up = route_loss(x, e_row, k, renorm, c.data() + t * k, g_row);
      x[static_cast<size_t>(e)] = x0 - h;
      const double down = route_loss(x, e_row, k, renorm, c.data() + t * k, g_row);
      x[static_cast<size_t>(e)] = x0;
      want.push_back((up - down) / (2 * h));
    }
  }
  double want_norm = 0.0;
  for (double v : want) want_norm = std::max(want_norm, std::abs(v));
  if (want_norm < 1e-9) {
    // k = 1 renormalised: the one weight is 1 whatever the logits, so the gradient is zero.
    for (float v : read(dlogits)) EXPECT_LT(std::abs(v), 1e-6);
  } else {
    EXPECT_LT(rel_err(read(dlogits), want), dt == DType::kF32 ? 1e-5 : 1e-2);
  }
  // Softmax gradients sum to zero over each row.
  const auto got = read(dlogits);
  for (int64_t t = 0; t < t_count; ++t) {
    double s = 0.0, a = 0.0;
    for (int64_t e = 0; e < e_count; ++e) {
      s += got[static_cast<size_t>(t * e_count + e)];
      a += std::abs(got[static_cast<size_t>(t * e_count + e)]);
    }
    EXPECT_LT(std::abs(s), (dt == DType::kF32 ? 1e-5 : 2e-2) * a + 1e-12);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MoeRouteBackward,
    ::testing::Combine(::testing::Values(std::make_tuple(4, 1), std::make_tuple(4, 2),
                                         std::make_tuple(16, 8), std::make_tuple(64, 2),
                                         std::make_tuple(64, 8)),
                       ::testing::Bool(), ::testing::Bool(),
                       ::testing::Values(DType::kF32, DType::kBF16)),
    [](const auto& info) {
      const auto& ek = std::get<0>(info.param);
      return "E" + std::to_string(std::get<0>(ek)) + "k" + std::to_string(std::get<1>(ek)) +
             (std::get<1>(info.param) ? "_renorm" : "_raw") +
             (std::get<2>(info.param) ? "_extra_" : "_") +
             std::string(dtype_name(std::get<3>(info.param)));
    });

TEST_F(MoeOps, RouteBackwardRejectsBadExperts) {
  const int64_t t_count = 3, e_count = 4, k = 2;
  auto probs = make(DType::kF32, {t_count, e_count}, std::vector<float>(t_count * e_count, 0.25f));
  auto weights = make(DType::kF32, {t_count, k}, std::vector<float>(t_count * k, 0.5f));
  auto dw = make(DType::kF32, {t_count, k}, random_vec(t_count * k, 5));
  auto dlogits = poisoned(DType::kF32, {t_count, e_count});
  auto bad = make_i32({t_count, k}, {0, 1, 2, 4, 1, 3});
  EXPECT_THROW(be->moe_route_backward(probs, weights, bad, dw, true, {}, dlogits), Error);
  auto neg = make_i32({t_count, k}, {0, 1, -1, 2, 1, 3});
  EXPECT_THROW(be->moe_route_backward(probs, weights, neg, dw, false, {}, dlogits), Error);
  auto good = make_i32({t_count, k}, {0, 1, 2, 3, 1, 3});
  auto short_extra = make(DType::kF32, {t_count, 3}, random_vec(t_count * 3, 6));
  EXPECT_THROW(be->moe_route_backward(probs, weights, good, dw, true, short_extra, dlogits), Error);
  EXPECT_NO_THROW(be->moe_route_backward(probs, weights, good, dw, true, {}, dlogits));
}

// ---- moe_permute ------------------------------------------------------------------------------

struct PermuteRef {
  std::vector<int32_t> token_of_row, pair_of_row, row_of;
  std::vector<int64_t> counts;
};

// Sort the (expert, t, j) triples; row r is the r-th triple.
PermuteRef permute_ref(const std::vector<int32_t>& experts, int64_t t_count, int k, int e_count) {
  std::vector<std::tuple<int32_t, int64_t, int>> triples;
  for (int64_t t = 0; t < t_count; ++t)
    for (int j = 0; j < k; ++j) triples.emplace_back(experts[static_cast<size_t>(t * k + j)], t, j);
  std::sort(triples.begin(), triples.end());
  PermuteRef r;
  r.row_of.assign(triples.size(), -1);
  r.counts.assign(static_cast<size_t>(e_count), 0);
  for (size_t row = 0; row < triples.size(); ++row) {
    const auto [e, t, j] = triples[row];
    r.token_of_row.push_back(static_cast<int32_t>(t));
    r.pair_of_row.push_back(static_cast<int32_t>(t * k + j));
    r.row_of[static_cast<size_t>(t * k + j)] = static_cast<int32_t>(row);
    ++r.counts[static_cast<size_t>(e)];
  }
  return r;
}

class MoePermute : public MoeOps {
 protected:
  void check(const std::vector<int32_t>& ex, int64_t t_count, int k, int e_count) {
    auto experts = make_i32({t_count, k}, ex);
    const int64_t n = t_count * k;
    auto token_of_row = make_i32({n}, std::vector<int32_t>(n, -7));
    auto pair_of_row = make_i32({n}, std::vector<int32_t>(n, -7));
    auto row_of = make_i32({t_count, k}, std::vector<int32_t>(n, -7));
    std::vector<int64_t> counts(3, 99);  // resized by the op
    be->moe_permute(experts, e_count, token_of_row, pair_of_row, row_of, counts);
    const auto want = permute_ref(ex, t_count, k, e_count);
    EXPECT_EQ(counts, want.counts);
    EXPECT_EQ(read_i32(token_of_row), want.token_of_row);
    EXPECT_EQ(read_i32(pair_of_row), want.pair_of_row);
    EXPECT_EQ(read_i32(row_of), want.row_of);
  }
};

TEST_F(MoePermute, RandomWithAnIdleExpert) {
  const int64_t t_count = 41;
  const int k = 3, e_count = 7;
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> pick(0, e_count - 2);
  std::vector<int32_t> ex;
  for (int64_t t = 0; t < t_count; ++t) {
    // k distinct experts, none of them expert 4 (it gets no token).
    std::vector<int32_t> row;
    while (static_cast<int>(row.size()) < k) {
      int e = pick(rng);
      if (e >= 4) ++e;
      if (std::find(row.begin(), row.end(), e) == row.end()) row.push_back(e);
    }
    ex.insert(ex.end(), row.begin(), row.end());
  }
  check(ex, t_count, k, e_count);
}

TEST_F(MoePermute, AllTokensToOneExpert) {
  check(std::vector<int32_t>(19 * 2, 2), 19, 2, 4);
  check(std::vector<int32_t>(5, 0), 5, 1, 1);
}

TEST_F(MoePermute, RepeatedExpertInARowAndLastExpert) {
  check({7, 7, 0, 7, 3, 3}, 3, 2, 8);
}

TEST_F(MoePermute, RejectsBadExperts) {
  for (const std::vector<int32_t>& ex : {std::vector<int32_t>{0, 1, 4, 2}, {0, -1, 2, 3}}) {
    auto experts = make_i32({2, 2}, ex);
    auto token_of_row = make_i32({4}, std::vector<int32_t>(4, 0));
    auto pair_of_row = make_i32({4}, std::vector<int32_t>(4, 0));
    auto row_of = make_i32({2, 2}, std::vector<int32_t>(4, 0));
    std::vector<int64_t> counts;
    EXPECT_THROW(be->moe_permute(experts, 4, token_of_row, pair_of_row, row_of, counts), Error);
  }
  auto experts = make_i32({2, 2}, {0, 1, 2, 3});
  auto small = make_i32({3}, std::vector<int32_t>(3, 0));
  auto ok = make_i32({4}, std::vector<int32_t>(4, 0));
  auto row_of = make_i32({2, 2}, std::vector<int32_t>(4, 0));
  std::vector<int64_t> counts;
  EXPECT_THROW(be->moe_permute(experts, 4, small, ok, row_of, counts), Error);
  EXPECT_THROW(be->moe_permute(experts, 0, ok, ok, row_of, counts), Error);
}

// ---- gather_rows, moe_combine, moe_weight_grad -------------------------------------------------

class MoeRowOps : public MoeOps, public ::testing::WithParamInterface<DType> {
 protected:
  DType dt() const { return GetParam(); }
  // row_of of a real routing: moe_permute of random distinct experts.
  std::vector<int32_t> routed_row_of(int64_t t_count, int k, int e_count, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> ex;
    for (int64_t t = 0; t < t_count; ++t) {
      std::vector<int32_t> all(static_cast<size_t>(e_count));
      for (int e = 0; e < e_count; ++e) all[static_cast<size_t>(e)] = e;
      std::shuffle(all.begin(), all.end(), rng);
      ex.insert(ex.end(), all.begin(), all.begin() + k);
    }
    return permute_ref(ex, t_count, k, e_count).row_of;
  }
};

TEST_P(MoeRowOps, GatherRows) {
  const int64_t t_count = 29, h = 67, n = 45;
  const auto src = rounded(random_vec(t_count * h, 41), dt());
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(t_count - 1));
  std::vector<int32_t> index(static_cast<size_t>(n));
  for (auto& i : index) i = pick(rng);
  index[0] = 0, index[1] = static_cast<int32_t>(t_count - 1), index[2] = index[3];  // ends, repeats
  const auto scale = random_vec(n, 43);
  auto s = make(dt(), {t_count, h}, src);
  auto idx = make_i32({n}, index);
  auto sc = make(DType::kF32, {n}, scale);
  for (bool scaled : {false, true}) {
    auto dst = poisoned(dt(), {n, h});
    be->gather_rows(s, idx, scaled ? sc.tensor() : Tensor{}, dst);
    std::vector<double> want;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < h; ++c)
        want.push_back(
            round_to_storage(src[static_cast<size_t>(index[static_cast<size_t>(i)] * h + c)] *
                                 (scaled ? scale[static_cast<size_t>(i)] : 1.0f),
                             dt()));
    EXPECT_LT(rel_err(read(dst), want), tol_for(dt())) << "scaled " << scaled;
  }
  // Into an f32 destination from 16-bit rows: exact.
  auto dst32 = poisoned(DType::kF32, {n, h});
  be->gather_rows(s, idx, {}, dst32);
  std::vector<float> want32;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < h; ++c)
      want32.push_back(src[static_cast<size_t>(index[static_cast<size_t>(i)] * h + c)]);
  EXPECT_EQ(read(dst32), want32);
}

TEST_P(MoeRowOps, GatherRowsRejectsBadIndex) {
  auto s = make(dt(), {4, 8}, random_vec(32, 1));
  auto dst = poisoned(dt(), {2, 8});
  auto bad = make_i32({2}, {1, 4});
  EXPECT_THROW(be->gather_rows(s, bad, {}, dst), Error);
  auto neg = make_i32({2}, {-1, 0});
  EXPECT_THROW(be->gather_rows(s, neg, {}, dst), Error);
  auto ok = make_i32({2}, {3, 0});
  auto dst_wide = poisoned(dt(), {2, 9});
  EXPECT_THROW(be->gather_rows(s, ok, {}, dst_wide), Error);
  auto sc_short = make(DType::kF32, {1}, {2.0f});
  EXPECT_THROW(be->gather_rows(s, ok, sc_short, dst), Error);
}

TEST_P(MoeRowOps, Combine) {
  const int64_t t_count = 31, h = 53;
  const int k = 3, e_count = 6;
  const auto row_of = routed_row_of(t_count, k, e_count, 51);
  const auto rows = rounded(random_vec(t_count * k * h, 52), dt());
  const auto weights = random_vec(t_count * k, 53);
  const auto y0 = rounded(random_vec(t_count * h, 54), dt());
  auto r = make(dt(), {t_count * k, h}, rows);
  auto ro = make_i32({t_count, k}, row_of);
  auto w = make(DType::kF32, {t_count, k}, weights);
  for (bool weighted : {false, true}) {
    for (bool accumulate : {false, true}) {
      auto y = make(dt(), {t_count, h}, y0);
      if (!accumulate) be->fill(y, std::nanf(""));  // overwritten, never read
      be->moe_combine(r, ro, weighted ? w.tensor() : Tensor{}, y, accumulate);
      std::vector<double> want;
      for (int64_t t = 0; t < t_count; ++t)
        for (int64_t c = 0; c < h; ++c) {
          double acc = 0.0;
          for (int j = 0; j < k; ++j) {
            const size_t p = static_cast<size_t>(t * k + j);
            acc += (weighted ? weights[p] : 1.0) * rows[static_cast<size_t>(row_of[p] * h + c)];
          }
          want.push_back(accumulate ? acc + y0[static_cast<size_t>(t * h + c)] : acc);
        }
      EXPECT_LT(rel_err(read(y), want), tol_for(dt()))
          << "weighted " << weighted << " accumulate " << accumulate;
    }
  }
  auto bad = make_i32({t_count, k}, std::vector<int32_t>(t_count * k, t_count * k));
  auto y = make(dt(), {t_count, h}, y0);
  EXPECT_THROW(be->moe_combine(r, bad, w, y, false), Error);
}

TEST_P(MoeRowOps, WeightGrad) {
  const int64_t t_count = 27, h = 71;
  const int k = 2, e_count = 5;
  const auto row_of = routed_row_of(t_count, k, e_count, 61);
  const auto rows = rounded(random_vec(t_count * k * h, 62), dt());
  const auto dy = rounded(random_vec(t_count * h, 63), dt());
  auto r = make(dt(), {t_count * k, h}, rows);
  auto d = make(dt(), {t_count, h}, dy);
  auto ro = make_i32({t_count, k}, row_of);
  auto dw = poisoned(DType::kF32, {t_count, k});
  be->moe_weight_grad(d, r, ro, dw);
  std::vector<double> want;
  for (int64_t t = 0; t < t_count; ++t)
    for (int j = 0; j < k; ++j) {
      double s = 0.0;
      for (int64_t c = 0; c < h; ++c)
        s += static_cast<double>(dy[static_cast<size_t>(t * h + c)]) *
             rows[static_cast<size_t>(row_of[static_cast<size_t>(t * k + j)] * h + c)];
      want.push_back(s);
    }
  // f32 output of exact products summed in f64: f32 precision whatever the input dtype.
  EXPECT_LT(rel_err(read(dw), want), 1e-6);
  auto bad = make_i32({t_count, k}, std::vector<int32_t>(t_count * k, -1));
  EXPECT_THROW(be->moe_weight_grad(d, r, bad, dw), Error);
}

// The weight gradient is what moe_combine's weights see: d/dw_tj of Σ dy·y.
TEST_P(MoeRowOps, WeightGradIsCombineGradient) {
  const int64_t t_count = 9, h = 16;
  const int k = 2, e_count = 3;
  const auto row_of = routed_row_of(t_count, k, e_count, 71);
  const auto rows = random_vec(t_count * k * h, 72);
  const auto dy = random_vec(t_count * h, 73);
  auto r = make(DType::kF32, {t_count * k, h}, rows);
  auto d = make(DType::kF32, {t_count, h}, dy);
  auto ro = make_i32({t_count, k}, row_of);
  auto dw = poisoned(DType::kF32, {t_count, k});
  be->moe_weight_grad(d, r, ro, dw);
  // Σ dy·combine(e_p) with one-hot weights e_p picks out dweights[p].
  const auto got = read(dw);
  for (int64_t p = 0; p < t_count * k; ++p) {
    std::vector<float> onehot(static_cast<size_t>(t_count * k), 0.0f);
    onehot[static_cast<size_t>(p)] = 1.0f;
    auto w = make(DType::kF32, {t_count, k}, onehot);
    auto y = poisoned(DType::kF32, {t_count, h});
    be->moe_combine(r, ro, w, y, false);
    const auto yv = read(y);
    double s = 0.0;
    for (size_t i = 0; i < yv.size(); ++i) s += static_cast<double>(yv[i]) * dy[i];
    EXPECT_NEAR(got[static_cast<size_t>(p)], s, 1e-5 * (1.0 + std::abs(s)));
  }
}

INSTANTIATE_TEST_SUITE_P(Storage, MoeRowOps, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// ---- the profiling wrapper forwards them --------------------------------------------------------

TEST_F(MoeOps, ProfilingBackendForwardsMoeOps) {
  ProfilingBackend prof(*be);
  const int64_t t_count = 6, e_count = 4, h = 8;
  const int k = 2;
  auto lg = make(DType::kF32, {t_count, e_count}, random_vec(t_count * e_count, 81));
  auto probs = poisoned(DType::kF32, {t_count, e_count});
  auto weights = poisoned(DType::kF32, {t_count, k});
  auto experts = make_i32({t_count, k}, std::vector<int32_t>(t_count * k, 0));
  prof.moe_route(lg, k, true, probs, weights, experts);
  auto token_of_row = make_i32({t_count * k}, std::vector<int32_t>(t_count * k, 0));
  auto pair_of_row = make_i32({t_count * k}, std::vector<int32_t>(t_count * k, 0));
  auto row_of = make_i32({t_count, k}, std::vector<int32_t>(t_count * k, 0));
  std::vector<int64_t> counts;
  prof.moe_permute(experts, static_cast<int>(e_count), token_of_row, pair_of_row, row_of, counts);
  EXPECT_EQ(counts.size(), static_cast<size_t>(e_count));
  auto x = make(DType::kF32, {t_count, h}, random_vec(t_count * h, 82));
  auto rows = poisoned(DType::kF32, {t_count * k, h});
  prof.gather_rows(x, token_of_row, {}, rows);
  auto y = poisoned(DType::kF32, {t_count, h});
  prof.moe_combine(rows, row_of, weights, y, false);
  auto dw = poisoned(DType::kF32, {t_count, k});
  prof.moe_weight_grad(x, rows, row_of, dw);
  auto dlogits = poisoned(DType::kF32, {t_count, e_count});
  prof.moe_route_backward(probs, weights, experts, dw, true, {}, dlogits);
  // The combine of the gathered token rows with weights summing to 1 gives the tokens back.
  EXPECT_LT(rel_err(read(y), read(x)), 1e-6);
  for (const char* op : {"moe_route", "moe_permute", "gather_rows", "moe_combine",
                         "moe_weight_grad", "moe_route_backward"}) {
    ASSERT_EQ(prof.times().count(op), 1u) << op;
    EXPECT_EQ(prof.times().at(op).calls, 1) << op;
  }
}

}  // namespace
}  // namespace fitlm
