// `fitlm bench`: training-step throughput of a random-weight model with a real architecture's
// shapes, on any backend, with no files. Reports tokens/s, model TFLOP/s, the share of the
// device's measured GEMM rate, and planned vs measured memory.
#include <algorithm>
#include <chrono>
#include <map>
#include <random>

#include "fitlm/backend/profiling_backend.h"
#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/quantize_option.h"
#include "fitlm/cli/recompute_options.h"
#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/model/presets.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm::cli {
namespace {

struct BenchOptions {
  std::string arch = "llama-3.2-1b", backend = "cuda", mode = "lora", max_memory;
  RecomputeChoice recompute;
  QuantizeOption quantize;
  int64_t seq = 2048, micro_batch = 1, lora_r = 16, logits_chunk = 1024;
  int warmup = 2, steps = 5;
  int64_t gemm_size = 8192;
  // ≥ 0: before the model is built, fill the device so that only its plan + this % stays free.
  double squeeze = -1;
  bool json = false;
  bool profile = false;
  bool offload_weights = false, offload_optimizer = false, offload_activations = false;
  // Rows packed from segments of random lengths in [packed_min, packed_max] (the last one cut to
  // fill the row), one set of rows per batch, `packed_batches` batches used in turn.
  bool packed = false;
  int64_t packed_min = 64, packed_max = 1024, packed_batches = 4;
  uint64_t packed_seed = 11;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Fills every tensor with values from one random pool (tiled): random-looking data without
// generating billions of numbers on the host.
void fill_random(Backend& be, const std::vector<Tensor>& tensors, float scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<float> pool(1 << 22);
  for (auto& v : pool) v = n(rng);
  for (const Tensor& tensor : tensors) {
    // As rows of its last dimension (a 3-D expert tensor too), so that no row is longer than
    // the pool; a vector (norms, biases) is one row.
    const int64_t cols = tensor.ndim() >= 2 ? tensor.cols() : tensor.numel();
    FITLM_CHECK(cols + 7 * 13 <= static_cast<int64_t>(pool.size()), "bench",
                "a row of {} values is longer than the random pool", cols);
    const Tensor t = tensor.reshape(Shape{tensor.numel() / cols, cols});
    const int64_t rows = t.dim(0);
    const int64_t rows_per =
        std::max<int64_t>(1, (static_cast<int64_t>(pool.size()) - 7 * 13) / cols);
    for (int64_t r = 0; r < rows; r += rows_per) {
      const int64_t r1 = std::min(rows, r + rows_per);
      be.upload(t.slice_rows(r, r1), pool.data() + (r % 7) * 13, DType::kF32);
    }
  }
}

// Uploads `pool` tiled over t (raw bytes of t's dtype, pool a multiple of its element size).
void upload_tiled(Backend& be, const Tensor& t, const void* pool, size_t pool_bytes) {
  const size_t esize = dtype_size(t.dtype), per = pool_bytes / esize;
  for (int64_t i = 0; i < t.numel(); i += static_cast<int64_t>(per)) {
    const int64_t n = std::min<int64_t>(t.numel() - i, static_cast<int64_t>(per));
    be.upload(Tensor(static_cast<char*>(t.data) + i * esize, t.dtype, Shape{n}, t.device), pool,
              t.dtype);
  }
}

// 4-bit weights: one pool of random normal values quantized once on the host, its codes and
// absmax tiled over every weight (as fill_random tiles its pool).
void fill_random_quant4(Backend& be, const std::vector<Quant4Tensor*>& weights, float scale) {
  if (weights.empty()) return;
  std::mt19937_64 rng(2);
  std::normal_distribution<float> n(0.0f, scale);
  std::vector<float> values(1 << 22);
  for (auto& v : values) v = n(rng);
  const Quant4Tensor& first = *weights.front();
  const quant::Quantized4 pool =
      quant::quantize4(values, first.type, first.blocksize, first.double_quant());
  for (Quant4Tensor* q : weights) {
    upload_tiled(be, q->packed, pool.packed.data(), pool.packed.size());
    q->round_to = be.compute_dtype();
    if (!q->double_quant()) {
      upload_tiled(be, q->absmax, pool.absmax.data(), pool.absmax.size() * 4);
      continue;
    }
    upload_tiled(be, q->absmax, pool.absmax_codes.data(), pool.absmax_codes.size());
    upload_tiled(be, q->nested_absmax, pool.nested_absmax.data(), pool.nested_absmax.size() * 4);
    be.upload(q->nested_map, pool.nested_map.data(), DType::kF32);
    q->offset = pool.offset;
  }
}

// Layer blobs (offloaded layers): each layer's stored blob viewed as its tensors — 16-bit
// weights and biases into `weights`, 4-bit ones as copies of the model's Quant4Tensors whose
// views point into the stored blob (returned with the model's own, whose host-side fields
// fill_random_quant4 sets on the copies) — to be filled like resident weights.
using StoredQuant4 = std::vector<std::pair<Quant4Tensor*, Quant4Tensor>>;
StoredQuant4 stored_blob_views(Transformer& model, DType compute, std::vector<Tensor>& weights) {
  StoredQuant4 out;
  const LayerShardLayout blob = layer_shard_layout(model.config(), model.shape(), compute);
  if (blob.bytes == 0 || blob.spec.world != 1) return out;
  std::map<std::string, Quant4Tensor*> by_name;
  for (auto& [name, q] : model.sharded_quantized_weights()) by_name[name] = q;
  for (int l = 0; l < model.config().num_layers; ++l) {
    const Tensor store = model.layer_shard(l);
    auto view = [&](const LayerBlobEntry& e) {
      return Tensor(static_cast<char*>(store.data) + e.offset, e.dtype, e.shape, store.device);
    };
    for (const LayerBlobEntry& e : blob.entries) {
      switch (e.part) {
        case BlobPart::kWeight:
        case BlobPart::kBias: weights.push_back(view(e)); break;
        case BlobPart::kPacked: {
          Quant4Tensor* q = by_name.at(fmt::format("model.layers.{}.{}", l, e.suffix));
          out.emplace_back(q, *q);
          out.back().second.packed = view(e);
          break;
        }
        case BlobPart::kAbsmax: out.back().second.absmax = view(e); break;
        case BlobPart::kNestedAbsmax: out.back().second.nested_absmax = view(e); break;
        case BlobPart::kNestedMap: out.back().second.nested_map = view(e); break;
      }
    }
  }
  return out;
}

// The device bytes a model's plan takes: its arena and the mapping of its host buffers.
size_t planned_device_bytes(Backend& be, const ModelConfig& c, TrainMode mode,
                            const LoraConfig& lora, const RunShape& shape) {
  return plan_transformer(c, mode, lora, shape, be.compute_dtype()).total_bytes() +
         be.host_mapping_bytes(
             plan_transformer_host(c, mode, lora, shape, be.compute_dtype()).total_bytes());
}

// --squeeze: one allocation that takes every free device byte but the plan's and a slack, so a
// step that allocated outside its plan (a library workspace, a lazily loaded kernel module)
// would fail with out-of-memory instead of passing unnoticed.
class DeviceFiller {
 public:
  explicit DeviceFiller(Backend& be) : be_(be) {}
  ~DeviceFiller() { release(); }
  DeviceFiller(const DeviceFiller&) = delete;
  DeviceFiller& operator=(const DeviceFiller&) = delete;

  void leave_free(size_t planned, double slack_percent) {
    const size_t free = be_.memory_free();
    const size_t keep =
        planned + static_cast<size_t>(static_cast<double>(planned) * slack_percent / 100.0);
    if (free == 0)
      throw_input_error("bench", "--squeeze: the {} backend cannot tell its free memory",
                        be_.name());
    if (free <= keep)
      throw_input_error("bench", "--squeeze: {} free on the device, the plan needs {} (+{}%)",
                        format_bytes(free), format_bytes(planned), slack_percent);
    ptr_ = be_.allocate(free - keep);
    log::info("bench --squeeze: {} left free for a plan of {} (+{}%)",
              format_bytes(be_.memory_free()), format_bytes(planned), slack_percent);
  }
  void release() {
    if (ptr_) be_.deallocate(ptr_);
    ptr_ = nullptr;
  }

 private:
  Backend& be_;
  void* ptr_ = nullptr;
};

// GEMM rate of this backend in the compute dtype: n×n×n products, median of several.
double measure_gemm_tflops(Backend& be, int64_t n) {
  AllocationPlan plan;
  for (const char* name : {"a", "b", "c"}) plan.add(name, "bench", Shape{n, n}, be.compute_dtype());
  plan.finalize();
  Arena arena(be, std::move(plan));
  fill_random(be, {arena.get("a"), arena.get("b")}, 1.0f, 7);
  std::vector<double> times;
  for (int i = 0; i < 8; ++i) {
    be.synchronize();
    const auto t0 = Clock::now();
    be.gemm(arena.get("a"), false, arena.get("b"), true, arena.get("c"));
    be.synchronize();
    if (i >= 2) times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  return 2.0 * static_cast<double>(n) * n * n / times[times.size() / 2] / 1e12;
}

int run_bench(const BenchOptions& o) {
  auto device_backend = make_backend(o.backend);
  // With --profile the model runs on a timing wrapper, switched off for the timed steps.
  std::unique_ptr<ProfilingBackend> profiler;
  if (o.profile) {
    profiler = std::make_unique<ProfilingBackend>(*device_backend);
    profiler->set_enabled(false);
  }
  Backend* be = profiler ? static_cast<Backend*>(profiler.get()) : device_backend.get();
  const ModelConfig c = preset_config(o.arch);
  const TrainMode mode = o.mode == "full" ? TrainMode::kFull : TrainMode::kLora;
  LoraConfig lora;
  lora.r = static_cast<int>(o.lora_r);
  lora.alpha = 2.0f * lora.r;
  RunShape shape;
  shape.max_tokens = o.seq * o.micro_batch;
  shape.logits_chunk = o.logits_chunk;
  shape.with_optimizer = true;
  shape.base4 = o.quantize.layout();
  shape.offload_layers = o.offload_weights;
  shape.offload_optimizer = o.offload_optimizer;
  shape.offload_activations = o.offload_activations;
  if (!o.max_memory.empty())
    shape.max_memory = arena_cap(parse_byte_size(o.max_memory), be->reserved_bytes());
  shape = apply_recompute(o.recompute, shape, c, mode, lora, be->compute_dtype(), shape.max_memory);
  const std::string recompute = describe_recompute(c, shape);
  DeviceFiller filler(*be);
  if (o.squeeze >= 0) filler.leave_free(planned_device_bytes(*be, c, mode, lora, shape), o.squeeze);
  const size_t mem_before = be->memory_in_use();
  Transformer model(*be, c, mode, lora, shape);
  // The arena and the device memory that mapping the host buffers takes.
  const size_t planned = model.arena().bytes() + be->host_mapping_bytes(model.host_bytes());
  log::info("bench: {} {} on {}: arena {}{}\n{}", o.arch, o.mode, be->device_description(),
            format_bytes(model.arena().bytes()),
            model.host_bytes() ? " + " + format_bytes(model.host_bytes()) + " in host memory" : "",
            model.arena().plan().summary());
  std::vector<Tensor> weights;
  for (auto& [name, t] : model.named_weights()) weights.push_back(t);
  StoredQuant4 stored4 = stored_blob_views(model, be->compute_dtype(), weights);
  fill_random(*be, weights, 0.02f, 1);
  std::vector<Quant4Tensor*> copies4;
  for (auto& [own, copy] : stored4) copies4.push_back(&copy);
  fill_random_quant4(*be, copies4, 0.02f);
  for (auto& [own, copy] : stored4) own->offset = copy.offset, own->round_to = copy.round_to;
  std::vector<Tensor> host_weights;  // embedding_on_host: filled on the host
  for (auto& [name, t] : model.host_weights()) host_weights.push_back(t);
  if (!host_weights.empty()) fill_random(*make_backend("cpu"), host_weights, 0.02f, 1);
  std::vector<Quant4Tensor*> weights4;
  for (auto& [name, q] : model.quantized_weights()) weights4.push_back(q);
  fill_random_quant4(*be, weights4, 0.02f);
  for (Param& p : model.params())
    if (p.master.data != p.value.data) be->copy(p.value, p.master);
  if (mode == TrainMode::kLora) model.init_lora(3);

  // Unpacked: micro_batch rows of one segment each. Packed: each row cut into segments of random
  // lengths (cuDNN's variable-length graph on CUDA), several such batches in turn; every batch
  // runs in the warm-up, so plans for each segment-count bucket are built before timing.
  std::vector<TokenBatch> batches(o.packed ? static_cast<size_t>(o.packed_batches) : 1);
  std::mt19937 rng(5);
  std::mt19937_64 seg_rng(o.packed_seed);
  std::uniform_int_distribution<int64_t> seg_len(o.packed_min, o.packed_max);
  double attn_sq_sum = 0.0;  // Σ over segments of len², for the attention FLOP count
  std::string segment_counts;
  for (TokenBatch& batch : batches) {
    for (int64_t r = 0; r < o.micro_batch; ++r) {
      const int64_t row0 = r * o.seq;
      for (int64_t used = 0; used < o.seq;) {
        const int64_t len = o.packed ? std::min(seg_len(seg_rng), o.seq - used) : o.seq;
        batch.cu_seqlens.push_back(static_cast<int32_t>(row0 + used));
        attn_sq_sum += static_cast<double>(len) * len / static_cast<double>(batches.size());
        used += len;
      }
      for (int64_t i = 0; i < o.seq; ++i) batch.input_ids.push_back(rng() % c.vocab_size);
    }
    batch.cu_seqlens.push_back(static_cast<int32_t>(o.micro_batch * o.seq));
    batch.labels = batch.input_ids;
    segment_counts +=
        (segment_counts.empty() ? "" : ", ") + std::to_string(batch.cu_seqlens.size() - 1);
  }
  if (o.packed)
    log::info("bench: packed rows, segments of {}..{} tokens; segments per batch: {}", o.packed_min,
              o.packed_max, segment_counts);
  const TokenBatch& batch = batches[0];
  size_t next_batch = 0;

  AdamWParams hp;
  hp.lr = 1e-5f;
  auto step = [&](int64_t n) {
    const TokenBatch& b = batches[next_batch++ % batches.size()];
    const LossResult r = model.forward_backward(b, 1.0f / static_cast<float>(b.size()));
    hp.step = n;
    for (Param& p : model.optimizer_params()) {
      be->adamw_step(p.master, p.grad, p.adam_m, p.adam_v, hp, 1.0f);
      if (p.master.data != p.value.data) be->copy(p.master, p.value);
      be->fill(p.grad, 0.0f);
    }
    return r;
  };
  const int warmup = std::max<int>(o.warmup, static_cast<int>(batches.size()));
  for (int i = 0; i < warmup; ++i) step(i + 1);
  next_batch = 0;
  be->synchronize();
  const auto t0 = Clock::now();
  LossResult last;
  for (int i = 0; i < o.steps; ++i) last = step(warmup + i + 1);
  be->synchronize();
  const double secs = seconds_since(t0) / o.steps;
  const size_t measured = be->memory_in_use() > mem_before ? be->memory_in_use() - mem_before : 0;
  filler.release();  // the GEMM yardstick below allocates its own operands
  std::string profile;
  if (profiler) {
    profiler->set_enabled(true);
    for (int i = 0; i < o.steps; ++i) step(warmup + o.steps + i + 1);
    profiler->set_enabled(false);
    profile = profiler->report(o.steps);
  }

  const double tokens_per_s = static_cast<double>(batch.size()) / secs;
  // Model FLOPs per token: 2·P (every matmul weight incl. the LM head; of a mixture of experts
  // the k experts a token uses) + 4·L·S·D attention
  // (packed rows: S is the token-weighted mean segment length Σ len² / T);
  // a LoRA step counts 2× that (forward + activation grads), a full step 3×.
  const double attn_len = attn_sq_sum / static_cast<double>(batch.size());
  const int64_t matmul_params =
      c.active_parameter_count() -
      int64_t{c.vocab_size} * c.hidden_size * (c.tie_word_embeddings ? 0 : 1) -
      int64_t{c.hidden_size} * (2 * c.num_layers + 1) -
      (c.qk_norm ? int64_t{2} * c.head_dim * c.num_layers : 0);
  const double per_token =
      2.0 * static_cast<double>(matmul_params) + 4.0 * c.num_layers * attn_len * c.q_dim();
  const double tflops = per_token * (mode == TrainMode::kFull ? 3.0 : 2.0) * tokens_per_s / 1e12;
  const double gemm = measure_gemm_tflops(*be, o.gemm_size);
  if (o.json) {
    fmt::print(
        "{{\"arch\": \"{}\", \"mode\": \"{}\", \"device\": \"{}\", \"seq\": {}, \"micro_batch\": "
        "{}, "
        "\"recompute\": \"{}\", \"tokens_per_s\": {:.1f}, \"model_tflops\": {:.2f}, "
        "\"gemm_tflops\": {:.2f}, \"gemm_fraction\": {:.3f}, \"planned_bytes\": {}, "
        "\"measured_bytes\": {}, \"loss\": {:.4f}, \"packed\": {}, \"segments\": [{}], "
        "\"quantize\": \"{}\", \"host_bytes\": {}, \"reserved_bytes\": {}, \"squeeze\": {}}}\n",
        o.arch, o.mode, be->device_description(), o.seq, o.micro_batch, recompute, tokens_per_s,
        tflops, gemm, tflops / gemm, planned, measured,
        last.loss_sum / std::max<int64_t>(1, last.tokens), o.packed, segment_counts,
        o.quantize.type.empty() ? "none" : o.quantize.type, model.host_bytes(),
        be->reserved_bytes(), o.squeeze);
  } else {
    fmt::print("{} {}{} seq {} × {} recompute {} on {}\n", o.arch, o.mode,
               o.quantize.type.empty() ? "" : " on a 4-bit " + o.quantize.type + " base", o.seq,
               o.micro_batch, recompute, be->device_description());
    if (o.packed)
      fmt::print("  packed rows: segments of {}..{} tokens, {} per batch over {} batches\n",
                 o.packed_min, o.packed_max, segment_counts, batches.size());
    fmt::print(
        "  {:.0f} tokens/s, {:.3f} s/step, model {:.3g} TFLOP/s = {:.1f}% of the measured "
        "{:.3g} TFLOP/s GEMM rate\n",
        tokens_per_s, secs, tflops, 100.0 * tflops / gemm, gemm);
    fmt::print(
        "  memory: planned {} , measured {}{}\n", format_bytes(planned),
        measured ? format_bytes(measured) : std::string("n/a on this backend"),
        model.host_bytes() ? ", + " + format_bytes(model.host_bytes()) + " in host memory" : "");
  }
  if (!profile.empty()) fmt::print("profile (ops timed one by one; per step):\n{}", profile);
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  std::string presets;
  for (const auto& n : preset_names()) presets += (presets.empty() ? "" : ", ") + n;
  app.add_option("--arch", o->arch, "Architecture preset: " + presets)->capture_default_str();
  o->quantize.add_to(app);
  app.add_option("--backend", o->backend, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--mode", o->mode, "lora or full")
      ->check(CLI::IsMember({"lora", "full"}))
      ->capture_default_str();
  add_recompute_options(app, o->recompute);
  app.add_option("--max-memory", o->max_memory,
                 "Arena cap, e.g. 20GiB: a plan over it is refused (exit 3); with --recompute auto "
                 "it picks how many layers to recompute");
  app.add_option("--seq", o->seq, "Sequence length")->capture_default_str();
  app.add_option("--micro-batch", o->micro_batch, "Sequences per step")->capture_default_str();
  app.add_option(
         "--lora-r", o->lora_r,
         "LoRA rank (all seven projections; the four attention ones on a mixture of experts)")
      ->capture_default_str();
  app.add_option("--logits-chunk", o->logits_chunk, "Rows of logits per loss chunk")
      ->capture_default_str();
  app.add_option("--warmup", o->warmup, "Untimed steps")->capture_default_str();
  app.add_option("--steps", o->steps, "Timed steps")->capture_default_str();
  app.add_option("--gemm-size", o->gemm_size, "n of the n³ GEMM whose rate is the yardstick")
      ->capture_default_str();
  app.add_flag("--json", o->json, "One JSON line");
  app.add_option("--squeeze", o->squeeze,
                 "Before building the model, fill the device so that only the plan's bytes and "
                 "this percentage more stay free: a step that allocated outside its plan fails "
                 "with out-of-memory (CUDA)")
      ->check(CLI::Range(0.0, 100.0));
  app.add_flag("--offload-optimizer", o->offload_optimizer,
               "Keep the f32 masters and AdamW moments in host memory (the optimizer's kernels "
               "update them there)");
  app.add_flag("--offload-activations", o->offload_activations,
               "Keep every layer's input (saved for backward) in host memory, copied out in "
               "forward and back in backward, one layer ahead");
  app.add_flag("--offload-weights", o->offload_weights,
               "Keep every layer's frozen weights in host memory, copied in per layer (LoRA, "
               "QLoRA)");
  app.add_flag("--packed", o->packed,
               "Pack each row from segments of random lengths (seeded; see --packed-min/-max), "
               "several batches in turn, so that packed attention (cu_seqlens) is measured");
  app.add_option("--packed-min", o->packed_min, "Shortest segment with --packed")
      ->capture_default_str();
  app.add_option("--packed-max", o->packed_max, "Longest segment with --packed")
      ->capture_default_str();
  app.add_option("--packed-batches", o->packed_batches, "Distinct packed batches, used in turn")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--packed-seed", o->packed_seed, "Seed of the segment lengths")
      ->capture_default_str();
  app.add_flag("--profile", o->profile,
               "After the timed steps, run as many again with every op timed on its own and print "
               "the time per op family (GEMM, attention, norms, ...)");
  return [o] { return run_bench(*o); };
}

CommandRegistration reg{"bench", "Training-step speed and memory of a real architecture's shapes",
                        setup};

}  // namespace
}  // namespace fitlm::cli
