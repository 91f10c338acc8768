#include "fitlm/train/train_setup.h"

#include <cmath>

#include "fitlm/backend/registry/make_backend.h"
#include "fitlm/backend/registry/make_comm_for.h"
#include "fitlm/core/allocation_plan.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/dist/launch_env.h"
#include "fitlm/dist/make_comm.h"
#include "fitlm/dist/pipeline.h"
#include "fitlm/dist/pipeline_schedule.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/model/stage_partition.h"
#include "fitlm/text/dataset_split.h"
#include "fitlm/train/auto_choice.h"
#include "fitlm/train/optimizer.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "train";
// Independent random streams derived from the one `seed` of the config.
constexpr uint64_t kLoraInitStream = 0x10A;

LoraConfig lora_config_of(const TrainConfig& c) {
  LoraConfig lc;
  lc.r = c.lora_r;
  lc.alpha = static_cast<float>(c.lora_alpha);
  lc.dropout = static_cast<float>(c.lora_dropout);
  lc.use_rslora = c.use_rslora;
  lc.targets = parse_lora_targets(c.lora_target_modules);
  lc.moe_targets = parse_moe_lora_targets(c.lora_target_modules);
  return lc;
}

// The adapter's shape: the config's, or that of the PEFT adapter training continues.
LoraConfig job_lora_config(const TrainConfig& c) {
  if (c.adapter == AdapterKind::kLora && !c.lora_model_dir.empty())
    return read_peft_config(c.lora_model_dir);  // the adapter's shape wins over the config's
  return lora_config_of(c);
}

// The 4-bit base's layout: the checkpoint's, or the quantization load_in_4bit asks for.
std::optional<Base4Layout> job_base4(const TrainJob& job) {
  const TrainConfig& c = job.config;
  std::optional<QuantizeRequest> quantize;
  if (c.load_in_4bit) {
    quantize = QuantizeRequest{};
    quantize->type =
        c.bnb_4bit_quant_type == "fp4" ? quant::QuantType::kFP4 : quant::QuantType::kNF4;
    quantize->double_quant = c.bnb_4bit_use_double_quant;
  }
  return base4_layout(job.model_config, c.base_model, quantize);
}

std::optional<std::filesystem::path> resume_dir_of(const TrainConfig& c) {
  if (c.resume_from_checkpoint.empty()) return std::nullopt;
  if (c.resume_from_checkpoint == "latest" || c.resume_from_checkpoint == "true") {
    auto latest = latest_checkpoint(c.output_dir);
    if (!latest)
      log::warn("resume: no checkpoint in {}; starting from step 0", c.output_dir.string());
    return latest;
  }
  const std::filesystem::path dir = c.resume_from_checkpoint;
  if (!paths::exists(dir / "trainer_state.json", kComponent))
    throw_input_error(kComponent,
                      "resume: {} is not a checkpoint directory (no "
                      "trainer_state.json)",
                      clip_path(dir.string()));
  return dir;
}

// The storage dtype the config asks for: bf16/fp16 select it on CUDA; neither keeps the
// backend's default (bf16, or FITLM_CUDA_DTYPE). The CPU backend is f32 whatever is asked.
// Several ranks on GPUs: rank r of a node takes its local_rank-th GPU, whatever `backend` names.
std::unique_ptr<Backend> make_train_backend(const TrainConfig& c, const dist::RankEnv& env) {
  std::string name = c.backend;
  if (env.world_size > 1 && name.rfind("cuda", 0) == 0) {
    if (name != "cuda")
      log::warn("backend: {} with {} ranks: each rank uses GPU local_rank (cuda:{} here)", name,
                env.world_size, env.local_rank);
    name = fmt::format("cuda:{}", env.local_rank);
  }
  std::unique_ptr<Backend> b = c.bf16   ? make_backend(name, DType::kBF16)
                               : c.fp16 ? make_backend(name, DType::kF16)
                                        : make_backend(name);
  if (b->device().kind == DeviceKind::kCPU) {
    if (c.bf16) log::info("note: bf16 ignored on the CPU backend (it computes and stores fp32)");
    if (c.fp16)
      log::info(
          "note: fp16 on the CPU backend: storage stays fp32, but loss scaling is on as it "
          "would be on a GPU");
  }
  return b;
}

// Loss scaling is on with `loss_scale: dynamic | <number>`, or by default (`loss_scale` unset)
// when fp16 is: the config's fp16, or an f16 CUDA backend chosen by FITLM_CUDA_DTYPE.
std::optional<LossScalerOptions> loss_scaler_options(const TrainConfig& c, DType compute) {
  const bool f16 = c.fp16 || compute == DType::kF16;
  LossScaleKind kind = c.loss_scale;
  if (kind == LossScaleKind::kAuto) kind = f16 ? LossScaleKind::kDynamic : LossScaleKind::kNone;
  if (kind != LossScaleKind::kDynamic) {
    const TrainConfig defaults;
    if (c.loss_scale_init != defaults.loss_scale_init ||
        c.loss_scale_growth_interval != defaults.loss_scale_growth_interval ||
        c.loss_scale_min != defaults.loss_scale_min)
      log::warn(
          "loss_scale_init / loss_scale_growth_interval / loss_scale_min are ignored: they "
          "apply to dynamic loss scaling (fp16: true or loss_scale: dynamic)");
  }
  if (kind == LossScaleKind::kNone) {
    if (f16)
      log::warn("fp16 without loss scaling (loss_scale: none): small gradients underflow to 0");
    return std::nullopt;
  }
  LossScalerOptions o;
  o.dynamic = kind == LossScaleKind::kDynamic;
  o.init_scale = o.dynamic ? c.loss_scale_init : c.loss_scale_value;
  o.growth_interval = c.loss_scale_growth_interval;
  o.min_scale = o.dynamic ? c.loss_scale_min : c.loss_scale_value;
  return o;
}

// Applies max_memory: the arena gets the cap minus the backend's own workspace; with
// gradient_checkpointing: auto, the fewest recomputed layers that fit. Over the cap, the plan is
// refused with its breakdown (exit 3) before anything is allocated.
RunShape fit_memory_cap(const TrainConfig& c, Backend& backend, const ModelConfig& mc,
                        TrainMode mode, const LoraConfig& lc, RunShape shape) {
  shape.max_memory = arena_cap(c.max_memory, backend.reserved_bytes());
  if (!c.gradient_checkpointing_auto) return shape;
  shape = fit_recompute_or_refuse(mc, mode, lc, shape, backend.compute_dtype(), shape.max_memory);
  log::info("gradient_checkpointing auto: recomputing {} of {} layers to fit {}",
            shape.recompute_layers, mc.num_layers, format_bytes(c.max_memory));
  return shape;
}

// Who this rank is (the launcher's variables) and the step's micro-batch counts; the Comm comes
// with the backend (setup_backend). Data parallel: a global step is world × k micro-batches,
// read in the same order by every rank; rank r runs the r-th run of k of them. So N ranks train
// what one process trains with N × k accumulation steps (up to the f32 order of sums). A
// pipeline is one replica: every stage takes part in all k micro-batches of the step (by
// default 4 per stage, so that the schedule's bubble stays small), and N stages train what one
// process trains with k.
void setup_ranks(TrainJob& job) {
  const TrainConfig& c = job.config;
  job.rank_env = dist::rank_env_from_process().value_or(dist::RankEnv{});
  job.world = job.rank_env.world_size;
  job.rank = job.rank_env.rank;
  job.lead = job.rank == 0;
  if (!job.lead) log::set_level(std::max(log::level(), log::Level::kWarn));  // one rank reports
  const bool pipeline = c.strategy == "pipeline";
  const std::vector<size_t>& caps = c.max_memory_per_gpu;
  if (caps.size() > 1 && static_cast<int>(caps.size()) != job.rank_env.local_world_size)
    throw_input_error(kComponent,
                      "max_memory lists {} caps, but this node runs {} ranks: give one cap per GPU "
                      "(or a single value for all)",
                      caps.size(), job.rank_env.local_world_size);
  if (caps.size() > 1 && job.lead && !pipeline)
    log::info("max_memory: {} caps; every rank plans for the smallest, {}", caps.size(),
              format_bytes(c.max_memory));
}

// The step's micro-batch counts from the strategy and the accumulation (after the auto choice).
void set_step_counts(TrainJob& job) {
  const TrainConfig& c = job.config;
  const bool pipeline = c.strategy == "pipeline";
  job.replicas = pipeline ? 1 : job.world;
  job.replica = pipeline ? 0 : job.rank;
  job.k_local = c.gradient_accumulation_steps;
  if (pipeline && !c.gradient_accumulation_set) job.k_local = 4 * job.world;
  job.k = job.k_local * job.replicas;
  if (pipeline && job.world > 1 && job.lead) {
    const double bubble =
        static_cast<double>(job.world - 1) / static_cast<double>(job.k_local + job.world - 1);
    log::info("pipeline over {} stages: {} micro-batches per step, the 1F1B bubble {:.0f}% of it",
              job.world, job.k_local, 100.0 * bubble);
    if (job.k_local < 4 * job.world)
      log::warn(
          "pipeline: gradient_accumulation_steps {} < 4 x {} stages leaves the stages idle {:.0f}% "
          "of each step; {} or more keeps it under 20%",
          job.k_local, job.world, 100.0 * bubble, 4 * job.world);
  }
}

void setup_data(TrainJob& job) {
  const TrainConfig& c = job.config;
  job.data = load_train_data(c, job.model_config);
  job.batcher = std::make_unique<Batcher>(job.data.train,
                                          batch_options(c, job.data.pad_id, /*shuffle=*/true));
  job.eval_batcher = std::make_unique<Batcher>(
      job.data.eval, batch_options(c, job.data.pad_id, /*shuffle=*/false));
  const int64_t per_epoch = job.batcher->batches_in_epoch(0);
  job.total_steps =
      c.max_steps > 0
          ? c.max_steps
          : std::max<int64_t>(
                1, static_cast<int64_t>(std::ceil(c.num_epochs * static_cast<double>(per_epoch) /
                                                  static_cast<double>(job.k))));
  job.warmup = resolve_warmup_steps(c, job.total_steps);
}

void setup_backend(TrainJob& job) {
  const TrainConfig& c = job.config;
  job.backend = make_train_backend(c, job.rank_env);
  // One rank needs no communication: every strategy is then the single-process run.
  job.comm = job.world > 1 ? make_comm_for(*job.backend) : dist::make_cpu_comm();
  if (job.comm->world_size() != job.world || job.comm->rank() != job.rank)
    throw_internal_error(kComponent, "the launcher says rank {} of {}, the {} comm rank {} of {}",
                         job.rank, job.world, job.comm->name(), job.comm->rank(),
                         job.comm->world_size());
  if (const auto o = loss_scaler_options(c, job.backend->compute_dtype())) {
    job.scaler.emplace(*o);
    if (o->dynamic) {
      log::info(
          "dynamic loss scaling: initial scale {:g}, x{:g} every {} good steps, x{:g} on "
          "overflow (minimum {:g})",
          o->init_scale, o->growth_factor, o->growth_interval, o->backoff_factor, o->min_scale);
    } else {
      log::info("fixed loss scale {:g}", o->init_scale);
    }
  }
}

// What the config leaves `auto` for the planner (train/auto_choice.h), written into job.config.
void resolve_auto_choice(TrainJob& job) {
  if (!wants_auto_choice(job.config, job.world)) return;
  AutoChoiceJob a;
  a.model = job.model_config;
  a.world = job.world;
  a.mode = job.config.adapter == AdapterKind::kLora ? TrainMode::kLora : TrainMode::kFull;
  a.lora = job_lora_config(job.config);
  if (a.mode == TrainMode::kLora) a.base4 = job_base4(job);
  a.dtype = job.backend->compute_dtype();
  a.reserved_bytes = job.backend->reserved_bytes();
  a.cpu = job.backend->device().kind == DeviceKind::kCPU;
  a.device_description = job.backend->device_description();
  apply_auto_choice(choose_auto(job.config, a), job.config);
  set_step_counts(job);
}

// strategy: pipeline: the layers split over the ranks (model/stage_partition.h) so that every
// stage's plan, with the micro-batches its 1F1B schedule keeps in flight, fits its GPU's cap:
// max_memory's list gives GPU i of a node its own; one value caps them all; without a cap the
// layers split evenly. Every rank computes the same split.
RunShape pipeline_shape(TrainJob& job, TrainMode mode, const LoraConfig& lc, RunShape base) {
  const TrainConfig& c = job.config;
  const size_t reserved = job.backend->reserved_bytes();
  std::vector<size_t> caps;
  for (int s = 0; s < job.world; ++s) {
    const std::vector<size_t>& per_gpu = c.max_memory_per_gpu;
    const size_t cap =
        per_gpu.size() > 1 ? per_gpu[static_cast<size_t>(s) % per_gpu.size()] : c.max_memory;
    caps.push_back(cap ? arena_cap(cap, reserved) : 0);
  }
  const std::vector<int> in_flight =
      dist::one_f_one_b_in_flight_per_stage(job.world, static_cast<int>(job.k_local));
  std::vector<RunShape::Stage> stages(1, RunShape::Stage{0, job.model_config.num_layers, 1});
  if (job.world > 1)
    stages = partition_stages(job.model_config, mode, lc, base, job.backend->compute_dtype(), caps,
                              in_flight);
  if (job.lead && job.world > 1)
    for (int s = 0; s < job.world; ++s) {
      const RunShape::Stage& st = stages[static_cast<size_t>(s)];
      log::info("pipeline stage {} (rank {}): layers {}-{}{}{}, {} micro-batch(es) in flight", s, s,
                st.first_layer, st.end_layer - 1, s == 0 ? " + embedding" : "",
                s + 1 == job.world ? " + final norm, lm_head, loss" : "", st.in_flight);
    }
  job.strategy = std::make_unique<dist::PipelineStrategy>(*job.comm, stages);
  job.strategy->shape(base);
  base.max_memory = caps[static_cast<size_t>(job.rank)];
  return base;
}

// Sets job.strategy and returns the shape it plans. The strategy is the config's, or what the
// planner chose for `auto` (resolve_auto_choice); `auto` left (one rank, or no max_memory) is ddp.
// Under max_memory, gradient_checkpointing: auto recomputes what it must to fit.
RunShape choose_strategy(TrainJob& job, TrainMode mode, const LoraConfig& lc, RunShape base) {
  const TrainConfig& c = job.config;
  if (c.strategy == "pipeline") return pipeline_shape(job, mode, lc, base);
  job.strategy = dist::make_strategy(c.strategy, *job.comm);
  job.strategy->shape(base);
  if (!c.max_memory) return base;
  return fit_memory_cap(c, *job.backend, job.model_config, mode, lc, base);
}

// The plan's shape from the config (and the strategy), the model, its weights and adapters.
void setup_model(TrainJob& job) {
  const TrainConfig& c = job.config;
  Backend& backend = *job.backend;
  job.lora = c.adapter == AdapterKind::kLora;
  const LoraConfig lc = job_lora_config(c);
  if (job.lora && !c.lora_model_dir.empty())
    log::info("continuing training of the adapter in {} (r={}, alpha={})", c.lora_model_dir, lc.r,
              lc.alpha);
  RunShape shape;
  shape.max_tokens = c.micro_batch_size * c.sequence_len;
  shape.base4 = job_base4(job);
  if (shape.base4)
    log::info("QLoRA: the base's linear weights{} are {} (blocksize {}{}), dequantized per layer",
              job.model_config.has_sparse_layers() ? " and experts (not the routers)" : "",
              quant::quant_type_name(shape.base4->type), shape.base4->blocksize,
              shape.base4->double_quant ? ", double quantization" : "");
  shape.recompute = c.gradient_checkpointing ? RecomputePolicy::kFull : RecomputePolicy::kSave;
  shape.with_optimizer = true;
  shape.offload_layers = c.offload_weights;
  shape.offload_optimizer = c.offload_optimizer;
  shape.offload_activations = c.offload_activations;
  const TrainMode train_mode = job.lora ? TrainMode::kLora : TrainMode::kFull;
  shape = choose_strategy(job, train_mode, lc, shape);
  if (job.world > 1)
    log::info("{} over {} ranks ({}): {} micro-batches of {} per global step",
              job.replicas > 1 ? fmt::format("data parallel ({})", job.strategy->name())
                               : std::string("pipeline"),
              job.world, job.comm->name(), job.k, c.micro_batch_size);
  job.device_in_use_before = backend.memory_in_use();
  job.model = std::make_unique<Transformer>(backend, job.model_config, train_mode, lc, shape);
  Transformer& model = *job.model;
  job.strategy->attach(model);
  load_model_weights(model, c.base_model);
  if (job.lora) {
    if (c.lora_model_dir.empty()) {
      model.init_lora(mix_seed(c.seed, kLoraInitStream));
    } else {
      load_peft_weights(model, c.lora_model_dir);
    }
  }
  for (Param& p : model.optimizer_params()) {
    if (!p.adam_m.empty()) backend.fill(p.adam_m, 0.0f);
    if (!p.adam_v.empty()) backend.fill(p.adam_v, 0.0f);
  }
  for (const Param& p : model.params()) job.trainable += p.value.numel();
  // A split model's stages each hold their own parameters: report the whole model's.
  if (job.strategy->splits_model())
    job.trainable =
        static_cast<int64_t>(job.comm->all_reduce_sum(static_cast<double>(job.trainable)));
}

void setup_resume(TrainJob& job) {
  const TrainConfig& c = job.config;
  TrainerState& state = job.state;
  state.total_steps = job.total_steps;
  state.seed = c.seed;
  state.data_fingerprint = job.batcher->fingerprint();
  state.adapter = job.lora ? "lora" : "full";
  if (job.lead) prune_checkpoints(c.output_dir, 0);  // removes temp dirs of a killed run
  job.resumed_from = resume_dir_of(c);
  if (!job.resumed_from) return;
  const std::filesystem::path& dir = *job.resumed_from;
  const TrainerState saved = load_checkpoint(*job.model, dir, job.checkpoint_ranks());
  // A sharded optimizer restored each rank's block of the values; make them whole.
  job.strategy->after_update(*job.model);
  if (saved.total_steps != job.total_steps || saved.data_fingerprint != state.data_fingerprint ||
      saved.adapter != state.adapter || saved.seed != c.seed)
    throw_input_error(kComponent,
                      "resume: {} was written by a run with a different config or dataset "
                      "(steps {} vs {}, seed {} vs {}, adapter {} vs {}, data fingerprint "
                      "{}match)",
                      dir.string(), saved.total_steps, job.total_steps, saved.seed, c.seed,
                      saved.adapter, state.adapter,
                      saved.data_fingerprint == state.data_fingerprint ? "" : "mis");
  state.global_step = saved.global_step;
  state.optimizer_steps = saved.optimizer_steps;
  state.skipped_steps = saved.skipped_steps;
  if (job.scaler && job.scaler->dynamic()) {
    if (saved.loss_scaler) {
      job.scaler->load_state(*saved.loss_scaler);
    } else {
      log::info("resume: {} has no loss-scaler state; starting at loss_scale_init", dir.string());
    }
  }
  job.batcher->seek(saved.data);
  log::info("resumed from {} at step {}", dir.string(), state.global_step);
}

}  // namespace

std::unique_ptr<TrainJob> setup_training(const TrainConfig& c) {
  validate_train_config(c);
  auto job = std::make_unique<TrainJob>(c);
  setup_ranks(*job);
  set_step_counts(*job);
  // The model's config and its checkpoint's tensors first (cheap: no weight is read), then the
  // data: bad rows should fail before the model takes memory or the planner runs.
  job->model_config = read_model_config(c.base_model);
  check_model_weights(job->model_config, c.base_model);
  setup_backend(*job);
  // The planner's choice for what the config leaves `auto` needs the backend's dtype and
  // reserve; the data's batching and step count need the choice.
  resolve_auto_choice(*job);
  setup_data(*job);
  setup_model(*job);
  // Ranks load at different speeds (zero3: each its own bytes; a slow disk): wait for all of
  // them with the I/O timeout, so the step loop's collectives keep the short one.
  job->comm->barrier_long();
  setup_resume(*job);
  log::info(
      "training {} on {}: {} trainable parameters ({}), {} train / {} eval examples, "
      "{} steps of {} x {} micro-batches, memory plan {}{}{}",
      c.base_model, job->backend->name(), job->trainable, job->lora ? "LoRA" : "full",
      job->data.train.size(), job->data.eval.size(), job->total_steps, job->k,
      job->config.micro_batch_size, format_bytes(job->model->arena().bytes()),
      job->strategy->splits_model() ? " on stage 0" : "",
      job->model->host_bytes()
          ? fmt::format(" + {} in host memory", format_bytes(job->model->host_bytes()))
          : "");
  return job;
}

}  // namespace fitlm::train
