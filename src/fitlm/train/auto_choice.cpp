#include "fitlm/train/auto_choice.h"

#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/plan/gpu_catalog.h"
#include "fitlm/plan/report.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "train";

// The published rates of this GPU model when the catalog knows it (they shape the choice only
// through the cost model's ratios: every rank runs the same kind), else generic ones.
plan::GpuSpec rank_gpu(const AutoChoiceJob& job, size_t cap) {
  plan::GpuSpec g = plan::anonymous_gpu(cap);
  if (job.cpu) {
    g.name = "cpu";
    g.bf16 = false;
    return g;
  }
  const plan::GpuCatalog catalog;
  if (const plan::GpuSpec* known = catalog.find_in_text(job.device_description)) g = *known;
  g.memory_bytes = cap;
  return g;
}

}  // namespace

bool wants_auto_choice(const TrainConfig& c, int world) {
  return c.micro_batch_auto || (c.strategy == "auto" && world > 1 && c.max_memory > 0);
}

plan::SearchRequest auto_search_request(const TrainConfig& c, const AutoChoiceJob& job) {
  plan::SearchRequest r;
  r.config = job.model;
  r.mode = job.mode == TrainMode::kFull ? plan::FineTune::kFull
           : job.base4                  ? plan::FineTune::kQlora
                                        : plan::FineTune::kLora;
  r.seq = c.sequence_len;
  // The sequences of an optimizer step are what is trained, so every candidate keeps them: the
  // config's global_batch_size, or with a fixed micro-batch what data parallel over the ranks
  // steps with (a pipeline then accumulates world × as many micro-batches).
  r.global_batch = c.global_batch_size;
  if (!c.micro_batch_auto)
    r.global_batch = c.micro_batch_size * c.gradient_accumulation_steps * job.world;
  for (int g = 0; g < job.world; ++g) {
    const std::vector<size_t>& per_gpu = c.max_memory_per_gpu;
    const size_t cap =
        per_gpu.size() > 1 ? per_gpu[static_cast<size_t>(g) % per_gpu.size()] : c.max_memory;
    r.gpus.push_back(rank_gpu(job, cap));
  }
  r.host_memory = plan::machine_memory_bytes();
  r.lora_r = job.lora.r;
  r.suggest = true;
  // Micro-batches up to what the validation allows for this sequence length, at most 64.
  r.max_micro_batch =
      c.micro_batch_auto
          ? static_cast<int>(std::min<int64_t>(64, (int64_t{1} << 26) / c.sequence_len))
          : 1;
  plan::SearchRequest::Fixed& f = r.fixed;
  if (c.strategy != "auto") f.strategies = {c.strategy};
  if (!c.micro_batch_auto) f.micro_batch = static_cast<int>(c.micro_batch_size);
  if (c.global_batch_size == 0 && c.gradient_accumulation_set)
    f.accumulation = static_cast<int>(c.gradient_accumulation_steps);
  if (!c.gradient_checkpointing_auto) f.recompute = c.gradient_checkpointing;
  // A pipeline's stages need one recompute count each: gradient_checkpointing: auto is not built
  // for them, so a pipeline candidate recomputes all layers or none (validate_train_config).
  f.offload_weights = c.offload_weights;
  f.offload_optimizer = c.offload_optimizer;
  f.offload_activations = c.offload_activations;
  f.dtype = job.dtype;
  f.lora = job.lora;
  f.base4 = job.base4;
  f.fixed_device_bytes = job.reserved_bytes;
  f.maps_host_memory = !job.cpu;
  return r;
}

plan::Candidate choose_auto(const TrainConfig& c, const AutoChoiceJob& job) {
  const plan::SearchRequest r = auto_search_request(c, job);
  const plan::SearchResult result = plan::search(r);
  if (result.fitting.empty()) {
    std::string why;
    for (const std::string& s : result.suggestions) why += "\n  " + s;
    throw Error(kComponent,
                fmt::format("{}: no configuration of {} fits max_memory {} per GPU on {} rank(s){}",
                            c.micro_batch_auto ? "micro_batch_size: auto" : "strategy: auto",
                            job.model.architecture_name, format_bytes(c.max_memory), job.world,
                            why.empty() ? "" : "; what would make it fit:" + why),
                ExitCode::kNoFit);
  }
  const plan::Candidate& best = result.fitting.front();
  // The fastest candidate the caps exclude, if it would have been faster: what the cap costs.
  const plan::Candidate* faster = nullptr;
  for (const plan::Candidate& k : result.excluded)
    if (k.status == plan::Candidate::Status::kOverMemory && k.tokens_per_s > best.tokens_per_s &&
        (!faster || k.tokens_per_s > faster->tokens_per_s))
      faster = &k;
  log::info(
      "{} took {}: {} per GPU, {:.0f} tok/s predicted ({} of {} candidates fit){}",
      c.micro_batch_auto && c.strategy == "auto" ? "strategy/micro_batch_size auto"
      : c.micro_batch_auto                       ? "micro_batch_size auto"
                                                 : "strategy auto",
      best.describe(), format_bytes(best.peak_bytes()), best.tokens_per_s, result.fitting.size(),
      result.fitting.size() + result.excluded.size(),
      faster ? fmt::format("; faster but over the cap: {} ({})", faster->describe(), faster->reason)
             : "");
  return best;
}

void apply_auto_choice(const plan::Candidate& k, TrainConfig& c) {
  if (k.strategy != "single") c.strategy = k.strategy;
  c.micro_batch_size = k.micro_batch;
  c.gradient_accumulation_steps = k.accumulation;
  c.gradient_accumulation_set = true;
  if (!k.recompute) {
    c.gradient_checkpointing = c.gradient_checkpointing_auto = false;
  } else if (c.gradient_checkpointing_auto && k.strategy == "pipeline") {
    c.gradient_checkpointing_auto = false;  // every layer of every stage (see above)
  }
  // gradient_checkpointing: auto with recompute chosen keeps auto: the runtime then recomputes
  // the fewest layers that fit, which is at least as fast as all of them.
}

}  // namespace fitlm::train
