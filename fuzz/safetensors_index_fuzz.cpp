// A sharded checkpoint: part 0 is model.safetensors.index.json, parts 1 and 2 (optional) are
// model-00001-of-00002.safetensors and model-00002-of-00002.safetensors in the same directory.
// ShardedSafetensors::open checks the index against the shards it names.
#include <string>

#include "fitlm/io/safetensors_index.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_parts(data, size);
  const fuzz::ScratchDir& dir = fuzz::scratch();
  dir.write(std::string(io::kSafetensorsIndexName), parts[0]);
  const char* shards[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  for (size_t i = 0; i < 2; ++i) {
    if (i + 1 < parts.size())
      dir.write(shards[i], parts[i + 1]);
    else
      dir.remove(shards[i]);
  }
  fuzz::expect_input_errors([&] {
    const io::ShardedSafetensors s = io::ShardedSafetensors::open(dir.path());
    for (const std::string& name : s.names()) {
      const io::SafetensorsTensorInfo& t = s.info(name);
      if (io::st_dtype_is_float_loadable(t.dtype)) {
        std::vector<float> f32(static_cast<size_t>(t.numel()));
        s.read_f32(name, f32.data());
      }
    }
  });
  return 0;
}
