// CpuBackend: matrix products through OpenBLAS (row-major sgemm), parallelised with OpenMP.
//
// OpenBLAS runs single-threaded (set once in the constructor): its own thread pool would compete
// with OpenMP's for the same cores (both keep their workers spinning between calls, so alternating
// BLAS and OpenMP regions thrash). Parallelism comes from OpenMP only, and the result never depends
// on the number of threads:
// - C with many rows is cut into blocks of rows, one single-threaded sgemm per OpenMP thread.
//   Blocks start at multiples of kRowAlign, so every element is computed by the same kernel tile
//   over the same K blocking as in one whole-matrix call: the result is bit for bit that of
//   single-threaded OpenBLAS, whatever the number of blocks.
// - C with few rows (decoding, LoRA's rank-sized products) is cut into column blocks of a fixed
//   width chosen from the shape alone, run in parallel. Column splits do change OpenBLAS's tiling
//   (and so the rounding), which is why the blocks do not depend on the thread count.
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

// Row blocks start at multiples of this: a multiple of the row unroll of OpenBLAS's sgemm kernels
// (4, 6, 8, 12, 16, 24, 32).
constexpr int64_t kRowAlign = 96;
// Width of the column blocks of a product with fewer than 2 * kRowAlign rows.
constexpr int64_t kColumnBlock = 512;
// A block must be worth the packing of the shared operand that each thread repeats: below this
// many multiply-adds per block a product is not split.
constexpr double kMinMacsPerBlock = 1 << 20;

}  // namespace

// Process-wide, and idempotent: every CpuBackend sets the same.
CpuBackend::CpuBackend() {
  openblas_set_num_threads(1);
}

void CpuBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c,
                      float alpha, float beta) {
  FITLM_CHECK(a.dtype == DType::kF32 && b.dtype == DType::kF32 && c.dtype == DType::kF32, "cpu",
              "gemm is f32 on the CPU");
  const int64_t m = trans_a ? a.cols() : a.rows();
  const int64_t k = trans_a ? a.rows() : a.cols();
  const int64_t kb = trans_b ? b.cols() : b.rows();
  const int64_t n = trans_b ? b.rows() : b.cols();
  FITLM_CHECK(k == kb && c.rows() == m && c.cols() == n, "cpu", "gemm shapes: a {}{} b {}{} c {}",
              a.shape.str(), trans_a ? "ᵀ" : "", b.shape.str(), trans_b ? "ᵀ" : "", c.shape.str());
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS does not scale C by beta when k == 0 on every implementation
    scale(c, beta);
    return;
  }
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const float* pa = a.as<float>();
  const float* pb = b.as<float>();
  float* pc = c.as<float>();
  const int64_t lda = a.cols(), ldb = b.cols(), ldc = n;
  // C[r0:r0+rows, c0:c0+cols] = op(A)[r0:r0+rows, :] · op(B)[:, c0:c0+cols]. Row r of op(A) is
  // row r of A, or column r of A when transposed; likewise for the columns of op(B).
  auto block = [&](int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(rows), static_cast<int>(cols),
                static_cast<int>(k), alpha, trans_a ? pa + r0 : pa + r0 * lda,
                static_cast<int>(lda), trans_b ? pb + c0 * ldb : pb + c0, static_cast<int>(ldb),
                beta, pc + r0 * ldc + c0, static_cast<int>(ldc));
  };

  const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (m >= 2 * kRowAlign) {
    const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    const int64_t parts =
        std::min<int64_t>({threads, static_cast<int64_t>(macs / kMinMacsPerBlock), m / kRowAlign});
    if (parts <= 1) {
      block(0, m, 0, n);
      return;
    }
    const int64_t rows = ((m + parts - 1) / parts + kRowAlign - 1) / kRowAlign * kRowAlign;
    const int blocks = static_cast<int>((m + rows - 1) / rows);
#pragma omp parallel for schedule(static, 1) num_threads(blocks)
    for (int p = 0; p < blocks; ++p) block(p * rows, std::min(rows, m - p * rows), 0, n);
    return;
  }
  // Few rows: fixed column blocks (a function of the shape only), when there are several and
  // each is worth a thread.
  const int64_t blocks = (n + kColumnBlock - 1) / kColumnBlock;
  if (blocks < 2 || macs / static_cast<double>(blocks) < kMinMacsPerBlock) {
    block(0, m, 0, n);
    return;
  }
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
  for (int64_t p = 0; p < blocks; ++p)
    block(0, m, p * kColumnBlock, std::min(kColumnBlock, n - p * kColumnBlock));
}

}  // namespace fitlm
