// CpuBackend: matrix products through OpenBLAS (row-major sgemm).
#include <cblas.h>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c,
                      float alpha, float beta) {
  FITLM_CHECK(a.dtype == DType::kF32 && b.dtype == DType::kF32 && c.dtype == DType::kF32, "cpu",
              "gemm is f32 on the CPU");
  const int64_t m = trans_a ? a.cols() : a.rows();
  const int64_t k = trans_a ? a.rows() : a.cols();
  const int64_t kb = trans_b ? b.cols() : b.rows();
  const int64_t n = trans_b ? b.rows() : b.cols();
  FITLM_CHECK(k == kb && c.rows() == m && c.cols() == n, "cpu",
              "gemm shapes: a {}{} b {}{} c {}", a.shape.str(), trans_a ? "ᵀ" : "",
              b.shape.str(), trans_b ? "ᵀ" : "", c.shape.str());
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS does not scale C by beta when k == 0 on every implementation
    scale(c, beta);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a.as<float>(), static_cast<int>(a.cols()),
              b.as<float>(), static_cast<int>(b.cols()), beta, c.as<float>(),
              static_cast<int>(n));
}

}  // namespace fitlm
