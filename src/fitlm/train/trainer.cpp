#include "fitlm/train/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>

#include "fitlm/core/allocation_plan.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/text/dataset_split.h"
#include "fitlm/train/checkpoint.h"
#include "fitlm/train/model_output.h"
#include "fitlm/train/optimizer.h"
#include "fitlm/train/train_setup.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "train";
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

double mean_loss(Transformer& model, dist::Strategy& strategy, Batcher& batcher) {
  batcher.seek({0, 0});
  LossResult total;
  const int64_t n = batcher.batches_in_epoch(0);
  model.set_dropout_seed(0);
  for (int64_t i = 0; i < n; ++i) {
    const LossResult r = strategy.forward_loss(model, batcher.next());
    total.loss_sum += r.loss_sum;
    total.tokens += r.tokens;
  }
  total = strategy.total_loss(total);
  return total.tokens ? total.loss_sum / static_cast<double>(total.tokens) : NAN;
}

// This process's peak resident set so far (Linux: ru_maxrss is in KiB).
double peak_host_rss_bytes() {
  struct rusage u = {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One optimizer step of the job: this rank's micro-batches, the strategy's gradient reduction,
// AdamW over the strategy's slots. Fills `m` (loss, lr, norm, tokens); throws kDiverged.
StepMetrics train_step(TrainJob& job, std::vector<TokenBatch>& micro, uint64_t dropout_seed,
                       ProgressReporter& progress, bool show_progress) {
  const TrainConfig& c = job.config;
  Transformer& model = *job.model;
  TrainerState& state = job.state;
  std::optional<LossScaler>& scaler = job.scaler;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t step = state.global_step;
  int64_t scored = 0, tokens = 0;
  for (auto& b : micro) {
    b = job.batcher->next();
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
      scored > 0 ? static_cast<float>(loss_scale / static_cast<double>(static_cast<float>(scored)))
                 : 0.0f;
  // This replica's run of the step's micro-batches; micro-batch i's dropout seed depends on
  // (step, i) only, whichever rank runs it.
  const int64_t first = job.replica * job.k_local;
  double loss_sum = job.strategy->forward_backward(
      model,
      std::span<const TokenBatch>(micro).subspan(static_cast<size_t>(first),
                                                 static_cast<size_t>(job.k_local)),
      grad_scale, [&](size_t j) {
        model.set_dropout_seed(mix_seed(
            dropout_seed, static_cast<uint64_t>(step * job.k + first + static_cast<int64_t>(j))));
      });
  // Every rank ends with the global step's gradient sums (or its block of them), in rank order.
  job.strategy->reduce_gradients(model);
  if (job.world > 1) loss_sum = job.comm->all_reduce_sum(loss_sum);
  const double loss = scored > 0 ? loss_sum / static_cast<double>(scored) : 0.0;
  // A skipped step advances global_step but neither the schedule nor AdamW's step count, as
  // in HF Trainer (+ accelerate) with torch's GradScaler; without skips both equal `step`.
  const int64_t opt_step = state.optimizer_steps;
  const double lr =
      c.learning_rate * lr_multiplier(c.lr_scheduler, opt_step, job.warmup, job.total_steps);
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
  if (std::isfinite(loss)) {
    dist::Strategy& strategy = *job.strategy;
    o = adamw_update(*job.backend, strategy.optimizer_slots(model), h, c.max_grad_norm, loss_scale,
                     [&](double partial) { return strategy.sum_partials(partial); });
    if (o.applied) strategy.after_update(model);
  }
  const bool overflow = !o.applied;
  if (overflow && !scaler)
    throw Error(kComponent,
                fmt::format("gradient norm is {} at step {}: training diverged; nothing was "
                            "saved",
                            o.grad_norm, step + 1),
                ExitCode::kDiverged);
  if (overflow && scaler->at_min())
    throw Error(
        kComponent,
        fmt::format("{} is {} at step {} with loss scale {:g}, the {}: backing off "
                    "cannot help, training diverged. Nothing was saved for this step; "
                    "the last checkpoint (if any) is intact. Try a lower "
                    "learning_rate{}.",
                    std::isfinite(loss) ? "gradient norm" : "loss", o.grad_norm, step + 1,
                    loss_scale, scaler->dynamic() ? "minimum (loss_scale_min)" : "fixed loss_scale",
                    scaler->dynamic() ? " or loss_scale_min" : " or loss_scale: dynamic"),
        ExitCode::kDiverged);
  if (scaler) scaler->update(overflow);
  if (overflow) {
    // The gradients are discarded (the next step zeroes them before use): no param, m or v
    // changed, and the scale has backed off.
    ++state.skipped_steps;
    if (show_progress)
      progress.note(fmt::format(
          "step {}: gradient overflow at loss scale {:g}; update skipped, scale now {:g}", step + 1,
          loss_scale, scaler->scale()));
  } else {
    ++state.optimizer_steps;
  }
  state.global_step = step + 1;

  StepMetrics m;
  m.step = state.global_step;
  m.total_steps = job.total_steps;
  const StreamPosition pos = job.batcher->position();
  m.epoch = static_cast<double>(pos.epoch) +
            static_cast<double>(pos.index) /
                static_cast<double>(std::max<int64_t>(1, job.batcher->batches_in_epoch(pos.epoch)));
  m.loss = loss;
  m.lr = lr;
  m.grad_norm = o.grad_norm;
  m.loss_scale = scaler ? loss_scale : 0.0;
  m.skipped = overflow;
  m.skipped_steps = state.skipped_steps;
  m.tokens = tokens;
  m.tokens_per_s = static_cast<double>(tokens) / std::max(1e-9, seconds_since(t0));
  return m;
}

// checkpoint-<step>: every rank takes part (a sharded optimizer writes one file per rank, and
// the masters of a LoRA checkpoint's adapter are gathered); the lead rank commits it. The
// others wait for it: a rank that went on could be killed before the checkpoint it relies on
// exists.
std::filesystem::path save_job_checkpoint(TrainJob& job) {
  const TrainConfig& c = job.config;
  TrainerState& state = job.state;
  state.data = job.batcher->position();
  if (job.scaler) state.loss_scaler = job.scaler->state();
  const CheckpointRanks ranks = job.checkpoint_ranks();
  if (job.lora) job.strategy->gather_masters(*job.model);
  if (ranks.sharded_optimizer) {
    if (job.lead) begin_checkpoint(c.output_dir, state.global_step);
    job.comm->barrier_long();
    write_optimizer_shard(*job.model, checkpoint_staging_dir(c.output_dir, state.global_step),
                          ranks);
    job.comm->barrier_long();
  }
  std::filesystem::path dir;
  if (job.lead) {
    dir = save_checkpoint(*job.model, state, c.output_dir, c.base_model, c.config_path, ranks);
    prune_checkpoints(c.output_dir, c.save_total_limit);
  }
  job.comm->barrier_long();
  return dir;
}

// After the last step: the final eval, then the adapter (LoRA) or the model, written once by
// the lead rank from whole masters.
void write_outputs(TrainJob& job, MetricsLog& metrics, TrainSummary& summary) {
  const TrainConfig& c = job.config;
  Transformer& model = *job.model;
  if (!job.data.eval.empty()) {
    summary.eval_loss = mean_loss(model, *job.strategy, *job.eval_batcher);
    metrics.eval(job.state.global_step, *summary.eval_loss);
    log::info("eval_loss {:.4f}", *summary.eval_loss);
  }
  job.strategy->gather_masters(model);
  if (job.strategy->splits_model()) {
    // Every rank holds part of the model: each writes its part, then the lead joins them.
    if (job.lora) {
      write_adapter_part(model, c.output_dir, job.rank, job.world);
    } else {
      write_hf_model_part(model, c.output_dir, job.rank, job.world);
    }
    job.comm->barrier_long();
    if (!job.lead) return;
    if (job.lora) {
      join_adapter_parts(model, c.output_dir, c.base_model, job.world);
    } else {
      join_hf_model_parts(model, c.output_dir, c.base_model, job.world);
    }
  } else {
    if (!job.lead) return;
    if (job.lora) {
      save_peft_adapter(model, c.output_dir, c.base_model);
    } else {
      save_hf_model(model, c.output_dir, c.base_model);
    }
  }
  if (job.lora) {
    log::info("saved the LoRA adapter (PEFT format) to {}", c.output_dir.string());
  } else {
    log::info("saved the fine-tuned model (HF format) to {}", c.output_dir.string());
  }
  if (write_loss_plot(metrics.path(), c.output_dir / "loss.svg"))
    log::debug("wrote {}", (c.output_dir / "loss.svg").string());
}

}  // namespace

void request_stop() {
  g_stop.store(true);
}

TrainSummary run_training(const TrainConfig& c, const TrainHooks& hooks) {
  const auto t_start = std::chrono::steady_clock::now();
  const std::unique_ptr<TrainJob> job_ptr = setup_training(c);
  TrainJob& job = *job_ptr;
  TrainerState& state = job.state;
  Transformer& model = *job.model;
  const bool lead = job.lead;

  SignalGuard signals(hooks.handle_signals);
  // Only the lead rank writes metrics.jsonl; the others log to nowhere.
  MetricsLog metrics(
      lead ? c.output_dir / "metrics.jsonl" : std::filesystem::path("/dev/null"),
      job.resumed_from && lead ? std::optional<int64_t>(state.global_step) : std::nullopt);
  const bool show_progress = hooks.show_progress && lead;
  // Every rank's plan (zero2's ranks differ by their blocks' rounding); the bar shows the
  // largest, plus the backend's own workspace: what the fullest device holds.
  const std::vector<double> rank_planned =
      job.comm->all_gather_scalars(static_cast<double>(model.arena().bytes()));
  const size_t largest =
      static_cast<size_t>(*std::max_element(rank_planned.begin(), rank_planned.end()));
  ProgressReporter progress(job.total_steps, state.global_step, c.logging_steps,
                            largest + job.backend->reserved_bytes(), show_progress && ::isatty(2));
  TrainSummary summary;
  summary.start_step = state.global_step;
  summary.total_steps = job.total_steps;
  summary.output_dir = c.output_dir;
  summary.lead = lead;
  const uint64_t dropout_seed = mix_seed(c.seed, kDropoutStream);
  int64_t last_saved = job.resumed_from ? state.global_step : -1;

  std::vector<TokenBatch> micro(static_cast<size_t>(job.k));
  while (state.global_step < job.total_steps) {
    StepMetrics m = train_step(job, micro, dropout_seed, progress, show_progress);
    m.elapsed_s = seconds_since(t_start);
    if (std::isfinite(m.loss)) {
      if (std::isnan(summary.first_loss)) summary.first_loss = m.loss;
      summary.last_loss = m.loss;
    }
    metrics.step(m);
    if (job.world > 1 && state.global_step == summary.start_step + 1) {
      const size_t now = job.backend->memory_in_use();
      const double measured =
          now > job.device_in_use_before ? static_cast<double>(now - job.device_in_use_before) : 0;
      const std::vector<double> measured_all = job.comm->all_gather_scalars(measured);
      metrics.ranks(state.global_step, rank_planned, measured_all,
                    job.comm->all_gather_scalars(peak_host_rss_bytes()));
    }
    if (show_progress) progress.step(m);
    if (hooks.on_step && lead) hooks.on_step(m);

    const bool more = state.global_step < job.total_steps;
    if (c.eval_steps > 0 && !job.data.eval.empty() && state.global_step % c.eval_steps == 0 &&
        more) {
      const double el = mean_loss(model, *job.strategy, *job.eval_batcher);
      metrics.eval(state.global_step, el);
      if (show_progress) progress.eval(state.global_step, el);
    }
    if (c.save_steps > 0 && state.global_step % c.save_steps == 0 && more) {
      const auto dir = save_job_checkpoint(job);
      last_saved = state.global_step;
      log::debug("saved {}", dir.string());
    }
    // A signal to any rank stops them all, after the same step.
    const bool stop =
        job.world > 1 ? job.comm->all_reduce_max(g_stop.load() ? 1.0 : 0.0) > 0.0 : g_stop.load();
    if (stop) {
      const bool saved_now = last_saved == state.global_step;
      const auto dir = saved_now ? c.output_dir : save_job_checkpoint(job);
      progress.finish();
      log::info(
          "interrupted: stopped after step {}/{} and saved {}. Continue with "
          "`fitlm train CONFIG --resume`.",
          state.global_step, job.total_steps,
          (saved_now ? latest_checkpoint(c.output_dir).value_or(dir) : dir).string());
      summary.interrupted = true;
      break;
    }
  }
  progress.finish();
  // Planned vs measured: the arena is this run's only device allocation after the backend's own
  // workspace, so the growth of device memory in use is its real peak.
  if (const size_t now = job.backend->memory_in_use(); now > 0)
    log::info("device memory: planned {} (+ {} backend workspace), measured {} in use by this run",
              format_bytes(model.arena().bytes()), format_bytes(job.backend->reserved_bytes()),
              format_bytes(now > job.device_in_use_before ? now - job.device_in_use_before : 0));
  summary.steps_done = state.global_step;
  summary.skipped_steps = state.skipped_steps;
  summary.loss_scale = job.scaler ? job.scaler->scale() : 0.0;
  if (state.skipped_steps > 0)
    log::info("{} of {} steps skipped on gradient overflow (loss scale now {:g})",
              state.skipped_steps, state.global_step, summary.loss_scale);
  if (!summary.interrupted) write_outputs(job, metrics, summary);
  job.comm->barrier_long();  // the outputs are on disk before any rank reports success
  summary.seconds = seconds_since(t_start);
  return summary;
}

}  // namespace fitlm::train
