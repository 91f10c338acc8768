// Element types fitlm stores. Compute is fp32 on the CPU; bf16/f16 are storage types that the
// CUDA backend computes in with fp32 accumulation.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace fitlm {

enum class DType : uint8_t { kF32, kBF16, kF16, kU8, kI32, kI64 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "f32", "bf16", ...

// bf16 <-> f32: round to nearest even, NaN kept quiet (as torch does).
inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Rounds each value to what storing it as `t` keeps (bf16/f16: nearest even; f32: unchanged).
void round_to_storage(std::span<float> v, DType t);
float round_to_storage(float v, DType t);

}  // namespace fitlm
