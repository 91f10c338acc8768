// A Hugging Face config.json: read_model_config validates it as model loading does, then the
// values derived from it (RoPE frequencies, parameter count, the config written back) are
// computed, as `fitlm plan`, training and merge do.
#include "fitlm/io/hf_model.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::scratch().write("config.json", fuzz::as_text(data, size));
  fuzz::expect_input_errors([&] {
    const ModelConfig c = read_model_config(fuzz::scratch().path());
    (void)c.rope_inv_freq();
    (void)c.parameter_count();
    (void)c.to_json().dump();
  });
  return 0;
}
