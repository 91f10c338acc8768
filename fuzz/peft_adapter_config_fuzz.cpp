// A PEFT adapter_config.json, read as `--adapter DIR` and `lora_model_dir` read it.
#include "fitlm/io/peft_adapter.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::scratch().write("adapter_config.json", fuzz::as_text(data, size));
  fuzz::expect_input_errors([&] {
    const LoraConfig c = read_peft_config(fuzz::scratch().path());
    (void)c.scale();
    for (const Projection p : c.targets) (void)peft_tensor_name(0, p, true);
  });
  return 0;
}
