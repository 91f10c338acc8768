#include "fitlm/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/io/safetensors_atomic_file.h"

namespace fitlm::io {

// The format is little-endian; we read and write it with plain memcpy.
static_assert(std::endian::native == std::endian::little, "fitlm assumes a little-endian host");

namespace {

constexpr const char* kComponent = "safetensors";
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

struct DTypeRow {
  StDType t;
  std::string_view name;
  int bits;
};
constexpr std::array<DTypeRow, 22> kDTypes{{
    {StDType::kBOOL, "BOOL", 8},
    {StDType::kF4, "F4", 4},
    {StDType::kF6_E2M3, "F6_E2M3", 6},
    {StDType::kF6_E3M2, "F6_E3M2", 6},
    {StDType::kU8, "U8", 8},
    {StDType::kI8, "I8", 8},
    {StDType::kF8_E5M2, "F8_E5M2", 8},
    {StDType::kF8_E4M3, "F8_E4M3", 8},
    {StDType::kF8_E8M0, "F8_E8M0", 8},
    {StDType::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {StDType::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {StDType::kI16, "I16", 16},
    {StDType::kU16, "U16", 16},
    {StDType::kF16, "F16", 16},
    {StDType::kBF16, "BF16", 16},
    {StDType::kI32, "I32", 32},
    {StDType::kU32, "U32", 32},
    {StDType::kF32, "F32", 32},
    {StDType::kC64, "C64", 64},
    {StDType::kF64, "F64", 64},
    {StDType::kI64, "I64", 64},
    {StDType::kU64, "U64", 64},
}};

// numel of a shape, or nullopt on uint64 overflow (a hostile header can claim any shape).
std::optional<uint64_t> checked_numel(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Element-wise conversion between the three float storage types, through fp32. Sources in a
// mapped file may be unaligned, so every element is read with memcpy.
float load_float(StDType t, const std::byte* p) {
  switch (t) {
    case StDType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case StDType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    }
    default: {  // kF16
      uint16_t h;
      std::memcpy(&h, p, 2);
      return f16_to_f32(h);
    }
  }
}

void store_float(DType t, float f, std::byte* p) {
  switch (t) {
    case DType::kF32: std::memcpy(p, &f, 4); break;
    case DType::kBF16: {
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(p, &h, 2);
      break;
    }
    default: {  // kF16
      const uint16_t h = f32_to_f16(f);
      std::memcpy(p, &h, 2);
      break;
    }
  }
}

bool is_float_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

void convert_floats(StDType src_t, const std::byte* src, DType dst_t, std::byte* dst, int64_t n) {
  const size_t ss = st_dtype_bits(src_t) / 8, ds = dtype_size(dst_t);
  // Whole checkpoints go through here at load time; spread big tensors over the cores.
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) store_float(dst_t, load_float(src_t, src + i * ss), dst + i * ds);
}

}  // namespace

// ---- dtypes -------------------------------------------------------------------------------

std::string_view st_dtype_name(StDType t) {
  for (const auto& r : kDTypes)
    if (r.t == t) return r.name;
  return "?";
}

std::optional<StDType> st_dtype_from_name(std::string_view s) {
  for (const auto& r : kDTypes)
    if (r.name == s) return r.t;
  return std::nullopt;
}

int st_dtype_bits(StDType t) {
  for (const auto& r : kDTypes)
    if (r.t == t) return r.bits;
  return 0;
}

bool st_dtype_is_float_loadable(StDType t) {
  return t == StDType::kF32 || t == StDType::kBF16 || t == StDType::kF16;
}

bool st_dtype_is_raw_loadable(StDType t) {
  return t == StDType::kU8 || t == StDType::kI8 || t == StDType::kI32 || t == StDType::kI64 ||
         t == StDType::kBOOL;
}

std::optional<DType> to_core_dtype(StDType t) {
  switch (t) {
    case StDType::kF32: return DType::kF32;
    case StDType::kBF16: return DType::kBF16;
    case StDType::kF16: return DType::kF16;
    case StDType::kU8: return DType::kU8;
    case StDType::kI32: return DType::kI32;
    case StDType::kI64: return DType::kI64;
    default: return std::nullopt;
  }
}

StDType to_st_dtype(DType t) {
  switch (t) {
    case DType::kF32: return StDType::kF32;
    case DType::kBF16: return StDType::kBF16;
    case DType::kF16: return StDType::kF16;
    case DType::kU8: return StDType::kU8;
    case DType::kI32: return StDType::kI32;
    case DType::kI64: return StDType::kI64;
  }
  return StDType::kU8;
}

int64_t SafetensorsTensorInfo::numel() const {
  return static_cast<int64_t>(checked_numel(shape).value_or(0));
}

// ---- reader -------------------------------------------------------------------------------

namespace {

// Parses and checks one header entry; `data_size` is the data buffer's length.
SafetensorsTensorInfo parse_entry(const std::string& file, const std::string& name,
                                  const nlohmann::json& j, uint64_t data_size) {
  auto fail = [&](const std::string& what) {
    throw_input_error(kComponent, "{}: tensor '{}': {}", file, clip(name, 160), what);
  };
  if (!j.is_object())
    fail(
        fmt::format("expected an object with dtype, shape, data_offsets, found {}", j.type_name()));
  SafetensorsTensorInfo t;
  t.name = name;

  const auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) fail("expected a string \"dtype\"");
  const auto parsed = st_dtype_from_name(dt->get_ref<const std::string&>());
  if (!parsed)
    fail(
        fmt::format("unknown dtype \"{}\" (expected one of BOOL F4 F6_E2M3 F6_E3M2 U8 I8 "
                    "F8_E5M2 F8_E4M3 F8_E8M0 F8_E4M3FNUZ F8_E5M2FNUZ I16 U16 F16 BF16 I32 U32 "
                    "F32 C64 F64 I64 U64)",
                    clip(dt->get_ref<const std::string&>())));

  t.dtype = *parsed;

  const auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array()) fail("expected an array \"shape\"");
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(fmt::format("shape {} must hold non-negative integers", clip(sh->dump())));
    t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }

  const auto off = j.find("data_offsets");
  if (off == j.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    fail("expected \"data_offsets\": [begin, end] with non-negative integers");
  t.begin = (*off)[0].get<uint64_t>();
  t.end = (*off)[1].get<uint64_t>();
  if (t.begin > t.end) fail(fmt::format("data_offsets [{}, {}] has begin > end", t.begin, t.end));
  if (t.end > data_size)
    fail(fmt::format("data_offsets [{}, {}] run past the end of the data buffer ({} bytes)",
                     t.begin, t.end, data_size));

  const auto numel = checked_numel(t.shape);
  uint64_t bits = 0;
  if (!numel ||
      __builtin_mul_overflow(*numel, static_cast<uint64_t>(st_dtype_bits(t.dtype)), &bits))
    fail(fmt::format("shape {} is too large", shape_str(t.shape)));
  if (bits % 8 != 0)
    fail(fmt::format("shape {} of {} does not fill a whole number of bytes", shape_str(t.shape),
                     st_dtype_name(t.dtype)));
  if (bits / 8 != t.bytes())
    fail(fmt::format("shape {} of {} needs {} bytes, data_offsets [{}, {}] hold {}",
                     shape_str(t.shape), st_dtype_name(t.dtype), bits / 8, t.begin, t.end,
                     t.bytes()));
  return t;
}

std::map<std::string, std::string> parse_metadata(const std::string& file,
                                                  const nlohmann::json& j) {
  std::map<std::string, std::string> m;
  if (j.is_null()) return m;
  if (!j.is_object())
    throw_input_error(kComponent, "{}: __metadata__ must be an object of strings, found {}", file,
                      j.type_name());
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string())
      throw_input_error(kComponent, "{}: __metadata__ key '{}' must be a string, found {}", file, k,
                        v.type_name());
    m.emplace(k, v.get<std::string>());
  }
  return m;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string file = clip_path(path.string());
  SafetensorsFile f;
  f.path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_input_error(kComponent, "{}: cannot open: {}", file, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_input_error(kComponent, "{}: not a regular file", file);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw_input_error(kComponent,
                      "{}: file is {} bytes, too short for the 8-byte header length (truncated?)",
                      file, size);
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED)
    throw_input_error(kComponent, "{}: cannot mmap {} bytes: {}", file, size,
                      std::strerror(map_errno));
  f.map_ = static_cast<const std::byte*>(m);
  f.map_size_ = size;  // from here on f's destructor unmaps, also when a check below throws

  uint64_t n = 0;
  std::memcpy(&n, f.map_, 8);
  if (n > kMaxHeaderBytes)
    throw_input_error(kComponent, "{}: header length {} exceeds the limit of {} bytes", file, n,
                      kMaxHeaderBytes);
  if (8 + n > size)
    throw_input_error(kComponent,
                      "{}: header length {} runs past the end of the file ({} bytes; truncated?)",
                      file, n, size);
  f.data_ = f.map_ + 8 + n;
  const uint64_t data_size = size - 8 - n;

  // Duplicate tensor names would silently overwrite each other in the json object.
  std::unordered_set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& v) {
    if (depth == 1 && ev == nlohmann::json::parse_event_t::key && duplicate.empty() &&
        !seen.insert(v.get<std::string>()).second)
      duplicate = v.get<std::string>();
    return true;
  };
  const char* hb = reinterpret_cast<const char*>(f.map_ + 8);
  const nlohmann::json header = json_input::parse(std::string_view(hb, n), kComponent, file,
                                                  on_event, "header is not valid UTF-8 JSON");

  if (!header.is_object())
    throw_input_error(kComponent, "{}: header must be a JSON object, found {}", file,
                      header.type_name());
  if (!duplicate.empty())
    throw_input_error(kComponent, "{}: tensor '{}': appears more than once in the header", file,
                      duplicate);

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__")
      f.metadata_ = parse_metadata(file, value);
    else
      f.tensors_.push_back(parse_entry(file, name, value, data_size));
  }

  // Sorted by offset, the tensors must tile the data buffer exactly: no gap, no overlap.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  const SafetensorsTensorInfo* prev = nullptr;
  for (const auto& t : f.tensors_) {
    if (t.begin < expected)
      throw_input_error(kComponent,
                        "{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' which ends "
                        "at {}",
                        file, t.name, t.begin, t.end, prev->name, expected);
    if (t.begin > expected)
      throw_input_error(kComponent,
                        "{}: tensor '{}': data_offsets begin at {}, expected {} (a gap of {} "
                        "unused bytes after {})",
                        file, t.name, t.begin, expected, t.begin - expected,
                        prev ? fmt::format("tensor '{}'", prev->name) : std::string("the header"));
    expected = t.end;
    prev = &t;
  }
  if (expected != data_size)
    throw_input_error(kComponent,
                      "{}: tensors cover {} bytes of data but the file holds {} after the "
                      "header ({} + 8 + {} != file size {})",
                      file, expected, data_size, expected, n, size);

  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept {
  *this = std::move(o);
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    data_ = std::exchange(o.data_, nullptr);
    tensors_ = std::move(o.tensors_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  unmap();
}

void SafetensorsFile::unmap() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const SafetensorsTensorInfo& SafetensorsFile::info(std::string_view name) const {
  const SafetensorsTensorInfo* t = find(name);
  if (!t) throw_input_error(kComponent, "{}: tensor '{}': not in this file", path_.string(), name);
  return *t;
}

std::span<const std::byte> SafetensorsFile::bytes(std::string_view name) const {
  const SafetensorsTensorInfo& t = info(name);
  if (!st_dtype_is_float_loadable(t.dtype) && !st_dtype_is_raw_loadable(t.dtype))
    throw_input_error(kComponent,
                      "{}: unsupported dtype {} for tensor '{}' (fitlm loads F32 BF16 F16 U8 I8 "
                      "I32 I64 BOOL)",
                      path_.string(), st_dtype_name(t.dtype), name);
  return {data_ + t.begin, t.bytes()};
}

void SafetensorsFile::release(std::string_view name) const {
  const auto b = bytes(name);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(b.data()) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(b.data()) + b.size()) / page * page;
  // Advice only: a failure leaves the pages mapped, which costs memory, not correctness.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void SafetensorsFile::read_f32(std::string_view name, float* dst) const {
  read_as(name, DType::kF32, dst);
}

void SafetensorsFile::read_as(std::string_view name, DType dst_dtype, void* dst) const {
  const SafetensorsTensorInfo& t = info(name);
  const std::span<const std::byte> src = bytes(name);  // rejects unsupported dtypes
  if (to_core_dtype(t.dtype) == dst_dtype) {
    if (!src.empty()) std::memcpy(dst, src.data(), src.size());
    return;
  }
  if (!st_dtype_is_float_loadable(t.dtype) || !is_float_dtype(dst_dtype))
    throw_input_error(kComponent, "{}: tensor '{}': stored as {}, cannot be read as {}",
                      path_.string(), name, st_dtype_name(t.dtype), dtype_name(dst_dtype));
  convert_floats(t.dtype, src.data(), dst_dtype, static_cast<std::byte*>(dst), t.numel());
}

// ---- writer -------------------------------------------------------------------------------

SafetensorsEntry SafetensorsEntry::from_bytes(std::string name, StDType dtype,
                                              std::vector<int64_t> shape, const void* bytes) {
  SafetensorsEntry e;
  e.name = std::move(name);
  e.dtype = dtype;
  e.shape = std::move(shape);
  e.raw = static_cast<const std::byte*>(bytes);
  return e;
}

SafetensorsEntry SafetensorsEntry::from_f32(std::string name, StDType dtype,
                                            std::vector<int64_t> shape, const float* values) {
  SafetensorsEntry e;
  e.name = std::move(name);
  e.dtype = dtype;
  e.shape = std::move(shape);
  e.f32 = values;
  return e;
}

SafetensorsEntry SafetensorsEntry::from_producer(std::string name, StDType dtype,
                                                 std::vector<int64_t> shape,
                                                 std::function<void(float*)> produce) {
  SafetensorsEntry e;
  e.name = std::move(name);
  e.dtype = dtype;
  e.shape = std::move(shape);
  e.produce_f32 = std::move(produce);
  return e;
}

int64_t SafetensorsEntry::numel() const {
  return static_cast<int64_t>(checked_numel(shape).value_or(0));
}

uint64_t SafetensorsEntry::bytes() const {
  return static_cast<uint64_t>(numel()) * st_dtype_bits(dtype) / 8;
}

void SafetensorsWriter::add(SafetensorsEntry e) {
  auto fail = [&](const std::string& what) {
    throw_input_error(kComponent, "writer: tensor '{}': {}", e.name, what);
  };
  if (e.name.empty() || e.name == "__metadata__") fail("name is empty or reserved");
  if (names_.count(e.name)) fail("added twice");
  for (int64_t d : e.shape)
    if (d < 0) fail(fmt::format("shape {} has a negative dimension", shape_str(e.shape)));
  uint64_t bits = 0;
  const auto numel = checked_numel(e.shape);
  if (!numel || __builtin_mul_overflow(*numel, uint64_t(st_dtype_bits(e.dtype)), &bits) ||
      *numel > uint64_t(std::numeric_limits<int64_t>::max()))
    fail(fmt::format("shape {} is too large", shape_str(e.shape)));
  if (bits % 8 != 0) fail("shape does not fill a whole number of bytes");
  const int sources = (e.f32 != nullptr) + (e.raw != nullptr) + (e.produce_f32 != nullptr);
  if (sources > 1) fail("more than one source is set");
  if ((e.f32 || e.produce_f32) && !st_dtype_is_float_loadable(e.dtype))
    fail(fmt::format("cannot convert f32 values to {}", st_dtype_name(e.dtype)));
  if (sources == 0 && bits > 0) fail("no source data");
  names_.emplace(e.name, entries_.size());
  data_bytes_ += bits / 8;
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  // Built entry by entry (a json object would search its keys on every insert, quadratic for
  // MoE checkpoints with ~20k tensors): __metadata__ first, then tensors in buffer order.
  std::string text = "{\"__metadata__\":" + nlohmann::json(metadata_).dump();
  uint64_t offset = 0;
  for (const auto& e : entries_) {
    const nlohmann::ordered_json entry = {{"dtype", st_dtype_name(e.dtype)},
                                          {"shape", nlohmann::ordered_json(e.shape)},
                                          {"data_offsets", {offset, offset + e.bytes()}}};
    text += "," + nlohmann::json(e.name).dump() + ":" + entry.dump();
    offset += e.bytes();
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data buffer 8-byte aligned

  AtomicFileWriter out(path);
  const uint64_t n = text.size();
  out.write(&n, 8);
  out.write(text);
  std::vector<std::byte> buf;
  std::vector<float> produced;         // one produced tensor at a time
  constexpr int64_t kChunk = 1 << 16;  // elements converted per write
  for (const auto& e : entries_) {
    const float* f32 = e.f32;
    if (e.produce_f32 && e.numel() > 0) {
      produced.resize(static_cast<size_t>(e.numel()));
      e.produce_f32(produced.data());
      f32 = produced.data();
    }
    if (e.raw || e.dtype == StDType::kF32) {
      const void* src = e.raw ? static_cast<const void*>(e.raw) : f32;
      if (e.bytes() > 0) out.write(src, e.bytes());
      continue;
    }
    const DType dst = *to_core_dtype(e.dtype);
    buf.resize(kChunk * dtype_size(dst));
    for (int64_t i = 0; i < e.numel(); i += kChunk) {
      const int64_t n_i = std::min(kChunk, e.numel() - i);
      convert_floats(StDType::kF32, reinterpret_cast<const std::byte*>(f32 + i), dst, buf.data(),
                     n_i);
      out.write(buf.data(), n_i * dtype_size(dst));
    }
  }
  out.commit();
}

}  // namespace fitlm::io
