// One safetensors file (u64 header length, JSON header, data): SafetensorsFile::open validates
// the header, then every tensor is read the ways the model and adapter loaders read them.
#include <vector>

#include "fitlm/io/safetensors.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::scratch().write("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_input_errors([&] {
    const io::SafetensorsFile f = io::SafetensorsFile::open(path);
    for (const auto& [key, value] : f.metadata()) (void)key.size(), (void)value.size();
    for (const io::SafetensorsTensorInfo& t : f.tensors()) {
      if (f.find(t.name) != &f.info(t.name)) fuzz::report_finding("lookup", "find", t.name.c_str());
      if (!io::st_dtype_is_float_loadable(t.dtype) && !io::st_dtype_is_raw_loadable(t.dtype)) {
        fuzz::expect_input_errors([&] { (void)f.bytes(t.name); });
        continue;
      }
      // The header check guarantees numel * dtype size == the tensor's bytes, all in the file.
      const std::span<const std::byte> raw = f.bytes(t.name);
      if (raw.size() != t.bytes()) fuzz::report_finding("bytes", "size", t.name.c_str());
      if (io::st_dtype_is_float_loadable(t.dtype)) {
        std::vector<float> f32(static_cast<size_t>(t.numel()));
        f.read_f32(t.name, f32.data());
        std::vector<uint16_t> half(static_cast<size_t>(t.numel()));
        f.read_as(t.name, DType::kBF16, half.data());
        f.read_as(t.name, DType::kF16, half.data());
      } else if (const auto core = io::to_core_dtype(t.dtype)) {
        std::vector<std::byte> out(static_cast<size_t>(t.numel()) * dtype_size(*core));
        f.read_as(t.name, *core, out.data());
      }
    }
  });
  return 0;
}
