// `fitlm random-model --arch PRESET --out DIR`: a model directory with random weights at a
// preset's real shapes (io/random_model.h), for benchmarks and device runs of `fitlm train`.
#include <fmt/format.h>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/log.h"
#include "fitlm/io/random_model.h"
#include "fitlm/model/presets.h"

namespace fitlm::cli {
namespace {

struct RandomModelOptions {
  std::string arch, out, dtype = "bf16";
  uint64_t seed = 1;
};

int run_random_model(const RandomModelOptions& o) {
  const ModelConfig c = preset_config(o.arch);
  const io::StDType dtype = o.dtype == "f32"   ? io::StDType::kF32
                            : o.dtype == "f16" ? io::StDType::kF16
                                               : io::StDType::kBF16;
  io::write_random_model(c, o.out, dtype, o.seed);
  fmt::print(
      "{}: {} ({} parameters, {}) with random weights; no tokenizer: train it on "
      "pretokenized rows (ids below {})\n",
      o.out, c.architecture_name, c.parameter_count(), o.dtype, c.vocab_size);
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<RandomModelOptions>();
  app.add_option("--arch", o->arch, "Architecture preset (see `fitlm plan --help`)")->required();
  app.add_option("--out", o->out, "Output directory")->required();
  app.add_option("--dtype", o->dtype, "Stored dtype: bf16, f16 or f32")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_option("--seed", o->seed, "Random seed")->capture_default_str();
  app.footer(
      "Values: norms 1, biases 0, the rest uniform with standard deviation 0.02, written one "
      "tensor at a time.\nExample: fitlm random-model --arch llama-3.1-8b --out /tmp/llama8b");
  return [o] { return run_random_model(*o); };
}

CommandRegistration reg{"random-model",
                        "Write a model directory with random weights at a preset's shapes", setup};

}  // namespace
}  // namespace fitlm::cli
