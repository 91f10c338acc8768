#include "fitlm/backend/cuda/cuda_check.h"

#include "fitlm/core/error.h"

namespace fitlm::cuda {
namespace {

int current_device() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
  return dev;
}

}  // namespace

void throw_cuda_error(const char* expr, const char* what, const char* file, int line) {
  throw Error(
      "cuda",
      fmt::format("{} failed: {} ({}:{}, device {})", expr, what, file, line, current_device()),
      ExitCode::kInternal);
}

void throw_cublas_error(const char* expr, cublasStatus_t status, const char* file, int line) {
  throw Error("cuda",
              fmt::format("{} failed: cuBLAS status {} ({}:{}, device {})", expr,
                          static_cast<int>(status), file, line, current_device()),
              ExitCode::kInternal);
}

void throw_arg_error(const char* what, const char* file, int line) {
  throw Error("cuda", fmt::format("bad argument: {} ({}:{})", what, file, line),
              ExitCode::kInternal);
}

}  // namespace fitlm::cuda
