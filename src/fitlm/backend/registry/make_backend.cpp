// Backend factory. Lives outside fitlm_lib so that the library does not depend on the CUDA
// backend; the CLI and tests link it (target fitlm_backends).
#include "fitlm/backend/registry/make_backend.h"

#include <optional>

#include "fitlm/backend/backend.h"
#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

#ifdef FITLM_HAVE_CUDA
#include "fitlm/backend/cuda/cuda_backend.h"
#endif

namespace fitlm {

bool cuda_available() {
#ifdef FITLM_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

namespace {

// nullopt dtype: the CUDA backend's own default (bf16, or FITLM_CUDA_DTYPE).
std::unique_ptr<Backend> make_named(const std::string& name, std::optional<DType> dtype) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
#ifdef FITLM_HAVE_CUDA
    const int index = name == "cuda" ? 0 : std::stoi(name.substr(5));
    return dtype ? make_cuda_backend(index, *dtype) : make_cuda_backend(index);
#else
    (void)dtype;
    throw_input_error("backend",
                      "this fitlm was built without CUDA (rebuild with -DFITLM_CUDA=ON)");
#endif
  }
  throw_input_error("backend", "unknown backend '{}': expected cpu, cuda or cuda:N", name);
}

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& name) {
  return make_named(name, std::nullopt);
}

std::unique_ptr<Backend> make_backend(const std::string& name, DType compute_dtype) {
  return make_named(name, compute_dtype);
}

}  // namespace fitlm
