#include "fitlm/train/trainer.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/backend/registry/make_backend.h"
#include "fitlm/core/allocation_plan.h"
#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/dist/make_comm.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/text/chat_template.h"
#include "fitlm/text/dataset_split.h"
#include "fitlm/text/pack.h"
#include "fitlm/text/tokenizer.h"
#include "fitlm/train/checkpoint.h"
#include "fitlm/train/loss_scaler.h"
#include "fitlm/train/model_output.h"
#include "fitlm/train/optimizer.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "train";
// Independent random streams derived from the one `seed` of the config.
constexpr uint64_t kLoraInitStream = 0x10A;
constexpr uint64_t kDropoutStream = 0xD80;

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) {
  g_stop.store(true);
}

// Installs SIGINT/SIGTERM handlers for the life of a run; SA_RESETHAND makes a second signal
// act as usual, so an impatient user can still kill the process.
class SignalGuard {
 public:
  explicit SignalGuard(bool enable) : enabled_(enable) {
    g_stop.store(false);
    if (!enabled_) return;
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    if (!enabled_) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  bool enabled_;
  struct sigaction old_int_ = {}, old_term_ = {};
};

struct Data {
  std::vector<Example> train, eval;
  int32_t pad_id = 0;
};

// The codec of pretokenized data when the model has no tokenizer: there is no text to encode,
// and ids are checked against the model's embedding (vocab_size) instead of a vocabulary.
class EmbeddingIdsCodec final : public TextCodec {
 public:
  explicit EmbeddingIdsCodec(const ModelConfig& c) : c_(c) {}
  std::vector<int32_t> encode(std::string_view, bool) const override {
    throw_internal_error(kComponent, "pretokenized data has no text to encode");
  }
  std::string decode(std::span<const int32_t>) const override { return {}; }
  bool is_special(int32_t) const override { return false; }
  std::optional<int32_t> eos_id() const override {
    if (c_.eos_token_ids.empty()) return std::nullopt;
    return c_.eos_token_ids.front();
  }
  std::optional<int32_t> pad_id() const override { return std::nullopt; }
  size_t vocab_size() const override { return static_cast<size_t>(c_.vocab_size); }

 private:
  const ModelConfig& c_;
};

Data load_data(const TrainConfig& c, const ModelConfig& model_config) {
  const std::filesystem::path model_dir = c.base_model;
  // Pretokenized data needs no tokenizer: without tokenizer.json its ids are checked against
  // the embedding. Every other type tokenizes text.
  bool all_pretokenized = true;
  for (const auto* list : {&c.datasets, &c.test_datasets})
    for (const DatasetSource& s : *list) all_pretokenized &= s.type == DatasetType::kPretokenized;
  std::optional<Tokenizer> tok;
  if (!all_pretokenized || paths::exists(model_dir / "tokenizer.json", kComponent)) {
    if (!paths::exists(model_dir / "tokenizer.json", kComponent))
      throw_input_error(kComponent,
                        "{}: base_model {} has no tokenizer.json, which datasets that are not "
                        "pretokenized need to be tokenized",
                        clip_path(c.config_path.string()), clip_path(model_dir.string()));
    tok.emplace(Tokenizer::from_dir(model_dir));
    check_tokenizer_fits(*tok, model_config, model_dir);
  }
  std::optional<TokenizerCodec> tok_codec;
  if (tok) tok_codec.emplace(*tok);

  const EmbeddingIdsCodec ids_codec(model_config);
  const TextCodec& codec = tok_codec ? static_cast<const TextCodec&>(*tok_codec) : ids_codec;
  // The net names tokenizer_config.json for JSON type errors the template reader lets escape.
  const std::optional<ChatTemplate> tmpl =
      all_pretokenized
          ? std::nullopt
          : json_input::read_fields(kComponent, (model_dir / "tokenizer_config.json").string(),
                                    [&] { return ChatTemplate::find_in_model_dir(model_dir); });
  const ChatRenderFn render = tmpl ? chat_render_fn(*tmpl) : ChatRenderFn{};
  auto load_all = [&](const std::vector<DatasetSource>& sources) {
    std::vector<Example> out;
    for (const DatasetSource& s : sources) {
      DatasetOptions o;
      o.type = s.type;
      o.sequence_len = c.sequence_len;
      o.train_on_inputs = c.train_on_inputs;
      o.on_bad_row = parse_on_bad_row(c.on_bad_row);
      o.file_format = s.file_format;
      Dataset d = load_dataset(s.path, o, codec, render);
      log::info("dataset {}: {}", s.path.string(), d.summary.to_string());
      for (auto& e : d.examples) out.push_back(std::move(e));
    }
    return out;
  };
  Data data;
  data.train = load_all(c.datasets);
  if (!c.test_datasets.empty()) {
    data.eval = load_all(c.test_datasets);
  } else if (c.val_set_size > 0 && data.train.size() >= 2) {
    const SplitIndices s =
        split_by_fraction(static_cast<int64_t>(data.train.size()), c.val_set_size, c.seed);
    data.eval = select_indices(data.train, s.eval);
    data.train = select_indices(data.train, s.train);
  }
  if (data.train.empty())
    throw_input_error(kComponent, "no training examples left after loading the datasets");
  data.pad_id = codec.pad_id().value_or(codec.eos_id().value_or(0));
  return data;
}

BatchOptions batch_options(const TrainConfig& c, int32_t pad_id, bool shuffle) {
  BatchOptions o;
  o.sequence_len = c.sequence_len;
  o.micro_batch_size = c.micro_batch_size;
  o.sample_packing = c.sample_packing;
  o.pad_to_sequence_len = c.pad_to_sequence_len;
  o.pad_id = pad_id;
  o.shuffle = shuffle;
  o.seed = c.seed;
  return o;
}

LoraConfig lora_config_of(const TrainConfig& c) {
  LoraConfig lc;
  lc.r = c.lora_r;
  lc.alpha = static_cast<float>(c.lora_alpha);
  lc.dropout = static_cast<float>(c.lora_dropout);
  lc.use_rslora = c.use_rslora;
  lc.targets = parse_lora_targets(c.lora_target_modules);
  return lc;
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
std::unique_ptr<Backend> make_train_backend(const TrainConfig& c) {
  std::unique_ptr<Backend> b = c.bf16   ? make_backend(c.backend, DType::kBF16)
                               : c.fp16 ? make_backend(c.backend, DType::kF16)
                                        : make_backend(c.backend);
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

double mean_loss(Transformer& model, Batcher& batcher) {
  batcher.seek({0, 0});
  LossResult total;
  const int64_t n = batcher.batches_in_epoch(0);
  model.set_dropout_seed(0);
  for (int64_t i = 0; i < n; ++i) {
    const LossResult r = model.forward_loss(batcher.next());
    total.loss_sum += r.loss_sum;
    total.tokens += r.tokens;
  }
  return total.tokens ? total.loss_sum / static_cast<double>(total.tokens) : NAN;
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

}  // namespace

void request_stop() {
  g_stop.store(true);
}

TrainSummary run_training(const TrainConfig& c, const TrainHooks& hooks) {
  validate_train_config(c);
  const auto t_start = std::chrono::steady_clock::now();
  // Several ranks (mpirun): data parallel. A global step is world × k micro-batches, read in the
  // same order by every rank; rank r runs the r-th run of k of them. So N ranks train exactly
  // what one process trains with N × k accumulation steps (up to the f32 order of the sums).
  const std::unique_ptr<dist::Comm> comm = dist::make_cpu_comm();
  const int world = comm->world_size(), rank = comm->rank();
  const bool lead = rank == 0;  // writes checkpoints, metrics, outputs and the progress line
  if (!lead) log::set_level(std::max(log::level(), log::Level::kWarn));  // one rank reports

  auto seconds_since = [](auto t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  // The model's config and its checkpoint's tensors first (cheap: no weight is read), then the
  // data: bad rows should fail before the model takes memory or the planner runs.
  const ModelConfig model_config = read_model_config(c.base_model);
  check_model_weights(model_config, c.base_model);
  Data data = load_data(c, model_config);
  Batcher batcher(data.train, batch_options(c, data.pad_id, /*shuffle=*/true));
  Batcher eval_batcher(data.eval, batch_options(c, data.pad_id, /*shuffle=*/false));
  const int64_t k_local = c.gradient_accumulation_steps;
  const int64_t k = k_local * world;  // micro-batches per global step
  const int64_t per_epoch = batcher.batches_in_epoch(0);
  const int64_t total_steps =
      c.max_steps > 0
          ? c.max_steps
          : std::max<int64_t>(
                1, static_cast<int64_t>(std::ceil(c.num_epochs * static_cast<double>(per_epoch) /
                                                  static_cast<double>(k))));
  const int64_t warmup = resolve_warmup_steps(c, total_steps);

  std::unique_ptr<Backend> backend = make_train_backend(c);
  if (world > 1) {
    if (backend->device().kind != DeviceKind::kCPU)
      throw_input_error(kComponent,
                        "{} ranks on backend {}: several GPUs need NCCL, which fitlm does not "
                        "use yet; CPU ranks (backend: cpu) run data parallel over MPI",
                        world, c.backend);
    if (c.strategy == "zero2" || c.strategy == "zero3")
      throw_input_error(kComponent,
                        "strategy: {} is not built yet; ddp (replicated model) is what several "
                        "ranks run today",
                        c.strategy);
    log::info("data parallel (ddp) over {} ranks ({}): {} micro-batches of {} per global step",
              world, comm->name(), k, c.micro_batch_size);
  }
  std::optional<LossScaler> scaler;
  if (const auto o = loss_scaler_options(c, backend->compute_dtype())) {
    scaler.emplace(*o);
    if (o->dynamic) {
      log::info(
          "dynamic loss scaling: initial scale {:g}, x{:g} every {} good steps, x{:g} on "
          "overflow (minimum {:g})",
          o->init_scale, o->growth_factor, o->growth_interval, o->backoff_factor, o->min_scale);
    } else {
      log::info("fixed loss scale {:g}", o->init_scale);
    }
  }
  const bool lora = c.adapter == AdapterKind::kLora;
  LoraConfig lc = lora_config_of(c);
  if (lora && !c.lora_model_dir.empty()) {
    lc = read_peft_config(c.lora_model_dir);  // the adapter's shape wins over the config's
    log::info("continuing training of the adapter in {} (r={}, alpha={})", c.lora_model_dir, lc.r,
              lc.alpha);
  }
  RunShape shape;
  shape.max_tokens = c.micro_batch_size * c.sequence_len;
  std::optional<QuantizeRequest> quantize;
  if (c.load_in_4bit) {
    quantize = QuantizeRequest{};
    quantize->type =
        c.bnb_4bit_quant_type == "fp4" ? quant::QuantType::kFP4 : quant::QuantType::kNF4;
    quantize->double_quant = c.bnb_4bit_use_double_quant;
  }
  shape.base4 = base4_layout(model_config, c.base_model, quantize);
  if (shape.base4)
    log::info("QLoRA: the base's linear weights are {} (blocksize {}{}), dequantized per layer",
              quant::quant_type_name(shape.base4->type), shape.base4->blocksize,
              shape.base4->double_quant ? ", double quantization" : "");
  shape.recompute = c.gradient_checkpointing ? RecomputePolicy::kFull : RecomputePolicy::kSave;
  shape.with_optimizer = true;
  const TrainMode train_mode = lora ? TrainMode::kLora : TrainMode::kFull;
  if (c.max_memory) shape = fit_memory_cap(c, *backend, model_config, train_mode, lc, shape);
  const size_t device_in_use_before = backend->memory_in_use();  // 0 where it cannot tell
  Transformer model(*backend, model_config, train_mode, lc, shape);
  load_model_weights(model, c.base_model);
  if (lora) {
    if (c.lora_model_dir.empty()) {
      model.init_lora(mix_seed(c.seed, kLoraInitStream));
    } else {
      load_peft_weights(model, c.lora_model_dir);
    }
  }
  int64_t trainable = 0;
  for (Param& p : model.params()) {
    backend->fill(p.adam_m, 0.0f);
    backend->fill(p.adam_v, 0.0f);
    trainable += p.value.numel();
  }

  TrainerState state;
  state.total_steps = total_steps;
  state.seed = c.seed;
  state.data_fingerprint = batcher.fingerprint();
  state.adapter = lora ? "lora" : "full";
  if (lead) prune_checkpoints(c.output_dir, 0);  // removes temp dirs of a killed run
  const auto resume = resume_dir_of(c);
  if (resume) {
    const TrainerState saved = load_checkpoint(model, *resume);
    if (saved.total_steps != total_steps || saved.data_fingerprint != state.data_fingerprint ||
        saved.adapter != state.adapter || saved.seed != c.seed)
      throw_input_error(kComponent,
                        "resume: {} was written by a run with a different config or dataset "
                        "(steps {} vs {}, seed {} vs {}, adapter {} vs {}, data fingerprint "
                        "{}match)",
                        resume->string(), saved.total_steps, total_steps, saved.seed, c.seed,
                        saved.adapter, state.adapter,
                        saved.data_fingerprint == state.data_fingerprint ? "" : "mis");
    state.global_step = saved.global_step;
    state.optimizer_steps = saved.optimizer_steps;
    state.skipped_steps = saved.skipped_steps;
    if (scaler && scaler->dynamic()) {
      if (saved.loss_scaler) {
        scaler->load_state(*saved.loss_scaler);
      } else {
        log::info("resume: {} has no loss-scaler state; starting at loss_scale_init",
                  resume->string());
      }
    }
    batcher.seek(saved.data);
    log::info("resumed from {} at step {}", resume->string(), state.global_step);
  }

  log::info(
      "training {} on {}: {} trainable parameters ({}), {} train / {} eval examples, "
      "{} steps of {} x {} micro-batches, memory plan {}",
      c.base_model, backend->name(), trainable, lora ? "LoRA" : "full", data.train.size(),
      data.eval.size(), total_steps, k, c.micro_batch_size, format_bytes(model.arena().bytes()));

  SignalGuard signals(hooks.handle_signals);
  // Only the lead rank writes metrics.jsonl; the others log to nowhere.
  MetricsLog metrics(lead ? c.output_dir / "metrics.jsonl" : std::filesystem::path("/dev/null"),
                     resume && lead ? std::optional<int64_t>(state.global_step) : std::nullopt);
  const bool show_progress = hooks.show_progress && lead;
  ProgressReporter progress(total_steps, state.global_step, c.logging_steps, model.arena().bytes(),
                            show_progress && ::isatty(2));
  TrainSummary summary;
  summary.start_step = state.global_step;
  summary.total_steps = total_steps;
  summary.output_dir = c.output_dir;
  summary.lead = lead;
  const uint64_t dropout_seed = mix_seed(c.seed, kDropoutStream);
  int64_t last_saved = resume ? state.global_step : -1;
  // The model is replicated: the lead rank writes the checkpoint, and the others wait for it
  // (a rank that went on could be killed before the checkpoint it relies on exists).
  auto checkpoint = [&] {
    state.data = batcher.position();
    if (scaler) state.loss_scaler = scaler->state();
    std::filesystem::path dir;
    if (lead) {
      dir = save_checkpoint(model, state, c.output_dir, c.base_model, c.config_path);
      prune_checkpoints(c.output_dir, c.save_total_limit);
    }
    comm->barrier();
    last_saved = state.global_step;
    return dir;
  };

  std::vector<TokenBatch> micro(static_cast<size_t>(k));
  while (state.global_step < total_steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t step = state.global_step;
    int64_t scored = 0, tokens = 0;
    for (auto& b : micro) {
      b = batcher.next();
      scored += b.scored_tokens();
      tokens += b.size();
    }
    model.zero_grads();
    // Loss scaling multiplies the loss gradient by the scale (a power of two when dynamic, so
    // exact in f32 unless something overflows); adamw_update divides it out again. Computed in
    // f64 then rounded once: with scale 1 that is exactly 1.0f / scored (f64 has more than
    // 2·24 + 2 bits, so the double rounding is innocuous), and a scale above the f32 maximum
    // still gives a finite per-token scale.
    const double loss_scale = scaler ? scaler->scale() : 1.0;
    const float grad_scale =
        scored > 0
            ? static_cast<float>(loss_scale / static_cast<double>(static_cast<float>(scored)))
            : 0.0f;
    double loss_sum = 0.0;
    for (int64_t i = rank * k_local; i < (rank + 1) * k_local; ++i) {
      model.set_dropout_seed(mix_seed(dropout_seed, static_cast<uint64_t>(step * k + i)));
      loss_sum += model.forward_backward(micro[static_cast<size_t>(i)], grad_scale).loss_sum;
    }
    if (world > 1) {  // every rank ends with the global step's gradient sum, in rank order
      for (Param& p : model.optimizer_params()) comm->all_reduce_sum(p.grad);
      loss_sum = comm->all_reduce_sum(loss_sum);
    }
    const double loss = scored > 0 ? loss_sum / static_cast<double>(scored) : 0.0;
    // A skipped step advances global_step but neither the schedule nor AdamW's step count, as
    // in HF Trainer (+ accelerate) with torch's GradScaler; without skips both equal `step`.
    const int64_t opt_step = state.optimizer_steps;
    const double lr =
        c.learning_rate * lr_multiplier(c.lr_scheduler, opt_step, warmup, total_steps);
    AdamWParams h;
    h.lr = static_cast<float>(lr);
    h.beta1 = static_cast<float>(c.adam_beta1);
    h.beta2 = static_cast<float>(c.adam_beta2);
    h.eps = static_cast<float>(c.adam_epsilon);
    h.weight_decay = static_cast<float>(c.weight_decay);
    h.step = opt_step + 1;
    if (!std::isfinite(loss) && !scaler)
      throw Error(kComponent,
                  fmt::format("loss is {} at step {}: training diverged. Nothing was saved "
                              "for this step; the last checkpoint (if any) is intact. Try a "
                              "lower learning_rate or max_grad_norm.",
                              loss, step + 1),
                  ExitCode::kDiverged);
    OptimizerStepResult o;
    o.grad_norm = loss;  // NaN/inf: an overflowed forward pass has no usable gradient either
    if (std::isfinite(loss))
      o = adamw_update(*backend, model.optimizer_params(), h, c.max_grad_norm, loss_scale);
    const bool overflow = !o.applied;
    if (overflow && !scaler)
      throw Error(kComponent,
                  fmt::format("gradient norm is {} at step {}: training diverged; nothing was "
                              "saved",
                              o.grad_norm, step + 1),
                  ExitCode::kDiverged);
    if (overflow && scaler->at_min())
      throw Error(kComponent,
                  fmt::format("{} is {} at step {} with loss scale {:g}, the {}: backing off "
                              "cannot help, training diverged. Nothing was saved for this step; "
                              "the last checkpoint (if any) is intact. Try a lower "
                              "learning_rate{}.",
                              std::isfinite(loss) ? "gradient norm" : "loss", o.grad_norm, step + 1,
                              loss_scale,
                              scaler->dynamic() ? "minimum (loss_scale_min)" : "fixed loss_scale",
                              scaler->dynamic() ? " or loss_scale_min" : " or loss_scale: dynamic"),
                  ExitCode::kDiverged);
    if (scaler) scaler->update(overflow);
    if (overflow) {
      // The gradients are discarded (the next step zeroes them before use): no param, m or v
      // changed, and the scale has backed off.
      ++state.skipped_steps;
      if (show_progress)
        progress.note(fmt::format(
            "step {}: gradient overflow at loss scale {:g}; update skipped, scale now {:g}",
            step + 1, loss_scale, scaler->scale()));
    } else {
      ++state.optimizer_steps;
    }
    state.global_step = step + 1;

    StepMetrics m;
    m.step = state.global_step;
    m.total_steps = total_steps;
    const StreamPosition pos = batcher.position();
    m.epoch = static_cast<double>(pos.epoch) +
              static_cast<double>(pos.index) /
                  static_cast<double>(std::max<int64_t>(1, batcher.batches_in_epoch(pos.epoch)));
    m.loss = loss;
    m.lr = lr;
    m.grad_norm = o.grad_norm;
    m.loss_scale = scaler ? loss_scale : 0.0;
    m.skipped = overflow;
    m.skipped_steps = state.skipped_steps;
    m.tokens = tokens;
    m.tokens_per_s = static_cast<double>(tokens) / std::max(1e-9, seconds_since(t0));
    m.elapsed_s = seconds_since(t_start);
    if (std::isfinite(loss)) {
      if (std::isnan(summary.first_loss)) summary.first_loss = loss;
      summary.last_loss = loss;
    }
    metrics.step(m);
    if (show_progress) progress.step(m);
    if (hooks.on_step && lead) hooks.on_step(m);

    if (c.eval_steps > 0 && !data.eval.empty() && state.global_step % c.eval_steps == 0 &&
        state.global_step < total_steps) {
      const double el = mean_loss(model, eval_batcher);
      metrics.eval(state.global_step, el);
      if (show_progress) progress.eval(state.global_step, el);
    }
    if (c.save_steps > 0 && state.global_step % c.save_steps == 0 &&
        state.global_step < total_steps) {
      const auto dir = checkpoint();
      log::debug("saved {}", dir.string());
    }
    // A signal to any rank stops them all, after the same step.
    const bool stop =
        world > 1 ? comm->all_reduce_max(g_stop.load() ? 1.0 : 0.0) > 0.0 : g_stop.load();
    if (stop) {
      const auto dir = last_saved == state.global_step ? c.output_dir : checkpoint();
      progress.finish();
      log::info(
          "interrupted: stopped after step {}/{} and saved {}. Continue with "
          "`fitlm train CONFIG --resume`.",
          state.global_step, total_steps,
          (last_saved == state.global_step ? latest_checkpoint(c.output_dir).value_or(dir) : dir)
              .string());
      summary.interrupted = true;
      break;
    }
  }
  progress.finish();
  // Planned vs measured: the arena is this run's only device allocation after the backend's own
  // workspace, so the growth of device memory in use is its real peak.
  if (const size_t now = backend->memory_in_use(); now > 0)
    log::info("device memory: planned {} (+ {} backend workspace), measured {} in use by this run",
              format_bytes(model.arena().bytes()), format_bytes(backend->reserved_bytes()),
              format_bytes(now > device_in_use_before ? now - device_in_use_before : 0));
  summary.steps_done = state.global_step;
  summary.skipped_steps = state.skipped_steps;
  summary.loss_scale = scaler ? scaler->scale() : 0.0;
  if (state.skipped_steps > 0)
    log::info("{} of {} steps skipped on gradient overflow (loss scale now {:g})",
              state.skipped_steps, state.global_step, summary.loss_scale);
  if (!summary.interrupted) {
    if (!data.eval.empty()) {
      summary.eval_loss = mean_loss(model, eval_batcher);
      metrics.eval(state.global_step, *summary.eval_loss);
      log::info("eval_loss {:.4f}", *summary.eval_loss);
    }
    if (lead && lora) {
      save_peft_adapter(model, c.output_dir, c.base_model);
      log::info("saved the LoRA adapter (PEFT format) to {}", c.output_dir.string());
    } else if (lead) {
      save_hf_model(model, c.output_dir, c.base_model);
      log::info("saved the fine-tuned model (HF format) to {}", c.output_dir.string());
    }
    if (lead && write_loss_plot(metrics.path(), c.output_dir / "loss.svg"))
      log::debug("wrote {}", (c.output_dir / "loss.svg").string());
  }
  comm->barrier();  // the outputs are on disk before any rank reports success
  summary.seconds = seconds_since(t_start);
  return summary;
}

}  // namespace fitlm::train
