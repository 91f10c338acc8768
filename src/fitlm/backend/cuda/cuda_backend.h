// Factory for the CUDA backend. No CUDA types here: the rest of fitlm includes this header in
// builds without CUDA headers on the include path.
#pragma once

#include <memory>

#include "fitlm/backend/backend.h"

namespace fitlm {

int cuda_device_count();
std::unique_ptr<Backend> make_cuda_backend(int device_index);

}  // namespace fitlm
