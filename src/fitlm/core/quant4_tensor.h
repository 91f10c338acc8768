// A 4-bit weight on a device: the packed nibbles and per-block absmax of core/quant4.h's layout,
// as views into an arena. The dequantize4 op (backend.h) turns it into a 16-bit (or f32) matrix;
// the model keeps its decoder linears this way when the base is 4-bit (QLoRA).
#pragma once

#include <cstdint>
#include <string_view>

#include "fitlm/core/quant4.h"
#include "fitlm/core/tensor.h"

namespace fitlm {

struct Quant4Tensor {
  quant::QuantType type = quant::QuantType::kNF4;
  int64_t blocksize = 64;
  Shape shape;                   // the dequantized weight's shape ([out, in])
  Tensor packed;                 // u8 [(numel + 1) / 2]: element 2i in the high nibble of byte i
  Tensor absmax;                 // f32 [blocks], or u8 [blocks] codes with double quantization
  Tensor nested_absmax;          // f32 [ceil(blocks / 256)]  (double quantization only)
  Tensor nested_map;             // f32 [256]: the codes' values (double quantization only)
  float offset = 0.0f;           // added to every decoded absmax (double quantization only)
  DType round_to = DType::kF32;  // the 16-bit dtype the values are rounded to (bitsandbytes
                                 // dequantizes into its quant_state dtype)

  bool empty() const { return packed.empty(); }
  bool double_quant() const { return absmax.dtype == DType::kU8; }
  int64_t numel() const { return shape.numel(); }
  int64_t blocks() const { return (numel() + blocksize - 1) / blocksize; }
};

// Buffer sizes of that layout (elements), shared by the plan and the loaders.
inline int64_t quant4_packed_bytes(int64_t numel) {
  return (numel + 1) / 2;
}
inline int64_t quant4_blocks(int64_t numel, int64_t blocksize) {
  return (numel + blocksize - 1) / blocksize;
}
inline int64_t quant4_nested_blocks(int64_t numel, int64_t blocksize) {
  return (quant4_blocks(numel, blocksize) + quant::kNestedBlocksize - 1) / quant::kNestedBlocksize;
}

// The checks every backend's dequantize4 makes (buffer sizes and dtypes against q.shape and
// q.blocksize); an internal error naming `backend` when one fails.
void check_dequantize4_args(std::string_view backend, const Quant4Tensor& q, const Tensor& out);

}  // namespace fitlm
