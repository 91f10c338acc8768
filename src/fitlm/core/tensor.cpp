#include "fitlm/core/tensor.h"

#include <fmt/format.h>

#include "fitlm/core/error.h"

namespace fitlm {

std::string Device::str() const {
  return kind == DeviceKind::kCPU ? "cpu" : fmt::format("cuda:{}", index);
}

Shape::Shape(std::initializer_list<int64_t> d) {
  FITLM_CHECK(d.size() <= kMaxDims, "tensor", "too many dims: {}", d.size());
  for (int64_t v : d) dims[ndim++] = v;
}

Shape::Shape(const std::vector<int64_t>& d) {
  FITLM_CHECK(d.size() <= kMaxDims, "tensor", "too many dims: {}", d.size());
  for (int64_t v : d) dims[ndim++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += fmt::format("{}{}", i ? ", " : "", dims[i]);
  return s + "]";
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  FITLM_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape[0], "tensor",
              "slice [{}, {}) of {}", begin, end, shape.str());
  Shape s = shape;
  s.dims[0] = end - begin;
  const size_t row_bytes = shape[0] ? bytes() / static_cast<size_t>(shape[0]) : 0;
  return Tensor(static_cast<std::byte*>(data) + begin * row_bytes, dtype, s, device);
}

Tensor Tensor::reshape(Shape s) const {
  FITLM_CHECK(s.numel() == numel(), "tensor", "reshape {} -> {}", shape.str(), s.str());
  return Tensor(data, dtype, s, device);
}

HostBuffer::HostBuffer(DType t, Shape s)
    : bytes_(static_cast<size_t>(s.numel()) * dtype_size(t)),
      tensor_(bytes_.data(), t, s, Device{}) {}

}  // namespace fitlm
