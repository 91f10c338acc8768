#include "fitlm/model/stage_partition.h"

#include <fmt/format.h>

#include <optional>

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

size_t stage_bytes(const ModelConfig& c, TrainMode mode, const LoraConfig& lora, RunShape shape,
                   DType compute, RunShape::Stage stage) {
  shape.stage = stage;
  return plan_transformer(c, mode, lora, shape, compute).total_bytes();
}

// The split with at most `most` layers per stage that gives each stage as many layers as fit
// (leaving at least one for every later stage), or nullopt when some stage cannot take its
// share.
std::optional<std::vector<RunShape::Stage>> greedy_split(
    const ModelConfig& c, TrainMode mode, const LoraConfig& lora, const RunShape& base,
    DType compute, const std::vector<size_t>& caps, const std::vector<int>& in_flight, int most) {
  const int stages = static_cast<int>(caps.size());
  std::vector<RunShape::Stage> out;
  int first = 0;
  for (int s = 0; s < stages; ++s) {
    const int left = c.num_layers - first, later = stages - s - 1;
    int n = s + 1 == stages ? left : std::min(most, left - later);
    if (n > most) return std::nullopt;  // the last stage would take more than its share
    auto fits = [&](int count) {
      return caps[s] == 0 || stage_bytes(c, mode, lora, base, compute,
                                         {first, first + count, in_flight[s]}) <= caps[s];
    };
    if (s + 1 == stages) {
      if (!fits(n)) return std::nullopt;
    } else {
      while (n > 0 && !fits(n)) --n;  // plans grow with their layers
      if (n == 0) return std::nullopt;
    }
    out.push_back({first, first + n, in_flight[s]});
    first += n;
  }
  return out;
}

}  // namespace

std::vector<RunShape::Stage> partition_stages(const ModelConfig& c, TrainMode mode,
                                              const LoraConfig& lora, const RunShape& base,
                                              DType compute, const std::vector<size_t>& caps,
                                              const std::vector<int>& in_flight) {
  const int stages = static_cast<int>(caps.size());
  if (stages < 1 || in_flight.size() != caps.size())
    throw_internal_error("plan", "partition_stages: {} caps, {} in-flight counts", caps.size(),
                         in_flight.size());
  if (stages > c.num_layers)
    throw_input_error("plan", "{} pipeline stages for a {}-layer model: at most one per layer",
                      stages, c.num_layers);
  const int even = (c.num_layers + stages - 1) / stages;
  // The largest stage has at least the even share; find the smallest size that fits.
  for (int most = even; most <= c.num_layers - stages + 1; ++most)
    if (auto split = greedy_split(c, mode, lora, base, compute, caps, in_flight, most))
      return *split;
  // Nothing fits: say what the even split's stages need.
  std::string needs;
  int first = 0;
  for (int s = 0; s < stages; ++s) {
    const int n = c.num_layers / stages + (s < c.num_layers % stages ? 1 : 0);
    const size_t bytes =
        stage_bytes(c, mode, lora, base, compute, {first, first + n, in_flight[s]});
    needs += fmt::format("\n  stage {}: layers {}-{}, {} in flight: {}{}", s, first, first + n - 1,
                         in_flight[s], format_bytes(bytes),
                         caps[s] ? fmt::format(" (cap {})", format_bytes(caps[s])) : "");
    first += n;
  }
  throw Error("plan",
              fmt::format("no split of the {} layers over {} pipeline stages fits the caps; an "
                          "even split needs:{}",
                          c.num_layers, stages, needs),
              ExitCode::kNoFit);
}

}  // namespace fitlm
