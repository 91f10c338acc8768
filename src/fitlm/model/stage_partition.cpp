#include "fitlm/model/stage_partition.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

size_t stage_bytes(const ModelConfig& c, TrainMode mode, const LoraConfig& lora, RunShape shape,
                   DType compute, RunShape::Stage stage) {
  shape.stage = stage;
  return plan_transformer(c, mode, lora, shape, compute).total_bytes();
}

// The most layers stage s can take starting at layer `first`, by binary search over the count
// (plans grow with their layers), remembered per (stage, first): the split search below asks the
// same question for every largest-stage size it tries, and each answer costs whole plans (a
// 70B stage's plan is tens of milliseconds; the linear scan this replaces made the pipeline
// candidates of `fitlm plan --gpus` take minutes).
class StageFit {
 public:
  StageFit(const ModelConfig& c, TrainMode mode, const LoraConfig& lora, const RunShape& base,
           DType compute, const std::vector<size_t>& caps, const std::vector<int>& in_flight)
      : c_(c),
        mode_(mode),
        lora_(lora),
        base_(base),
        compute_(compute),
        caps_(caps),
        in_flight_(in_flight),
        most_(caps.size(), std::vector<int>(static_cast<size_t>(c.num_layers) + 1, -1)) {}

  // 0 when not even one layer fits; every layer left when the stage has no cap.
  int most_layers(int s, int first) {
    int& memo = most_[static_cast<size_t>(s)][static_cast<size_t>(first)];
    if (memo >= 0) return memo;
    int lo = 0, hi = c_.num_layers - first;  // fits(lo) holds (or lo is 0); find the largest
    if (caps_[s] == 0) return memo = hi;
    while (lo < hi) {
      const int mid = lo + (hi - lo + 1) / 2;
      if (fits(s, first, mid))
        lo = mid;
      else
        hi = mid - 1;
    }
    return memo = lo;
  }

 private:
  bool fits(int s, int first, int count) const {
    return stage_bytes(c_, mode_, lora_, base_, compute_, {first, first + count, in_flight_[s]}) <=
           caps_[s];
  }

  const ModelConfig& c_;
  TrainMode mode_;
  const LoraConfig& lora_;
  const RunShape& base_;
  DType compute_;
  const std::vector<size_t>& caps_;
  const std::vector<int>& in_flight_;
  std::vector<std::vector<int>> most_;  // [stage][first layer]; -1: not asked yet
};

// The split with at most `most` layers per stage that gives each stage as many layers as fit
// (leaving at least one for every later stage), or nullopt when some stage cannot take its
// share.
std::optional<std::vector<RunShape::Stage>> greedy_split(StageFit& fit, int num_layers,
                                                         const std::vector<int>& in_flight,
                                                         int most) {
  const int stages = static_cast<int>(in_flight.size());
  std::vector<RunShape::Stage> out;
  int first = 0;
  for (int s = 0; s < stages; ++s) {
    const int left = num_layers - first, later = stages - s - 1;
    if (s + 1 == stages) {
      if (left > most || fit.most_layers(s, first) < left) return std::nullopt;
      out.push_back({first, num_layers, in_flight[s]});
      break;
    }
    const int n = std::min({most, left - later, fit.most_layers(s, first)});
    if (n <= 0) return std::nullopt;
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
  StageFit fit(c, mode, lora, base, compute, caps, in_flight);
  for (int most = even; most <= c.num_layers - stages + 1; ++most)
    if (auto split = greedy_split(fit, c.num_layers, in_flight, most)) return *split;
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
