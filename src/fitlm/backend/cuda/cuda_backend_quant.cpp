// CudaBackend: 4-bit weights — argument checks, then the launcher in cuda_dequant4.cu.
#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_dequant4.cuh"
#include "fitlm/core/quant4_tensor.h"

namespace fitlm {

void CudaBackend::check_dequantize4(const Quant4Tensor& q, const Tensor& out) const {
  check_dequantize4_args("cuda", q, out);
  if (q.numel() == 0) return;
  check_on_device(q.packed, "dequantize4 packed");
  check_on_device(q.absmax, "dequantize4 absmax");
  if (q.double_quant()) {
    check_on_device(q.nested_absmax, "dequantize4 nested_absmax");
    check_on_device(q.nested_map, "dequantize4 nested_map");
  }
  check_on_device(out, "dequantize4 out");
}

void CudaBackend::dequantize4(const Quant4Tensor& q, Tensor out) {
  check_dequantize4(q, out);
  cuda::launch_dequantize4({{&q, out}}, stream_);
}

void CudaBackend::dequantize4_many(
    const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work) {
  for (const auto& [q, out] : work) check_dequantize4(*q, out);
  cuda::launch_dequantize4(work, stream_);
}

}  // namespace fitlm
