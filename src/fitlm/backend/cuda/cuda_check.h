// One error-check family for the CUDA backend: every CUDA runtime / cuBLASLt call and every
// kernel launch goes through these macros, which record the expression, file, line and current
// device and throw fitlm::Error("cuda", ...). Plain C++ (no fmt): .cu files include it too, and
// nvcc cannot compile fmt 9's consteval format strings.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

namespace fitlm::cuda {

[[noreturn]] void throw_cuda_error(const char* expr, const char* what, const char* file, int line);
[[noreturn]] void throw_cublas_error(const char* expr, cublasStatus_t status, const char* file,
                                     int line);
// A failed argument check in launcher code (shapes, dtypes, alignment).
[[noreturn]] void throw_arg_error(const char* what, const char* file, int line);

}  // namespace fitlm::cuda

#define FITLM_CUDA_CHECK(expr)                                                                    \
  do {                                                                                            \
    const cudaError_t fitlm_err_ = (expr);                                                        \
    if (fitlm_err_ != cudaSuccess)                                                                \
      ::fitlm::cuda::throw_cuda_error(#expr, cudaGetErrorString(fitlm_err_), __FILE__, __LINE__); \
  } while (0)

#define FITLM_CUBLAS_CHECK(expr)                                               \
  do {                                                                         \
    const cublasStatus_t fitlm_st_ = (expr);                                   \
    if (fitlm_st_ != CUBLAS_STATUS_SUCCESS)                                    \
      ::fitlm::cuda::throw_cublas_error(#expr, fitlm_st_, __FILE__, __LINE__); \
  } while (0)

// After every <<<...>>>: launch-configuration errors surface here, not at the next sync.
#define FITLM_CUDA_CHECK_LAUNCH() FITLM_CUDA_CHECK(cudaGetLastError())

#define FITLM_CUDA_ARG(cond, what)                                                        \
  do {                                                                                    \
    if (!(cond)) ::fitlm::cuda::throw_arg_error(what " (" #cond ")", __FILE__, __LINE__); \
  } while (0)
