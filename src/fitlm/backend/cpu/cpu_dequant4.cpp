// CpuBackend: 4-bit weights → f32 (the reference the CUDA kernel is tested against).
#include <algorithm>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::dequantize4(const Quant4Tensor& q, Tensor out) {
  check_dequantize4_args(name(), q, out);
  FITLM_CHECK(out.dtype == DType::kF32, "cpu", "dequantize4 into {}: the CPU computes in f32",
              dtype_name(out.dtype));
  const int64_t n = q.numel(), bs = q.blocksize, blocks = q.blocks();
  const auto& table = quant::code_table(q.type);
  const uint8_t* packed = q.packed.as<uint8_t>();
  float* po = out.as<float>();
  const bool dq = q.double_quant();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const float absmax =
        dq ? quant::decode_absmax(q.absmax.as<uint8_t>()[b],
                                  q.nested_absmax.as<float>()[b / quant::kNestedBlocksize],
                                  q.offset, q.nested_map.as<float>())
           : q.absmax.as<float>()[b];
    const int64_t end = std::min(n, (b + 1) * bs);
    for (int64_t i = b * bs; i < end; ++i) {
      const uint8_t byte = packed[i / 2];
      const uint8_t code = (i % 2 == 0) ? byte >> 4 : byte & 0x0f;
      po[i] = round_to_storage(table[code] * absmax, q.round_to);
    }
  }
}

}  // namespace fitlm
