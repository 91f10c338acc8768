// CudaBackend::gemm through cuBLASLt: bf16/f16 inputs with f32 accumulation (C/D in the input
// dtype or f32, so weight gradients accumulate straight into f32 master grads with beta = 1),
// and pure f32 (CUBLAS_COMPUTE_32F, no TF32: the f32 path must match the CPU to ~1e-5).
//
// fitlm is row-major, cuBLASLt column-major: a row-major X[r, c] is a column-major Xᵀ with
// ld = c, so C = op(A)·op(B) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ with B passed first.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    default: throw_internal_error("cuda", "gemm: unsupported dtype {}", dtype_name(t));
  }
}

// Largest power of two (≤ 256) dividing the address: cuBLASLt picks kernels by alignment.
int alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && (v % static_cast<uintptr_t>(a)) != 0) a >>= 1;
  return a;
}

// RAII for the per-call descriptors (creating them costs well under a microsecond).
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  ~LtDescs() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// m, n, k of c = op(a)·op(b), after checking shapes and dtypes.
struct GemmDims {
  int64_t m, n, k;
};
GemmDims checked_dims(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                      const Tensor& c) {
  const int64_t m = trans_a ? a.cols() : a.rows();
  const int64_t k = trans_a ? a.rows() : a.cols();
  const int64_t kb = trans_b ? b.cols() : b.rows();
  const int64_t n = trans_b ? b.rows() : b.cols();
  FITLM_CHECK(k == kb && c.rows() == m && c.cols() == n, "cuda", "gemm shapes: a {}{} b {}{} c {}",
              a.shape.str(), trans_a ? "ᵀ" : "", b.shape.str(), trans_b ? "ᵀ" : "", c.shape.str());
  FITLM_CHECK(a.dtype == b.dtype, "cuda", "gemm inputs must share a dtype (a {}, b {})",
              dtype_name(a.dtype), dtype_name(b.dtype));
  FITLM_CHECK(c.dtype == a.dtype || c.dtype == DType::kF32, "cuda",
              "gemm output must be {} or f32, got {}", dtype_name(a.dtype), dtype_name(c.dtype));
  return {m, n, k};
}

}  // namespace

void CudaBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c,
                       float alpha, float beta) {
  check_on_device(a, "gemm a");
  check_on_device(b, "gemm b");
  check_on_device(c, "gemm c");
  const auto [m, n, k] = checked_dims(a, trans_a, b, trans_b, c);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // Cᵀ = beta·C: cuBLASLt is not asked to handle an empty reduction
    scale(c, beta);
    return;
  }

  const cudaDataType_t ab_type = cuda_type(a.dtype), c_type = cuda_type(c.dtype);
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LtDescs d;
  FITLM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  FITLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                    sizeof(op_first)));
  FITLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                                    sizeof(op_second)));
  // Column-major views of the stored row-major matrices.
  FITLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, ab_type, static_cast<uint64_t>(b.cols()),
                                                static_cast<uint64_t>(b.rows()), b.cols()));
  FITLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, ab_type, static_cast<uint64_t>(a.cols()),
                                                static_cast<uint64_t>(a.rows()), a.cols()));
  FITLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, c_type, static_cast<uint64_t>(n),
                                                static_cast<uint64_t>(m), n));

  const int align = std::min({alignment_of(a.data), alignment_of(b.data), alignment_of(c.data)});
  const GemmKey key{
      m,     n,           k, trans_a, trans_b, static_cast<int>(a.dtype), static_cast<int>(c.dtype),
      align, beta != 0.0f};
  auto it = algo_cache_.find(key);
  if (it == algo_cache_.end()) {
    cublasLtMatmulPreference_t pref = nullptr;
    FITLM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kLtWorkspaceBytes;
    const uint32_t al = static_cast<uint32_t>(align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    for (auto attr :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt_, d.op, d.a, d.b, d.c, d.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      throw_internal_error("cuda", "cuBLASLt has no algorithm for gemm m={} n={} k={} {}→{}", m, n,
                           k, dtype_name(a.dtype), dtype_name(c.dtype));
    it = algo_cache_.emplace(key, result.algo).first;
  }
  FITLM_CUBLAS_CHECK(cublasLtMatmul(lt_, d.op, &alpha, b.data, d.a, a.data, d.b, &beta, c.data, d.c,
                                    c.data, d.c, &it->second, lt_workspace_, kLtWorkspaceBytes,
                                    stream_));
}

// cublasGemmGroupedBatchedEx, one group per problem, in the same column-major reading as gemm
// (B first). It takes one dtype for A, B and C, so 16-bit products into f32 (full fine-tuning's
// weight gradients) and empty problems go through gemm one by one.
void CudaBackend::gemm_grouped(const std::vector<GemmGroup>& groups, bool trans_a, bool trans_b,
                               float alpha, float beta) {
  std::vector<const GemmGroup*> batch;
  for (const GemmGroup& g : groups) {
    check_on_device(g.a, "gemm_grouped a");
    check_on_device(g.b, "gemm_grouped b");
    check_on_device(g.c, "gemm_grouped c");
    const GemmDims d = checked_dims(g.a, trans_a, g.b, trans_b, g.c);
    const bool one_type = g.c.dtype == g.a.dtype && g.a.dtype == groups.front().a.dtype;
    if (d.m == 0 || d.n == 0 || d.k == 0 || !one_type)
      gemm(g.a, trans_a, g.b, trans_b, g.c, alpha, beta);
    else
      batch.push_back(&g);
  }
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  for (size_t start = 0; start < batch.size(); start += kMaxGemmGroups) {
    const size_t count = std::min(kMaxGemmGroups, batch.size() - start);
    // The host slot this call fills: free once the copy that last read it has run.
    const size_t slot = next_slot_++ % slot_copied_.size();
    FITLM_CUDA_CHECK(cudaEventSynchronize(slot_copied_[slot]));
    void** host = h_group_ptrs_ + slot * 3 * kMaxGemmGroups;
    std::vector<cublasOperation_t> ops_first(count, op_first), ops_second(count, op_second);
    std::vector<int> m(count), n(count), k(count), lda(count), ldb(count), ldc(count);
    std::vector<int> sizes(count, 1);
    std::vector<float> alphas(count, alpha), betas(count, beta);
    for (size_t i = 0; i < count; ++i) {
      const GemmGroup& g = *batch[start + i];
      const GemmDims d = checked_dims(g.a, trans_a, g.b, trans_b, g.c);
      m[i] = static_cast<int>(d.n);
      n[i] = static_cast<int>(d.m);
      k[i] = static_cast<int>(d.k);
      lda[i] = static_cast<int>(g.b.cols());
      ldb[i] = static_cast<int>(g.a.cols());
      ldc[i] = static_cast<int>(g.c.cols());
      host[i] = g.b.data;
      host[kMaxGemmGroups + i] = g.a.data;
      host[2 * kMaxGemmGroups + i] = g.c.data;
    }
    FITLM_CUDA_CHECK(
        cudaMemcpyAsync(d_group_ptrs_, host, kGroupPointerBytes, cudaMemcpyHostToDevice, stream_));
    FITLM_CUDA_CHECK(cudaEventRecord(slot_copied_[slot], stream_));
    const cudaDataType_t type = cuda_type(batch[start]->a.dtype);
    FITLM_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
        blas_, ops_first.data(), ops_second.data(), m.data(), n.data(), k.data(), alphas.data(),
        d_group_ptrs_, type, lda.data(), d_group_ptrs_ + kMaxGemmGroups, type, ldb.data(),
        betas.data(), d_group_ptrs_ + 2 * kMaxGemmGroups, type, ldc.data(), static_cast<int>(count),
        sizes.data(), CUBLAS_COMPUTE_32F));
  }
}

}  // namespace fitlm
