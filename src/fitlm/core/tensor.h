// Tensor: a non-owning, contiguous, row-major view of memory on one device. Ownership lives in
// an Arena (device buffers from the allocation plan) or a HostBuffer (host-side scratch).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "fitlm/core/dtype.h"

namespace fitlm {

enum class DeviceKind : uint8_t { kCPU, kCUDA };

struct Device {
  DeviceKind kind = DeviceKind::kCPU;
  int index = 0;
  bool operator==(const Device&) const = default;
  std::string str() const;
};

inline constexpr int kMaxDims = 4;

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  explicit Shape(const std::vector<int64_t>& d);
  int64_t operator[](int i) const { return dims[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3]"
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  Device device;

  Tensor() = default;
  Tensor(void* d, DType t, Shape s, Device dev = {}) : data(d), dtype(t), shape(s), device(dev) {}

  bool empty() const { return data == nullptr; }
  int ndim() const { return shape.ndim; }
  int64_t dim(int i) const { return shape[i]; }
  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // Matrix view of any tensor: rows = product of all but the last dim, cols = last dim.
  int64_t rows() const { return shape.ndim == 0 ? 1 : numel() / shape[-1]; }
  int64_t cols() const { return shape.ndim == 0 ? 1 : shape[-1]; }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // Rows [begin, end) along dim 0.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Same memory, new shape with the same element count.
  Tensor reshape(Shape s) const;
  // Elements [begin, end) of the tensor laid out flat, as a 1-D view (e.g. a rank's block).
  Tensor flat_range(int64_t begin, int64_t end) const {
    return reshape(Shape{numel()}).slice_rows(begin, end);
  }
};

// Host memory that owns its bytes, for tests, loaders and CPU-side staging.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(DType t, Shape s);
  Tensor tensor() const { return tensor_; }
  operator Tensor() const { return tensor_; }
  float* f32() const { return tensor_.as<float>(); }

 private:
  std::vector<std::byte> bytes_;
  Tensor tensor_;
};

}  // namespace fitlm
