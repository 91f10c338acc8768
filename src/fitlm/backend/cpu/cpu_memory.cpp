// CpuBackend: memory, transfers and dtype casts. Device memory is host memory here.
#include <cstdlib>
#include <cstring>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

float load_as_f32(const void* src, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(src)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kU8: return static_cast<const uint8_t*>(src)[i];
    case DType::kI32: return static_cast<float>(static_cast<const int32_t*>(src)[i]);
    case DType::kI64: return static_cast<float>(static_cast<const int64_t*>(src)[i]);
  }
  return 0.0f;
}

void store_from_f32(void* dst, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(dst)[i] = v; break;
    case DType::kBF16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
    case DType::kF16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
    case DType::kU8: static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v); break;
    case DType::kI32: static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v); break;
    case DType::kI64: static_cast<int64_t*>(dst)[i] = static_cast<int64_t>(v); break;
  }
}

// Element-wise conversion; a plain memcpy when the dtypes agree (ids stay exact).
void convert(const void* src, DType src_t, void* dst, DType dst_t, int64_t n) {
  if (src_t == dst_t) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(src_t));
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store_from_f32(dst, dst_t, i, load_as_f32(src, src_t, i));
}

}  // namespace

void* CpuBackend::allocate(size_t bytes) {
  // 64-byte alignment for vector loads; aligned_alloc needs a multiple of the alignment.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw Error("cpu", fmt::format("out of host memory allocating {} bytes", bytes),
                      ExitCode::kNoFit);
  return p;
}

void CpuBackend::deallocate(void* ptr) { std::free(ptr); }

void CpuBackend::upload(Tensor dst, const void* src, DType src_dtype) {
  convert(src, src_dtype, dst.data, dst.dtype, dst.numel());
}

void CpuBackend::download(const Tensor& src, float* dst) {
  convert(src.data, src.dtype, dst, DType::kF32, src.numel());
}

void CpuBackend::fill(Tensor x, float value) {
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) store_from_f32(x.data, x.dtype, i, value);
}

void CpuBackend::copy(const Tensor& src, Tensor dst) {
  FITLM_CHECK(src.numel() == dst.numel(), "cpu", "copy {} -> {}", src.shape.str(),
              dst.shape.str());
  convert(src.data, src.dtype, dst.data, dst.dtype, src.numel());
}

}  // namespace fitlm
