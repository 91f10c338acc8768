#include "fitlm/cli/model_session.h"

#include "fitlm/core/error.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/peft_adapter.h"

namespace fitlm::cli {

void ModelOptions::add_to(CLI::App& app, bool with_adapter) {
  app.add_option("--model", model_dir, "Hugging Face model directory (config.json + safetensors)")
      ->required();
  if (with_adapter)
    app.add_option("--adapter", adapter_dir, "PEFT LoRA adapter directory to apply");
  app.add_option("--backend", backend, "cpu, cuda or cuda:N")->capture_default_str();
  quantize.add_to(app);
}

ModelSession open_model(const ModelOptions& opts, TrainMode mode, RunShape shape,
                        std::optional<LoraConfig> lora) {
  ModelSession s;
  s.backend = make_backend(opts.backend);
  ModelConfig config = read_model_config(opts.model_dir);
  check_model_weights(config, opts.model_dir);  // before the plan and its allocation
  shape.base4 = base4_layout(config, opts.model_dir, opts.quantize.request());
  LoraConfig lc = lora.value_or(LoraConfig{});
  TrainMode effective = mode;
  if (!opts.adapter_dir.empty()) {
    lc = read_peft_config(opts.adapter_dir);
    if (effective == TrainMode::kFrozen) effective = TrainMode::kLora;
  }
  // Scoring with an adapter uses the LoRA path (frozen base, adapter applied on the fly).
  s.model = std::make_unique<Transformer>(*s.backend, std::move(config), effective, lc, shape);
  load_model_weights(*s.model, opts.model_dir);
  if (!opts.adapter_dir.empty()) load_peft_weights(*s.model, opts.adapter_dir);
  return s;
}

}  // namespace fitlm::cli
