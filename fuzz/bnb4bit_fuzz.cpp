// A bitsandbytes 4-bit checkpoint (one safetensors file): every weight with a quant_state is
// read as the model loader reads it (quant_state JSON, companion tensors checked against it)
// and dequantized; the quantization_config half is the model_config target's.
#include <vector>

#include "fitlm/io/bnb4bit.h"
#include "fitlm/io/safetensors_index.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::scratch().write("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_input_errors([&] {
    const io::ShardedSafetensors st = io::ShardedSafetensors::open(path);
    for (const std::string& name : st.names()) {
      if (!io::is_bnb4bit_weight(st, name)) continue;
      fuzz::expect_input_errors([&] {
        const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
        // Validated: the packed bytes hold numel nibbles, so numel is bounded by the file.
        if (static_cast<uint64_t>(w.q.numel) > 2 * static_cast<uint64_t>(size) + 2)
          fuzz::report_finding("bnb4bit", "size", name.c_str());
        std::vector<float> out(static_cast<size_t>(w.q.numel));
        io::dequantize_bnb4bit(w, out);
      });
    }
  });
  return 0;
}
