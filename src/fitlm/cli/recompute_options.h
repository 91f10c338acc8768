// The --recompute / --recompute-layers options shared by `fitlm plan` and `fitlm bench`, and
// their resolution into a RunShape (auto: the fewest recomputed layers that fit --max-memory).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "fitlm/model/transformer.h"

namespace fitlm::cli {

struct RecomputeChoice {
  std::string policy = "none";  // none | full | auto
  int layers = -1;              // with full: recompute only the first n layers
};

void add_recompute_options(CLI::App& app, RecomputeChoice& choice);

// Sets shape.recompute / recompute_layers. auto needs cap > 0 and throws an ExitCode::kNoFit
// error with the plan's breakdown when even full recompute does not fit.
RunShape apply_recompute(const RecomputeChoice& choice, RunShape shape, const ModelConfig& c,
                         TrainMode mode, const LoraConfig& lora, DType compute, size_t cap);

// "none", "full", "12 of 32 layers".
std::string describe_recompute(const ModelConfig& c, const RunShape& shape);

}  // namespace fitlm::cli
