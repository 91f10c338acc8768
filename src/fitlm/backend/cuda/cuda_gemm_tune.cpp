#include "fitlm/backend/cuda/cuda_gemm_tune.h"

#include <fmt/format.h>

#include <vector>

#include "fitlm/backend/cuda/cuda_check.h"

namespace fitlm {
namespace {

// The algorithm with its K dimension split `splits` ways, if cuBLASLt accepts that for this
// problem within the workspace.
bool with_split_k(const LtProblem& p, cublasLtMatmulAlgo_t& algo, int splits) {
  int supported = 0;
  size_t written = 0;
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &supported,
                                        sizeof(supported), &written) != CUBLAS_STATUS_SUCCESS ||
      !supported)
    return false;
  uint32_t schemes = 0;
  cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, &schemes,
                                    sizeof(schemes), &written);
  // A reduction in f32 workspace keeps the accumulation in f32 and is deterministic.
  const uint32_t scheme = (schemes & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)
                              ? CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
                              : CUBLASLT_REDUCTION_SCHEME_INPLACE;
  if (!(schemes & scheme)) return false;
  if (cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
                                           sizeof(splits)) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                           sizeof(scheme)) != CUBLAS_STATUS_SUCCESS)
    return false;
  cublasLtMatmulHeuristicResult_t check{};
  return cublasLtMatmulAlgoCheck(p.lt, p.op, p.a, p.b, p.c, p.c, &algo, &check) ==
             CUBLAS_STATUS_SUCCESS &&
         check.workspaceSize <= p.workspace_bytes;
}

// Mean milliseconds of one run, or a huge value if the algorithm fails on this problem.
float time_algo(const LtProblem& p, const cublasLtMatmulAlgo_t& algo, cudaEvent_t e0,
                cudaEvent_t e1) {
  auto run = [&] {
    return cublasLtMatmul(p.lt, p.op, p.alpha, p.a_ptr, p.a, p.b_ptr, p.b, p.beta, p.c_ptr, p.c,
                          p.scratch, p.c, &algo, p.workspace, p.workspace_bytes, p.stream);
  };
  if (run() != CUBLAS_STATUS_SUCCESS) return 1e30f;
  constexpr int kRuns = 5;
  FITLM_CUDA_CHECK(cudaEventRecord(e0, p.stream));
  for (int i = 0; i < kRuns; ++i) run();
  FITLM_CUDA_CHECK(cudaEventRecord(e1, p.stream));
  FITLM_CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0.0f;
  FITLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  return ms / kRuns;
}

}  // namespace

cublasLtMatmulAlgo_t fastest_lt_algo(const LtProblem& p,
                                     const cublasLtMatmulHeuristicResult_t* results, int found,
                                     bool verbose, const std::string& label) {
  struct Candidate {
    cublasLtMatmulAlgo_t algo;
    int result, splits;
  };
  std::vector<Candidate> candidates;
  for (int i = 0; i < found; ++i) {
    candidates.push_back({results[i].algo, i, 0});
    for (int splits : {2, 4, 8, 16, 32}) {
      cublasLtMatmulAlgo_t algo = results[i].algo;
      if (with_split_k(p, algo, splits)) candidates.push_back({algo, i, splits});
    }
  }
  cudaEvent_t e0, e1;
  FITLM_CUDA_CHECK(cudaEventCreate(&e0));
  FITLM_CUDA_CHECK(cudaEventCreate(&e1));
  size_t best = 0;
  float best_ms = 1e30f, first_ms = 0.0f;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const float ms = time_algo(p, candidates[i].algo, e0, e1);
    if (i == 0) first_ms = ms;
    if (ms < best_ms) best_ms = ms, best = i;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  if (verbose)
    fmt::print(stderr, "gemm tune {}: heuristic {:.1f} us, chose #{} split-k {} {:.1f} us of {}\n",
               label, first_ms * 1e3f, candidates[best].result, candidates[best].splits,
               best_ms * 1e3f, candidates.size());
  return candidates[best].algo;
}

}  // namespace fitlm
