#include "fitlm/plan/report.h"

#include <unistd.h>

#include <cmath>
#include <map>

#include "fitlm/core/allocation_plan.h"

namespace fitlm::plan {
namespace {

const char* mode_name(FineTune m) {
  return m == FineTune::kFull ? "full" : m == FineTune::kQlora ? "qlora" : "lora";
}

std::string gpus_line(const std::vector<GpuSpec>& gpus) {
  std::string s;
  for (size_t i = 0; i < gpus.size(); ++i) {
    size_t j = i;
    while (j + 1 < gpus.size() && gpus[j + 1].name == gpus[i].name) ++j;
    s += fmt::format("{}{}×{} ({} usable, {:.0f} TFLOP/s published, {})", s.empty() ? "" : ", ",
                     j - i + 1, gpus[i].name, format_bytes(gpus[i].memory_bytes),
                     gpus[i].tensor_tflops, gpus[i].link);
    i = j;
  }
  return s;
}

// Exclusions grouped: over memory by strategy (the closest of each), refusals by message.
std::string exclusion_groups(const SearchResult& result) {
  std::string out;
  std::map<std::string, std::pair<int, const Candidate*>> over;
  std::map<std::string, int> refused;
  for (const Candidate& k : result.excluded) {
    if (k.status == Candidate::Status::kRefused) {
      ++refused[k.reason];
    } else {
      const std::string key =
          (k.status == Candidate::Status::kOverHost ? "over host memory: " : "over GPU memory: ") +
          k.strategy;
      auto& [n, best] = over[key];
      ++n;
      if (!best || (k.status == Candidate::Status::kOverMemory ? k.over_ratio < best->over_ratio
                                                               : k.over_bytes < best->over_bytes))
        best = &k;
    }
  }
  for (const auto& [key, v] : over)
    out += fmt::format("  {} ({} candidates); closest: {}: {}\n", key, v.first,
                       v.second->describe(), v.second->reason);
  for (const auto& [msg, n] : refused)
    out += fmt::format("  refused by the plan ({} candidates): {}\n", n, msg);
  return out;
}

nlohmann::json candidate_json(const Candidate& k) {
  nlohmann::json j = {
      {"strategy", k.strategy},         {"micro_batch", k.micro_batch},
      {"accumulation", k.accumulation}, {"recompute", k.recompute ? "full" : "none"},
      {"offload", k.offload()},         {"quantize", k.nf4 ? "nf4" : "none"},
      {"dtype", dtype_name(k.dtype)}};
  if (k.status == Candidate::Status::kRefused) {
    j["status"] = "refused";
    j["reason"] = k.reason;
    return j;
  }
  j["status"] = k.status == Candidate::Status::kFits         ? "fits"
                : k.status == Candidate::Status::kOverMemory ? "over_gpu_memory"
                                                             : "over_host_memory";
  if (k.status != Candidate::Status::kFits) j["reason"] = k.reason;
  j["device_bytes"] = k.device_bytes;
  j["arena_bytes"] = k.arena_bytes;
  j["peak_bytes"] = k.peak_bytes();
  j["host_bytes"] = k.host_bytes;
  j["tokens_per_step"] = k.tokens_per_step;
  j["tokens_per_s"] = std::round(k.tokens_per_s * 10) / 10;
  if (!k.stages.empty()) {
    j["stages"] = nlohmann::json::array();
    for (const auto& s : k.stages)
      j["stages"].push_back(
          {{"first_layer", s.first_layer}, {"end_layer", s.end_layer}, {"in_flight", s.in_flight}});
  }
  return j;
}

}  // namespace

size_t machine_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
}

std::string format_search(const SearchRequest& r, const SearchResult& result, int top) {
  std::string out =
      fmt::format("{} ({} parameters), {}, seq {}{}, on {}; host memory {}\n",
                  r.config.architecture_name, r.config.parameter_count(), mode_name(r.mode), r.seq,
                  r.global_batch ? fmt::format(", {} sequences per step", r.global_batch) : "",
                  gpus_line(r.gpus), format_bytes(r.host_memory));
  const size_t total = result.fitting.size() + result.excluded.size();
  if (!result.fitting.empty()) {
    out += fmt::format("{} of {} candidates fit; best first (tok/s predicted, not measured):\n",
                       result.fitting.size(), total);
    out += fmt::format("  {:>3}  {:<9} {:>9}  {:<9} {:<30} {:<5} {:>11} {:>11} {:>9}\n", "#",
                       "strategy", "mb × acc", "recompute", "offload", "quant", "GPU peak", "host",
                       "tok/s");
    const size_t n =
        top > 0 ? std::min(result.fitting.size(), static_cast<size_t>(top)) : result.fitting.size();
    for (size_t i = 0; i < n; ++i) {
      const Candidate& k = result.fitting[i];
      out += fmt::format("  {:>3}  {:<9} {:>9}  {:<9} {:<30} {:<5} {:>11} {:>11} {:>9.0f}\n", i + 1,
                         k.strategy, fmt::format("{} × {}", k.micro_batch, k.accumulation),
                         k.recompute ? "full" : "none", k.offload(), k.nf4 ? "nf4" : "none",
                         format_bytes(k.peak_bytes()), format_bytes(k.host_bytes), k.tokens_per_s);
    }
    if (n < result.fitting.size())
      out += fmt::format("  ... {} more that fit (--top 0 lists all)\n", result.fitting.size() - n);
    const Candidate& best = result.fitting.front();
    if (best.strategy == "pipeline") {
      out += "  #1's stages:";
      for (const auto& s : best.stages)
        out += fmt::format(" [{}-{}]", s.first_layer, s.end_layer - 1);
      out += "\n";
    }
  } else {
    out += fmt::format("does NOT fit: none of {} candidates fits these GPUs\n", total);
  }
  if (!result.excluded.empty()) {
    out += fmt::format("excluded ({}):\n", result.excluded.size());
    out += exclusion_groups(result);
  }
  if (!result.suggestions.empty()) {
    out += "what would make it fit:\n";
    for (const std::string& s : result.suggestions) out += "  - " + s + "\n";
  }
  return out;
}

nlohmann::json search_json(const SearchRequest& r, const SearchResult& result, int top) {
  nlohmann::json j;
  j["model"] = r.config.architecture_name;
  j["parameters"] = r.config.parameter_count();
  j["mode"] = mode_name(r.mode);
  j["seq"] = r.seq;
  j["global_batch"] = r.global_batch;
  j["host_memory"] = r.host_memory;
  j["gpus"] = nlohmann::json::array();
  for (const GpuSpec& g : r.gpus)
    j["gpus"].push_back({{"name", g.name},
                         {"memory_bytes", g.memory_bytes},
                         {"tflops", g.tensor_tflops},
                         {"link", g.link},
                         {"link_gbps", g.link_gbps}});
  j["fits"] = !result.fitting.empty();
  j["candidates"] = nlohmann::json::array();
  const size_t n =
      top > 0 ? std::min(result.fitting.size(), static_cast<size_t>(top)) : result.fitting.size();
  for (size_t i = 0; i < n; ++i) j["candidates"].push_back(candidate_json(result.fitting[i]));
  j["excluded"] = nlohmann::json::array();
  for (const Candidate& k : result.excluded) j["excluded"].push_back(candidate_json(k));
  j["suggestions"] = result.suggestions;
  return j;
}

}  // namespace fitlm::plan
