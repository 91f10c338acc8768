// `fitlm plan`: the allocation plan of a training job — the same plan the runtime allocates —
// printed before a byte is allocated, and whether it fits a memory budget.
#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/quantize_option.h"
#include "fitlm/cli/recompute_options.h"
#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"
#include "fitlm/dist/gpu_comm_memory.h"
#include "fitlm/dist/pipeline_schedule.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/model/presets.h"
#include "fitlm/model/stage_partition.h"
#include "fitlm/model/transformer.h"
#include "fitlm/plan/gpu_catalog.h"
#include "fitlm/plan/report.h"
#include "fitlm/plan/search.h"

namespace fitlm::cli {
namespace {

struct PlanOptions {
  std::string model, arch, mode = "lora", dtype = "bf16", max_memory;
  RecomputeChoice recompute;
  QuantizeOption quantize;
  int64_t seq = 2048, micro_batch = 1, lora_r = 16, logits_chunk = 1024;
  int nproc = 1;
  int micro_batches = 0;  // pipeline: per optimizer step (0: 4 × nproc)
  std::string strategy = "ddp";
  std::vector<std::string> offload;
  bool verbose = false;
  // --gpus: search for the configuration instead of planning one.
  std::string gpus, gpu_file, host_memory;
  int64_t global_batch = 0;
  int top = 10, max_micro_batch = 16;
  bool allow_quantize = false, json = false;
  bool micro_batch_given = false;  // --micro-batch on the command line: fixed in the search
};

// `fitlm plan --gpus SPEC`: the search over configurations (plan/search.h).
int run_search(const PlanOptions& o) {
  if (o.model.empty() == o.arch.empty())
    throw_input_error("plan", "give exactly one of --model DIR or --arch PRESET");
  if (o.mode == "eval")
    throw_input_error("plan", "--gpus plans training: --mode lora, qlora or full");
  plan::GpuCatalog catalog;
  if (!o.gpu_file.empty()) catalog.add_file(o.gpu_file);
  plan::SearchRequest r;
  r.config = o.model.empty() ? preset_config(o.arch) : read_model_config(o.model);
  r.mode = o.mode == "full"                                ? plan::FineTune::kFull
           : o.mode == "qlora" || !o.quantize.type.empty() ? plan::FineTune::kQlora
                                                           : plan::FineTune::kLora;
  r.seq = o.seq;
  r.global_batch = o.global_batch;
  r.gpus = plan::parse_gpu_set(o.gpus, catalog);
  r.host_memory =
      o.host_memory.empty() ? plan::machine_memory_bytes() : parse_byte_size(o.host_memory);
  r.allow_quantize = o.allow_quantize;
  r.lora_r = static_cast<int>(o.lora_r);
  r.logits_chunk = o.logits_chunk;
  r.max_micro_batch = o.max_micro_batch;
  if (o.micro_batch_given) r.fixed.micro_batch = static_cast<int>(o.micro_batch);
  const plan::SearchResult result = plan::search(r);
  if (o.json)
    fmt::print("{}\n", plan::search_json(r, result, o.top).dump(2));
  else
    fmt::print("{}", plan::format_search(r, result, o.top));
  return result.fitting.empty() ? static_cast<int>(ExitCode::kNoFit) : 0;
}

// The shape rank r of `nproc` runs under `strategy` (dist/strategy.h): ddp replicates the whole
// plan; zero2 keeps the rank's block of every master and AdamW moment; zero3 also the rank's
// bytes of every layer's frozen weights.
RunShape rank_shape(RunShape shape, const PlanOptions& o, int rank) {
  if (o.nproc == 1 || o.strategy == "ddp") return shape;
  shape.optimizer_shard = ShardSpec{rank, o.nproc};
  if (o.strategy == "zero3") shape.layer_shard = ShardSpec{rank, o.nproc};
  return shape;
}

// --max-memory for a pipeline: one cap per stage, or one for all ("15GiB,15GiB" or "15GiB").
std::vector<size_t> stage_caps(const std::string& spec, int stages) {
  std::vector<size_t> caps;
  if (spec.empty()) return std::vector<size_t>(static_cast<size_t>(stages), 0);
  for (size_t b = 0; b <= spec.size();) {
    const size_t e = std::min(spec.find(',', b), spec.size());
    caps.push_back(parse_byte_size(spec.substr(b, e - b)));
    b = e + 1;
  }
  if (caps.size() == 1) caps.resize(static_cast<size_t>(stages), caps.front());
  if (caps.size() != static_cast<size_t>(stages))
    throw_input_error("plan",
                      "--max-memory gives {} caps for {} pipeline stages: give one, or one "
                      "per stage",
                      caps.size(), stages);
  return caps;
}

// strategy pipeline: the layers split over --nproc stages so that each fits its cap, each
// stage's plan with as many activation slots as the 1F1B schedule keeps in flight on it.
int run_pipeline_plan(const PlanOptions& o, const ModelConfig& c, TrainMode mode,
                      const LoraConfig& lora, const RunShape& shape, DType dtype) {
  const int stages = o.nproc;
  const int micro = o.micro_batches > 0 ? o.micro_batches : 4 * stages;
  const std::vector<size_t> caps = stage_caps(o.max_memory, stages);
  const std::vector<int> in_flight = dist::one_f_one_b_in_flight_per_stage(stages, micro);
  const std::vector<RunShape::Stage> split =
      partition_stages(c, mode, lora, shape, dtype, caps, in_flight);
  fmt::print(
      "{} ({} parameters), {} {}{}, {} tokens per micro-batch, recompute {}\n"
      "pipeline over {} stages, {} micro-batches per step in a 1F1B schedule (bubble {:.0f}% of "
      "the step):\n",
      c.architecture_name, c.parameter_count(), o.mode, o.dtype,
      shape.base4 ? fmt::format(" on a {} base", quant::quant_type_name(shape.base4->type)) : "",
      shape.max_tokens, describe_recompute(c, shape), stages, micro,
      100.0 * (stages - 1) / (micro + stages - 1));
  int over = 0;
  for (int s = 0; s < stages; ++s) {
    RunShape st = shape;
    st.stage = split[static_cast<size_t>(s)];
    const AllocationPlan plan = plan_transformer(c, mode, lora, st, dtype);
    const AllocationPlan host = plan_transformer_host(c, mode, lora, st, dtype);
    const size_t cap = caps[static_cast<size_t>(s)];
    fmt::print("stage {}: layers {}-{}{}{}, {} micro-batch{} in flight: {}{}{}\n", s,
               st.stage->first_layer, st.stage->end_layer - 1, s == 0 ? " + embedding" : "",
               s + 1 == stages ? " + final norm, lm_head, loss" : "", st.stage->in_flight,
               st.stage->in_flight == 1 ? "" : "es", format_bytes(plan.total_bytes()),
               host.total_bytes()
                   ? fmt::format(" + {} pinned host", format_bytes(host.total_bytes()))
                   : "",
               cap ? fmt::format(" (cap {})", format_bytes(cap)) : "");
    if (o.verbose) fmt::print("{}", plan.summary());
    over += cap && plan.total_bytes() > cap;
  }
  return over ? static_cast<int>(ExitCode::kNoFit) : 0;
}

int run_plan(const PlanOptions& o) {
  if (!o.gpus.empty()) return run_search(o);
  if (o.mode == "qlora")
    throw_input_error("plan",
                      "--mode qlora is for the search (--gpus); plan one QLoRA job with "
                      "--mode lora --quantize nf4");
  if (o.model.empty() == o.arch.empty())
    throw_input_error("plan", "give exactly one of --model DIR or --arch PRESET");
  const ModelConfig c = o.model.empty() ? preset_config(o.arch) : read_model_config(o.model);
  const TrainMode mode = o.mode == "full"   ? TrainMode::kFull
                         : o.mode == "lora" ? TrainMode::kLora
                                            : TrainMode::kFrozen;
  LoraConfig lora;
  lora.r = static_cast<int>(o.lora_r);
  RunShape shape;
  shape.max_tokens = o.seq * o.micro_batch;
  shape.logits_chunk = o.logits_chunk;
  shape.with_optimizer = mode != TrainMode::kFrozen;
  for (const std::string& what : o.offload) {
    shape.offload_layers |= what == "weights";
    shape.offload_optimizer |= what == "optimizer";
    shape.offload_activations |= what == "activations";
  }
  shape.base4 =
      o.model.empty() ? o.quantize.layout() : base4_layout(c, o.model, o.quantize.request());
  const DType dtype = o.dtype == "f32"   ? DType::kF32
                      : o.dtype == "f16" ? DType::kF16
                                         : DType::kBF16;
  if (o.nproc < 1) throw_input_error("plan", "--nproc must be at least 1, found {}", o.nproc);
  if (o.strategy == "pipeline" && o.recompute.policy == "auto")
    throw_input_error("plan",
                      "--recompute auto is not built for pipeline stages: give full or "
                      "none");
  if (o.strategy == "pipeline")
    return run_pipeline_plan(o, c, mode, lora,
                             apply_recompute(o.recompute, shape, c, mode, lora, dtype, 0), dtype);
  const size_t cap = o.max_memory.empty() ? 0 : parse_byte_size(o.max_memory);
  // Recompute is chosen for rank 0's plan, the largest: later ranks' blocks are never bigger.
  shape = apply_recompute(o.recompute, rank_shape(shape, o, 0), c, mode, lora, dtype, cap);
  const AllocationPlan plan = plan_transformer(c, mode, lora, shape, dtype);
  fmt::print(
      "{} ({} parameters), {} {}{}, {} tokens per micro-batch, recompute {}\n", c.architecture_name,
      c.parameter_count(), o.mode, o.dtype,
      shape.base4 ? fmt::format(" on a {} base", quant::quant_type_name(shape.base4->type)) : "",
      shape.max_tokens, describe_recompute(c, shape));
  if (o.nproc > 1)
    fmt::print("{} ranks, strategy {}: {}; rank 0's plan:\n", o.nproc, o.strategy,
               o.strategy == "ddp"     ? "every rank holds this whole plan"
               : o.strategy == "zero2" ? "each keeps its block of the masters and AdamW moments"
                                       : "each keeps its block of the masters, AdamW moments "
                                         "and every layer's frozen weights");
  fmt::print("{}", plan.summary());
  const AllocationPlan host = plan_transformer_host(c, mode, lora, shape, dtype);
  if (host.total_bytes() > 0) {
    fmt::print(
        "host memory (pinned, per rank): {}; mapping it takes {} of each GPU's memory "
        "(CUDA) besides the arena\n",
        format_bytes(host.total_bytes()),
        format_bytes(cuda_host_mapping_bytes(host.total_bytes())));
    for (const auto& [group, bytes] : host.group_totals())
      fmt::print("  {:<14} {:>12}\n", group, format_bytes(bytes));
  }
  if (o.nproc > 1 && dtype != DType::kF32)
    fmt::print(
        "  + GPU comm staging  {}  (per GPU, outside the arena; NCCL's own buffers not "
        "counted)\n",
        format_bytes(dist::gpu_comm_reserved_bytes(static_cast<int>(o.nproc))));
  if (o.nproc > 1 && o.strategy != "ddp")
    for (int r = 1; r < o.nproc; ++r)
      fmt::print(
          "rank {}: {}\n", r,
          format_bytes(
              plan_transformer(c, mode, lora, rank_shape(shape, o, r), dtype).total_bytes()));
  if (o.verbose)
    for (const BufferSpec& b : plan.buffers())
      fmt::print("  {:>12}  {:<10} {:<6} {:<16} {:<12} {}\n", b.offset, b.group,
                 dtype_name(b.dtype), b.shape.str(), plan.describe(b.lifetime), b.name);
  if (!o.max_memory.empty()) {
    if (plan.total_bytes() > cap) {
      fmt::print("does NOT fit in {} (over by {})\n", format_bytes(cap),
                 format_bytes(plan.total_bytes() - cap));
      return static_cast<int>(ExitCode::kNoFit);
    }
    fmt::print("fits in {} ({} to spare)\n", format_bytes(cap),
               format_bytes(cap - plan.total_bytes()));
  }
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  app.add_option("--model", o->model, "Hugging Face model directory");
  app.add_option("--arch", o->arch, "Architecture preset instead of a directory (see bench)");
  app.add_option("--mode", o->mode,
                 "lora, full or eval; with --gpus also qlora (LoRA on an NF4 base)")
      ->check(CLI::IsMember({"lora", "qlora", "full", "eval"}))
      ->capture_default_str();
  add_recompute_options(app, o->recompute);
  app.add_option("--dtype", o->dtype, "Storage dtype: bf16, f16 or f32")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_option("--seq", o->seq, "Sequence length")->capture_default_str();
  CLI::Option* micro_batch =
      app.add_option("--micro-batch", o->micro_batch,
                     "Sequences per micro-batch (with --gpus: only this one is tried)")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
  app.add_option("--lora-r", o->lora_r, "LoRA rank")->capture_default_str();
  app.add_option("--logits-chunk", o->logits_chunk, "Rows of logits per loss chunk")
      ->capture_default_str();
  app.add_option("--max-memory", o->max_memory,
                 "Budget per GPU, e.g. 15GiB: exit 3 when rank 0's plan is over it (pipeline: "
                 "one per stage, 15GiB,23GiB, or one for all; the layers are split to fit)");
  app.add_option("--nproc", o->nproc, "Ranks (GPUs) of the job: the plan is per rank")
      ->capture_default_str();
  app.add_option("--strategy", o->strategy,
                 "ddp (replicated), zero2 (masters and AdamW moments sharded over the ranks) or "
                 "zero3 (the frozen base's layers sharded too: LoRA, QLoRA), or pipeline (the "
                 "layers split into --nproc stages, one per GPU, each within its --max-memory "
                 "cap)")
      ->check(CLI::IsMember({"ddp", "zero2", "zero3", "pipeline"}))
      ->capture_default_str();
  app.add_option("--micro-batches", o->micro_batches,
                 "Pipeline: micro-batches per optimizer step (default 4 × --nproc); each stage "
                 "keeps as many in flight as the 1F1B schedule gives it");
  app.add_option("--offload", o->offload,
                 "What to keep in host memory, comma-separated: weights (every layer's frozen "
                 "weights, copied in before it runs; LoRA, QLoRA), optimizer (the f32 masters "
                 "and AdamW moments), activations (every layer's input, saved for backward)")
      ->delimiter(',')
      ->check(CLI::IsMember({"weights", "optimizer", "activations"}));
  o->quantize.add_to(app);
  app.add_option("--gpus", o->gpus,
                 "Search instead of planning one job: the GPUs to train on, e.g. 2xA5000, "
                 "4xRTX3090, \"A5000,A5000\", H200 or 2x16GiB (a bare size: a generic, slow "
                 "GPU). Tries single/ddp/zero2/zero3/pipeline, micro-batches 1.."
                 "--max-micro-batch, recompute none/full, every offload choice, and NF4 with "
                 "--allow-quantize; prints those that fit, fastest first (predicted tok/s), why "
                 "the others do not, and what would make it fit; exit 3 when nothing fits");
  app.add_option("--gpu-file", o->gpu_file,
                 "With --gpus: a JSON file of more GPUs, [{\"name\": \"X\", \"memory\": "
                 "\"22GiB\", \"tflops\": 100, \"bf16\": true, \"link_gbps\": 32, "
                 "\"pcie_gbps\": 32}] (replaces a built-in GPU of the same name)");
  app.add_option("--global-batch", o->global_batch,
                 "With --gpus: sequences per optimizer step to keep (micro-batch × accumulation "
                 "× data-parallel ranks); default: no accumulation (pipeline: 4 micro-batches "
                 "per stage)");
  app.add_flag("--allow-quantize", o->allow_quantize,
               "With --gpus and --mode lora: also try QLoRA (an NF4 base)");
  app.add_option("--host-memory", o->host_memory,
                 "With --gpus: host memory the job may pin, e.g. 64GiB (default: the machine's)");
  app.add_option("--max-micro-batch", o->max_micro_batch,
                 "With --gpus: the largest micro-batch tried (powers of two)")
      ->capture_default_str();
  app.add_flag("--json", o->json, "With --gpus: print the search as JSON");
  app.add_option("--top", o->top, "With --gpus: how many fitting candidates to list (0: all)")
      ->capture_default_str();
  app.add_flag("--buffers", o->verbose,
               "List every buffer with its offset and the phases it lives in");
  return [o, micro_batch] {
    o->micro_batch_given = micro_batch->count() > 0;
    return run_plan(*o);
  };
}

CommandRegistration reg{"plan",
                        "Print the memory plan of a job and check it against a budget, or with "
                        "--gpus choose the configuration for a set of GPUs",
                        setup};

}  // namespace
}  // namespace fitlm::cli
