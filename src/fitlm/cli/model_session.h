// Shared by the CLI commands that load a model: backend + config + weights (+ PEFT adapter).
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "fitlm/backend/backend.h"
#include "fitlm/cli/quantize_option.h"
#include "fitlm/model/transformer.h"

namespace fitlm::cli {

struct ModelOptions {
  std::string model_dir;
  std::string adapter_dir;  // empty = none
  std::string backend = "cpu";
  QuantizeOption quantize;
  void add_to(CLI::App& app, bool with_adapter = true);
};

struct ModelSession {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> model;
};

// mode kFrozen scores; kLora needs an adapter dir or inits LoRA from `lora` when none is given.
ModelSession open_model(const ModelOptions& opts, TrainMode mode, RunShape shape,
                        std::optional<LoraConfig> lora = std::nullopt);

}  // namespace fitlm::cli
