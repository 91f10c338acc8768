// safetensors files (FORMATS.md §1): a read-only, validated mmap view and an atomic writer.
//
// Layout: u64 little-endian N, N bytes of JSON header, then the data buffer that the header's
// `data_offsets` index into. The reader checks every size and offset in the header before it
// hands out a pointer into the data, so a malformed file gives an Error (ExitCode::kBadInput)
// naming the file and tensor, never a read past the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fitlm/core/dtype.h"

namespace fitlm::io {

// Every dtype string the format defines. fitlm loads F32/BF16/F16 (as float) and
// U8/I8/I32/I64/BOOL (as raw bytes); the rest parse fine but fail when read.
enum class StDType : uint8_t {
  kBOOL,
  kF4,
  kF6_E2M3,
  kF6_E3M2,
  kU8,
  kI8,
  kF8_E5M2,
  kF8_E4M3,
  kF8_E8M0,
  kF8_E4M3FNUZ,
  kF8_E5M2FNUZ,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,
  kF64,
  kI64,
  kU64,
};

std::string_view st_dtype_name(StDType t);                      // "BF16"
std::optional<StDType> st_dtype_from_name(std::string_view s);  // nullopt if unknown
int st_dtype_bits(StDType t);                                   // 4 for F4, 6 for F6_*, ...
bool st_dtype_is_float_loadable(StDType t);                     // F32, BF16, F16
bool st_dtype_is_raw_loadable(StDType t);                       // U8, I8, I32, I64, BOOL
std::optional<DType> to_core_dtype(StDType t);                  // kI8/kBOOL etc. have none
StDType to_st_dtype(DType t);

struct SafetensorsTensorInfo {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;  // any rank; [] is a scalar (numel 1)
  uint64_t begin = 0;          // byte offsets into the data buffer, end exclusive
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t bytes() const { return end - begin; }
};

// A memory-mapped safetensors file. Move-only; unmaps on destruction. Pointers returned by
// data()/bytes() live as long as this object.
class SafetensorsFile {
 public:
  // Maps `path` read-only and validates the whole header. Throws Error (kBadInput).
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  // All tensors in data-offset (file) order.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const SafetensorsTensorInfo* find(std::string_view name) const;  // nullptr if absent
  const SafetensorsTensorInfo& info(std::string_view name) const;  // throws if absent

  // The stored bytes of a loadable tensor (any of F32/BF16/F16/U8/I8/I32/I64/BOOL);
  // other dtypes throw "unsupported dtype". The pointer may be unaligned.
  std::span<const std::byte> bytes(std::string_view name) const;
  const std::byte* data(std::string_view name) const { return bytes(name).data(); }

  // Drops the mapped pages that lie wholly inside the tensor's bytes from this process's
  // memory (madvise DONTNEED; a later read maps them again from the file). Loaders call it once
  // a tensor is on the device, so that loading a model never holds more of the file than the
  // tensor being read.
  void release(std::string_view name) const;

  // Converts an F32/BF16/F16 tensor to fp32; dst holds info(name).numel() floats.
  void read_f32(std::string_view name, float* dst) const;
  // Writes the tensor as `dst_dtype` into dst (numel * dtype_size(dst_dtype) bytes): float
  // types convert among F32/BF16/F16 (bf16/f16 outputs round to nearest even); integer
  // types copy only when the stored dtype is the same.
  void read_as(std::string_view name, DType dst_dtype, void* dst) const;

 private:
  SafetensorsFile() = default;
  void unmap();

  std::filesystem::path path_;
  const std::byte* map_ = nullptr;  // the whole file
  size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // start of the data buffer, map_ + 8 + N
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// One tensor to write. The source memory is borrowed: it must stay valid until the write
// returns, so that saving a large model never holds a second copy of it in memory.
struct SafetensorsEntry {
  std::string name;
  StDType dtype = StDType::kF32;  // the dtype stored in the file
  std::vector<int64_t> shape;
  const std::byte* raw = nullptr;  // bytes already in `dtype`, or
  const float* f32 = nullptr;      // fp32 values converted to `dtype` (F32/BF16/F16) on write,
  // or fp32 values produced on write into a buffer of numel() floats (a device tensor
  // downloaded then), so that saving a model from a device holds one tensor on the host at a
  // time instead of all of them
  std::function<void(float*)> produce_f32;

  static SafetensorsEntry from_bytes(std::string name, StDType dtype, std::vector<int64_t> shape,
                                     const void* bytes);
  static SafetensorsEntry from_f32(std::string name, StDType dtype, std::vector<int64_t> shape,
                                   const float* values);
  static SafetensorsEntry from_producer(std::string name, StDType dtype,
                                        std::vector<int64_t> shape,
                                        std::function<void(float*)> produce);
  int64_t numel() const;
  uint64_t bytes() const;  // size in the file
};

// Builds one safetensors file: tensors packed in insertion order, header padded with spaces to
// a multiple of 8, metadata always carrying {"format": "pt"} (transformers requires it).
class SafetensorsWriter {
 public:
  // Validates the entry (name unique and not "__metadata__", shape non-negative, a source
  // set, f32 sources only for F32/BF16/F16) and keeps it; the source is read in write().
  void add(SafetensorsEntry entry);
  void add_bytes(std::string name, StDType dtype, std::vector<int64_t> shape, const void* bytes) {
    add(SafetensorsEntry::from_bytes(std::move(name), dtype, std::move(shape), bytes));
  }
  void add_f32(std::string name, StDType dtype, std::vector<int64_t> shape, const float* values) {
    add(SafetensorsEntry::from_f32(std::move(name), dtype, std::move(shape), values));
  }
  void add_f32_produced(std::string name, StDType dtype, std::vector<int64_t> shape,
                        std::function<void(float*)> produce) {
    add(SafetensorsEntry::from_producer(std::move(name), dtype, std::move(shape),
                                        std::move(produce)));
  }
  void set_metadata(std::string key, std::string value);

  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  uint64_t data_bytes() const { return data_bytes_; }

  // Writes `path` atomically: `path.tmp`, fsync, rename, fsync of the directory. On failure
  // the old file (if any) is left untouched and the temp file removed.
  void write(const std::filesystem::path& path) const;

 private:
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> names_;
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
  uint64_t data_bytes_ = 0;
};

}  // namespace fitlm::io
