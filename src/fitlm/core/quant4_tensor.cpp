#include "fitlm/core/quant4_tensor.h"

#include "fitlm/core/error.h"

namespace fitlm {

void check_dequantize4_args(std::string_view backend, const Quant4Tensor& q, const Tensor& out) {
  const std::string b(backend);
  const int64_t n = q.numel();
  FITLM_CHECK(quant::valid_blocksize(q.blocksize), b, "dequantize4: blocksize {}", q.blocksize);
  FITLM_CHECK(out.numel() == n, b, "dequantize4: {} elements into {}", n, out.shape.str());
  FITLM_CHECK(out.dtype == DType::kF32 || out.dtype == DType::kBF16 || out.dtype == DType::kF16, b,
              "dequantize4: output dtype {}", dtype_name(out.dtype));
  FITLM_CHECK(q.packed.dtype == DType::kU8 && q.packed.numel() == quant4_packed_bytes(n), b,
              "dequantize4: packed {} for {} elements", q.packed.shape.str(), n);
  FITLM_CHECK(q.absmax.numel() == q.blocks(), b, "dequantize4: absmax {} for {} blocks",
              q.absmax.shape.str(), q.blocks());
  if (q.double_quant()) {
    FITLM_CHECK(q.nested_absmax.dtype == DType::kF32 &&
                    q.nested_absmax.numel() == quant4_nested_blocks(n, q.blocksize),
                b, "dequantize4: nested_absmax {}", q.nested_absmax.shape.str());
    FITLM_CHECK(q.nested_map.dtype == DType::kF32 && q.nested_map.numel() == 256, b,
                "dequantize4: nested_map {}", q.nested_map.shape.str());
  } else {
    FITLM_CHECK(q.absmax.dtype == DType::kF32, b, "dequantize4: absmax dtype {}",
                dtype_name(q.absmax.dtype));
  }
}

}  // namespace fitlm
