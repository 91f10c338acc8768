#include "fitlm/backend/quant4_upload.h"

#include "fitlm/core/error.h"

namespace fitlm {

void check_quant4_layout(const quant::Quantized4& h, const Quant4Tensor& q, const std::string& name,
                         const std::string& file) {
  if (h.type != q.type || h.blocksize != q.blocksize || h.double_quant != q.double_quant() ||
      h.numel != q.numel())
    throw_input_error("model",
                      "{}: '{}' is {} with blocksize {}{}, but the model was planned as {} with "
                      "blocksize {}{}",
                      clip_path(file), name, quant::quant_type_name(h.type), h.blocksize,
                      h.double_quant ? " and double quantization" : "",
                      quant::quant_type_name(q.type), q.blocksize,
                      q.double_quant() ? " and double quantization" : "");
}

void upload_quant4(Backend& be, const quant::Quantized4& h, Quant4Tensor& q,
                   const std::string& name, const std::string& file) {
  check_quant4_layout(h, q, name, file);
  be.upload(q.packed, h.packed.data(), DType::kU8);
  if (!h.double_quant) {
    be.upload(q.absmax, h.absmax.data(), DType::kF32);
    return;
  }
  be.upload(q.absmax, h.absmax_codes.data(), DType::kU8);
  be.upload(q.nested_absmax, h.nested_absmax.data(), DType::kF32);
  be.upload(q.nested_map, h.nested_map.data(), DType::kF32);
  q.offset = h.offset;
}

}  // namespace fitlm
