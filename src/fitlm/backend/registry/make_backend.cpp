// Backend factory. Lives outside fitlm_lib so that the library does not depend on the CUDA
// backend; the CLI and tests link it (target fitlm_backends).
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

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
#ifdef FITLM_HAVE_CUDA
    const int index = name == "cuda" ? 0 : std::stoi(name.substr(5));
    return make_cuda_backend(index);
#else
    throw_input_error("backend", "this fitlm was built without CUDA (rebuild with -DFITLM_CUDA=ON)");
#endif
  }
  throw_input_error("backend", "unknown backend '{}': expected cpu, cuda or cuda:N", name);
}

}  // namespace fitlm
