#include "fitlm/cli/recompute_options.h"

#include <fmt/format.h>

#include "fitlm/core/error.h"

namespace fitlm::cli {

void add_recompute_options(CLI::App& app, RecomputeChoice& choice) {
  app.add_option("--recompute", choice.policy,
                 "none: keep every activation; full: keep only each layer's input and recompute "
                 "layers in backward; auto: recompute the fewest layers that fit --max-memory")
      ->check(CLI::IsMember({"none", "full", "auto"}))
      ->capture_default_str();
  app.add_option("--recompute-layers", choice.layers,
                 "With --recompute full: recompute only the first N layers, keep the rest");
}

RunShape apply_recompute(const RecomputeChoice& choice, RunShape shape, const ModelConfig& c,
                         TrainMode mode, const LoraConfig& lora, DType compute, size_t cap) {
  if (choice.layers >= 0 && choice.policy != "full")
    throw_input_error("recompute", "--recompute-layers needs --recompute full");
  if (choice.layers > c.num_layers)
    throw_input_error("recompute", "--recompute-layers {} but the model has {} layers",
                      choice.layers, c.num_layers);
  shape.recompute = choice.policy == "none" ? RecomputePolicy::kSave : RecomputePolicy::kFull;
  shape.recompute_layers = choice.layers;
  if (choice.policy != "auto") return shape;
  if (cap == 0) throw_input_error("recompute", "--recompute auto needs --max-memory");
  return fit_recompute_or_refuse(c, mode, lora, shape, compute, cap);
}

std::string describe_recompute(const ModelConfig& c, const RunShape& shape) {
  if (shape.recompute == RecomputePolicy::kSave) return "none";
  const int n = shape.recompute_layers < 0 ? c.num_layers : shape.recompute_layers;
  if (n == c.num_layers) return "full";
  return fmt::format("{} of {} layers", n, c.num_layers);
}

}  // namespace fitlm::cli
