// Picking a cuBLASLt algorithm by timing it. The heuristic's first choice is poor for the
// skinny LoRA products (an output of [tokens × r] reduced over 4096–14336): it runs them on a
// handful of SMs. Timing the heuristic's candidates, each also with its K dimension split 2–32
// ways, finds kernels that use the whole GPU (bench/NOTES.md, session 3).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <string>

namespace fitlm {

// One GEMM as cublasLtMatmul sees it. Candidates write D to `scratch` (never to C), so C is
// intact even when beta ≠ 0; the caller only tunes problems whose output fits the scratch.
struct LtProblem {
  cublasLtHandle_t lt;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, c;
  const void *a_ptr, *b_ptr, *c_ptr;
  const float *alpha, *beta;
  void* scratch;
  void* workspace;
  size_t workspace_bytes;
  cudaStream_t stream;
};

// The fastest of the heuristic's `found` results and their split-K variants (5 timed runs each,
// after one warm-up). Prints each choice to stderr when `verbose`, prefixed by `label`.
cublasLtMatmulAlgo_t fastest_lt_algo(const LtProblem& p,
                                     const cublasLtMatmulHeuristicResult_t* results, int found,
                                     bool verbose, const std::string& label);

}  // namespace fitlm
