#include "fitlm/plan/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"
#include "fitlm/dist/gpu_comm_memory.h"
#include "fitlm/dist/pipeline_schedule.h"
#include "fitlm/model/stage_partition.h"

namespace fitlm::plan {
namespace {

// ---- cost model constants (docs/planning.md, "The cost model") ------------------------------
// Fitted by scripts/cost_model_fit.py to 25 measured steps (bench/NOTES.md sessions 4, 12 and 13:
// one H100 and one H200; Llama-3.2-1B … Qwen2.5-32B, Qwen3-30B-A3B; LoRA, QLoRA, full; with and
// without recompute and offload): every one within 6.5%, leave-one-out within 10.1%.
// GEMM FLOPs run at kPeakEfficiency · T / (T + kHalfTokens) of the published dense rate, T the
// tokens one GEMM sees (a micro-batch; for an expert, its average share of the routed tokens).
constexpr double kPeakEfficiency = 0.64;
constexpr double kHalfTokens = 100.0;
// Recomputing a layer costs this share of its forward (its saved inputs need no recompute).
constexpr double kRecomputeShare = 0.8;
// Memory-bound work at kHbmEfficiency of the published HBM rate, in bytes per token:
// elementwise ops (norms, RoPE, SwiGLU, residuals, LoRA's narrow GEMMs) move kElementwisePasses ·
// 2 · (hidden + MLP width) per layer per pass (forward 1, backward 2, recompute 1); the loss
// head kLogitPasses · 4 · vocab (f32 logits chunk, softmax, its gradient); a mixture-of-experts
// layer kPermutePasses · 2 · top-k · hidden (the gather to expert order and back) per pass.
constexpr double kHbmEfficiency = 0.8;
constexpr double kElementwisePasses = 4.5;
constexpr double kLogitPasses = 17.0;
constexpr double kPermutePasses = 25.0;
// QLoRA dequantizes each layer's 4-bit base before every pass over it (forward, backward,
// recompute): kDequantBytesPerParam bytes of HBM traffic per parameter per pass.
constexpr double kDequantBytesPerParam = 1.6;
// AdamW on the device reads and writes ~30 bytes per trainable parameter (f32 master, grad, two
// moments; the 16-bit copy) once per optimizer step.
constexpr double kAdamBytesPerParam = 30.0;
// Offload copies overlap compute, but not fully: the shorter of the two adds this share.
constexpr double kOverlapLoss = 0.1;
// Transfers reach this share of a link's published per-direction rate: 16-bit weight offload
// moved ~53 GB/s over the H200's PCIe gen5 (63 GB/s) in bench/NOTES.md session 8.
constexpr double kLinkEfficiency = 0.83;
// Optimizer offload: the AdamW kernel reads and writes 24 bytes per trainable parameter of
// host memory; measured 65–68 GB/s of state traffic on gen5 (reads and writes share the duplex
// link): ~1.05× the per-direction rate.
constexpr double kOptimizerOffloadLinkShare = 1.05;
constexpr double kNf4BytesPerParam = 0.5 + 1.0 / 64 + 4.0 / (64.0 * 256.0);  // nibbles + absmax

// Per-token work of the model, per decoder layer averaged over the layers (a stage's share is
// its layer count times these).
struct Dims {
  double layer_flops = 0;   // forward: attention projections, attention, a dense layer's MLP
  double expert_flops = 0;  // forward: the experts a token uses
  double elementwise_width = 0, permute_width = 0;  // hidden + MLP width; top-k · hidden
  double head = 0;                                  // forward FLOPs of the LM head
  double lora_extra = 0;  // LoRA adapter FLOPs (forward + backward), whole model
  double trainable = 0, layer_weight_params = 0;
  double expert_tokens_share = 1;  // an expert's share of a micro-batch: top-k / experts
};

Dims dims(const ModelConfig& c, FineTune mode, int lora_r, int64_t seq) {
  Dims d;
  const double h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), L = c.num_layers;
  const double k = c.moe.experts_per_token, wi = c.moe.expert_intermediate_size;
  for (int l = 0; l < c.num_layers; ++l) {
    d.layer_flops += 2.0 * (2 * h * q + 2 * h * kv) + 4.0 * static_cast<double>(seq) * q;
    if (c.sparse_layer(l)) {
      d.expert_flops += 2.0 * k * 3 * h * wi;
      d.elementwise_width += h + k * wi;
      d.permute_width += k * h;
    } else {
      d.layer_flops += 2.0 * 3 * h * c.intermediate_size;
      d.elementwise_width += h + c.intermediate_size;
    }
  }
  for (double* x : {&d.layer_flops, &d.expert_flops, &d.elementwise_width, &d.permute_width})
    *x /= L;
  if (c.has_sparse_layers()) d.expert_tokens_share = k / c.moe.num_experts;
  d.head = 2.0 * c.vocab_size * h;
  const double lora = static_cast<double>(lora_parameter_count(c, lora_r));
  d.trainable = mode == FineTune::kFull ? static_cast<double>(c.parameter_count()) : lora;
  d.lora_extra = mode == FineTune::kFull ? 0.0 : 6.0 * lora;
  const double embed = static_cast<double>(c.vocab_size) * h;
  d.layer_weight_params =
      (static_cast<double>(c.parameter_count()) - embed * (c.tie_word_embeddings ? 1 : 2)) / L;
  return d;
}

int strategy_order(const std::string& s) {
  static const std::vector<std::string> order = {"single", "ddp", "zero2", "zero3", "pipeline"};
  return static_cast<int>(std::find(order.begin(), order.end(), s) - order.begin());
}
int offload_mask(const Candidate& c) {
  return (c.offload_optimizer ? 1 : 0) | (c.offload_weights ? 2 : 0) |
         (c.offload_activations ? 4 : 0);
}
auto order_key(const Candidate& c) {
  return std::make_tuple(strategy_order(c.strategy), c.nf4, c.micro_batch, c.recompute,
                         offload_mask(c));
}

RunShape base_shape(const SearchRequest& r, const Candidate& k) {
  RunShape s;
  s.max_tokens = r.seq * k.micro_batch;
  s.logits_chunk = r.logits_chunk;
  s.with_optimizer = true;
  s.recompute = k.recompute ? RecomputePolicy::kFull : RecomputePolicy::kSave;
  s.offload_layers = k.offload_weights;
  s.offload_optimizer = k.offload_optimizer;
  s.offload_activations = k.offload_activations;
  if (k.nf4) s.base4 = r.fixed.base4.value_or(Base4Layout{});
  return s;
}

LoraConfig lora_of(const SearchRequest& r) {
  if (r.fixed.lora) return *r.fixed.lora;
  LoraConfig lora;
  lora.r = r.lora_r;
  return lora;
}

size_t device_extra(const SearchRequest& r, size_t host_bytes, int world, DType dtype) {
  return r.fixed.fixed_device_bytes.value_or(kCudaFixedWorkspaceBytes) +
         (r.fixed.maps_host_memory ? cuda_host_mapping_bytes(host_bytes) : 0) +
         (world > 1 && dtype != DType::kF32 ? dist::gpu_comm_reserved_bytes(world) : 0);
}

// Fills device/host bytes and the memory verdict from the per-rank arena and host bytes.
void judge_memory(const SearchRequest& r, Candidate& k) {
  const int n = static_cast<int>(r.gpus.size());
  k.device_bytes.clear();
  k.host_bytes = 0;
  k.over_ratio = -std::numeric_limits<double>::infinity();
  for (int g = 0; g < n; ++g) {
    const size_t total = k.arena_bytes[static_cast<size_t>(g)] +
                         device_extra(r, k.rank_host_bytes[static_cast<size_t>(g)], n, k.dtype);
    k.device_bytes.push_back(total);
    k.host_bytes += k.rank_host_bytes[static_cast<size_t>(g)];
    const double mem = static_cast<double>(r.gpus[static_cast<size_t>(g)].memory_bytes);
    const double ratio = static_cast<double>(total) / mem - 1.0;
    if (ratio > k.over_ratio) {
      k.over_ratio = ratio;
      k.over_gpu = g;
    }
  }
  const size_t worst = k.device_bytes[static_cast<size_t>(k.over_gpu)];
  const size_t mem = r.gpus[static_cast<size_t>(k.over_gpu)].memory_bytes;
  if (worst > mem) {
    k.status = Candidate::Status::kOverMemory;
    k.over_bytes = worst - mem;
    k.reason = fmt::format("GPU {} ({}) needs {} of {}: over by {}", k.over_gpu,
                           r.gpus[static_cast<size_t>(k.over_gpu)].name, format_bytes(worst),
                           format_bytes(mem), format_bytes(k.over_bytes));
  } else if (k.host_bytes > r.host_memory) {
    k.status = Candidate::Status::kOverHost;
    k.over_bytes = k.host_bytes - r.host_memory;
    k.reason = fmt::format("host memory: needs {} of {}: over by {}", format_bytes(k.host_bytes),
                           format_bytes(r.host_memory), format_bytes(k.over_bytes));
  } else {
    k.status = Candidate::Status::kFits;
  }
}

double rate(const GpuSpec& g, double tokens) {
  return g.tensor_tflops * 1e12 * compute_efficiency(tokens);
}
double hbm_rate(const GpuSpec& g) {
  return g.hbm_gbps * 1e9 * kHbmEfficiency;
}
double link_rate(double gbps) {
  return gbps * 1e9 * kLinkEfficiency;
}

// Predicted step time and tokens per step (docs/planning.md, "The cost model").
void predict_speed(const SearchRequest& r, const Dims& d, Candidate& k) {
  const int n = static_cast<int>(r.gpus.size());
  const int64_t tokens = r.seq * k.micro_batch;
  const double train_mult = r.mode == FineTune::kFull ? 3.0 : 2.0;
  const double layer_passes = train_mult + (k.recompute ? kRecomputeShare : 0.0);
  const double memory_passes = 3.0 + (k.recompute ? 1.0 : 0.0);  // forward, backward ×2, recompute
  const double weight_bytes = d.layer_weight_params * (k.nf4 ? kNf4BytesPerParam : 2.0);
  const double act_bytes = static_cast<double>(tokens) * r.config.hidden_size * 2.0;
  const double min_link = std::min_element(r.gpus.begin(), r.gpus.end(), [](auto& a, auto& b) {
                            return a.link_gbps < b.link_gbps;
                          })->link_gbps;
  const double min_pcie = std::min_element(r.gpus.begin(), r.gpus.end(), [](auto& a, auto& b) {
                            return a.pcie_gbps < b.pcie_gbps;
                          })->pcie_gbps;
  // One micro-batch over `layers` decoder layers (+ the head) on GPU g: GEMMs, memory-bound
  // work, QLoRA's dequantization, then the offload copies (weights in for forward and backward;
  // layer inputs out and back in), which overlap it but not fully.
  auto micro_time = [&](const GpuSpec& g, int layers, bool head) {
    const double T = static_cast<double>(tokens);
    const double share = static_cast<double>(layers) / r.config.num_layers;
    double t = T * layers * d.layer_flops * layer_passes / rate(g, T) +
               T * d.lora_extra * share / rate(g, T);
    if (d.expert_flops > 0)
      t += T * layers * d.expert_flops * layer_passes / rate(g, T * d.expert_tokens_share);
    double bytes =
        T * layers * memory_passes *
        (kElementwisePasses * 2.0 * d.elementwise_width + kPermutePasses * 2.0 * d.permute_width);
    if (head) {
      t += T * d.head * train_mult / rate(g, T);
      bytes += T * kLogitPasses * 4.0 * r.config.vocab_size;
    }
    if (k.nf4)
      bytes +=
          layers * d.layer_weight_params * kDequantBytesPerParam * (2.0 + (k.recompute ? 1 : 0));
    t += bytes / hbm_rate(g);
    double copies = 0;
    if (k.offload_weights) copies += 2.0 * layers * weight_bytes;
    if (k.offload_activations) copies += 2.0 * layers * act_bytes;
    const double copy = copies / link_rate(g.pcie_gbps);
    return std::max(t, copy) + kOverlapLoss * std::min(t, copy);
  };
  // The optimizer step over `trainable` parameters (on the device, or streamed from the host).
  auto optimizer_time = [&](const GpuSpec& g, double trainable) {
    return k.offload_optimizer ? 24.0 * trainable / (min_pcie * 1e9 * kOptimizerOffloadLinkShare)
                               : kAdamBytesPerParam * trainable / hbm_rate(g);
  };
  const double grad_bytes = d.trainable * 4.0;  // f32 gradients and masters
  double step = 0;
  if (k.strategy == "pipeline") {
    const int stages = static_cast<int>(k.stages.size());
    double slowest = 0, trainable_max = 0;
    for (int s = 0; s < stages; ++s) {
      const RunShape::Stage& st = k.stages[static_cast<size_t>(s)];
      const int layers = st.end_layer - st.first_layer;
      slowest =
          std::max(slowest, micro_time(r.gpus[static_cast<size_t>(s)], layers, s + 1 == stages));
      trainable_max = std::max(trainable_max, d.trainable * layers / r.config.num_layers);
    }
    const double send = 2.0 * act_bytes / link_rate(min_link);  // hidden state + its gradient
    step =
        (k.accumulation + stages - 1) * (slowest + send) + optimizer_time(r.gpus[0], trainable_max);
    k.tokens_per_step = static_cast<int64_t>(k.accumulation) * tokens;
  } else {
    double slowest = 0;
    for (const GpuSpec& g : r.gpus)
      slowest = std::max(slowest, micro_time(g, r.config.num_layers, true));
    const double share = n > 1 ? static_cast<double>(n - 1) / n : 0.0;
    double gather = 0;  // zero3: every layer's frozen weights, in forward and backward
    if (k.strategy == "zero3")
      gather = 2.0 * r.config.num_layers * share * weight_bytes / link_rate(min_link);
    step = k.accumulation * (slowest + gather);
    if (k.strategy == "ddp" && n > 1)
      step += 2.0 * share * grad_bytes / link_rate(min_link);  // ring all-reduce
    if (k.strategy == "zero2" || k.strategy == "zero3")
      step += share * (grad_bytes + d.trainable * 2.0) / link_rate(min_link);  // RS + AG
    const double block = k.strategy == "ddp" || n == 1 ? d.trainable : d.trainable / n;
    step += optimizer_time(r.gpus[0], block);
    k.tokens_per_step = static_cast<int64_t>(n) * k.accumulation * tokens;
  }
  k.step_seconds = step;
  k.tokens_per_s = static_cast<double>(k.tokens_per_step) / step;
}

void evaluate(const SearchRequest& r, const Dims& d, Candidate& k) {
  const int n = static_cast<int>(r.gpus.size());
  const TrainMode mode = r.mode == FineTune::kFull ? TrainMode::kFull : TrainMode::kLora;
  const LoraConfig lora = lora_of(r);
  const RunShape base = base_shape(r, k);
  k.arena_bytes.assign(static_cast<size_t>(n), 0);
  k.rank_host_bytes.assign(static_cast<size_t>(n), 0);
  try {
    if (k.strategy == "pipeline") {
      const std::vector<int> in_flight = dist::one_f_one_b_in_flight_per_stage(n, k.accumulation);
      std::vector<size_t> caps;
      for (const GpuSpec& g : r.gpus) {
        const size_t extra = device_extra(r, 0, n, k.dtype);
        caps.push_back(g.memory_bytes > extra ? g.memory_bytes - extra : 1);
      }
      try {
        k.stages = partition_stages(r.config, mode, lora, base, k.dtype, caps, in_flight);
      } catch (const Error& e) {
        if (e.code() != ExitCode::kNoFit) throw;
        // No split fits: judge the even split, for how far over it is.
        k.stages.clear();
        const int L = r.config.num_layers;
        for (int s = 0; s < n; ++s)
          k.stages.push_back({s * L / n, (s + 1) * L / n, in_flight[static_cast<size_t>(s)]});
      }
      for (int s = 0; s < n; ++s) {
        RunShape st = base;
        st.stage = k.stages[static_cast<size_t>(s)];
        k.arena_bytes[static_cast<size_t>(s)] =
            plan_transformer(r.config, mode, lora, st, k.dtype).total_bytes();
        k.rank_host_bytes[static_cast<size_t>(s)] =
            plan_transformer_host(r.config, mode, lora, st, k.dtype).total_bytes();
      }
    } else {
      for (int g = 0; g < n; ++g) {
        RunShape s = base;
        if (n > 1 && k.strategy != "ddp") s.optimizer_shard = ShardSpec{g, n};
        if (n > 1 && k.strategy == "zero3") s.layer_shard = ShardSpec{g, n};
        k.arena_bytes[static_cast<size_t>(g)] =
            plan_transformer(r.config, mode, lora, s, k.dtype).total_bytes();
        k.rank_host_bytes[static_cast<size_t>(g)] =
            plan_transformer_host(r.config, mode, lora, s, k.dtype).total_bytes();
      }
    }
  } catch (const Error& e) {
    k.status = Candidate::Status::kRefused;
    k.reason = e.message();
    return;
  }
  judge_memory(r, k);
  predict_speed(r, d, k);
}

std::vector<Candidate> enumerate(const SearchRequest& r) {
  const int n = static_cast<int>(r.gpus.size());
  const bool all_bf16 =
      std::all_of(r.gpus.begin(), r.gpus.end(), [](const GpuSpec& g) { return g.bf16; });
  std::vector<std::string> strategies =
      n == 1 ? std::vector<std::string>{"single"}
             : std::vector<std::string>{"ddp", "zero2", "zero3", "pipeline"};
  if (!r.fixed.strategies.empty() && n > 1) strategies = r.fixed.strategies;
  const auto allowed = [](const std::optional<bool>& fixed, bool value) {
    return !fixed || *fixed == value;
  };
  std::vector<bool> quant;
  if (r.mode == FineTune::kQlora)
    quant = {true};
  else if (r.mode == FineTune::kLora && r.allow_quantize)
    quant = {false, true};
  else
    quant = {false};
  std::vector<Candidate> out;
  for (const std::string& strategy : strategies)
    for (bool nf4 : quant)
      for (int mb = 1; mb <= std::max(1, r.max_micro_batch); mb *= 2)
        for (bool recompute : {false, true})
          for (int mask = 0; mask < 8; ++mask) {
            Candidate k;
            k.strategy = strategy;
            k.nf4 = nf4;
            k.micro_batch = mb;
            k.recompute = recompute;
            k.offload_optimizer = mask & 1;
            k.offload_weights = mask & 2;
            k.offload_activations = mask & 4;
            k.dtype = r.fixed.dtype.value_or(all_bf16 ? DType::kBF16 : DType::kF16);
            if (r.fixed.micro_batch && mb != 1) continue;  // the fixed one, once
            if (r.fixed.micro_batch) k.micro_batch = *r.fixed.micro_batch;
            if (!allowed(r.fixed.recompute, recompute) ||
                !allowed(r.fixed.offload_optimizer, k.offload_optimizer) ||
                !allowed(r.fixed.offload_weights, k.offload_weights) ||
                !allowed(r.fixed.offload_activations, k.offload_activations))
              continue;
            // Frozen-weight offload is for LoRA and QLoRA: full fine-tuning trains them.
            if (r.mode == FineTune::kFull && k.offload_weights) continue;
            const bool pipe = strategy == "pipeline";
            const int64_t per_step = pipe ? k.micro_batch : int64_t{k.micro_batch} * n;
            if (r.global_batch > 0) {
              if (r.global_batch % per_step != 0) continue;  // cannot keep the global batch
              k.accumulation = static_cast<int>(r.global_batch / per_step);
            } else {
              k.accumulation = r.fixed.accumulation.value_or(pipe ? 4 * n : 1);
            }
            out.push_back(std::move(k));
          }
  return out;
}

std::string fit_summary(const Candidate& k) {
  return fmt::format("{} at {:.0f} tok/s, {} per GPU", k.describe(), k.tokens_per_s,
                     format_bytes(k.peak_bytes()));
}

void suggest(const SearchRequest& r, SearchResult& result) {
  const Candidate* near = nullptr;
  for (const Candidate& k : result.excluded)
    if (k.status == Candidate::Status::kOverMemory && (!near || k.over_ratio < near->over_ratio))
      near = &k;
  const Candidate* host = nullptr;
  for (const Candidate& k : result.excluded)
    if (k.status == Candidate::Status::kOverHost && (!host || k.host_bytes < host->host_bytes))
      host = &k;
  if (near)
    result.suggestions.push_back(fmt::format("closest: {} ({})", near->describe(), near->reason));
  if (host)
    result.suggestions.push_back(fmt::format(
        "more host memory: {} fits the GPUs but needs {} of host memory (--host-memory {})",
        host->describe(), format_bytes(host->host_bytes), format_bytes(r.host_memory)));
  auto variant = [&](SearchRequest v) {
    v.suggest = false;
    v.max_micro_batch = 1;  // only whether anything fits: the smallest micro-batch
    SearchResult s = search(v);
    return s.fitting.empty() ? std::optional<Candidate>() : s.fitting.front();
  };
  if (r.mode == FineTune::kLora && !r.allow_quantize) {
    SearchRequest v = r;
    v.allow_quantize = true;
    if (auto best = variant(v))
      result.suggestions.push_back("--allow-quantize (QLoRA, an NF4 base): " + fit_summary(*best));
  }
  for (int64_t seq = r.seq / 2; seq >= std::max<int64_t>(128, r.seq / 8); seq /= 2) {
    SearchRequest v = r;
    v.seq = seq;
    if (auto best = variant(v)) {
      result.suggestions.push_back(
          fmt::format("shorter sequences: --seq {}: {}", seq, fit_summary(*best)));
      break;
    }
  }
  if (r.gpus.size() <= 8) {
    for (int times : {2}) {
      SearchRequest v = r;
      v.gpus.clear();
      for (int i = 0; i < times; ++i) v.gpus.insert(v.gpus.end(), r.gpus.begin(), r.gpus.end());
      if (auto best = variant(v)) {
        result.suggestions.push_back(
            fmt::format("more GPUs: {} × {} GPUs: {}", times, r.gpus.size(), fit_summary(*best)));
        break;
      }
    }
  }
  if (near)
    result.suggestions.push_back(
        fmt::format("larger GPUs: the closest candidate needs {} on GPU {} ({} has {})",
                    format_bytes(near->device_bytes[static_cast<size_t>(near->over_gpu)]),
                    near->over_gpu, r.gpus[static_cast<size_t>(near->over_gpu)].name,
                    format_bytes(r.gpus[static_cast<size_t>(near->over_gpu)].memory_bytes)));
}

}  // namespace

double forward_flops_per_token(const ModelConfig& c, int64_t seq) {
  const int64_t matmul_params =
      c.active_parameter_count() -
      int64_t{c.vocab_size} * c.hidden_size * (c.tie_word_embeddings ? 0 : 1) -
      int64_t{c.hidden_size} * (2 * c.num_layers + 1) -
      (c.qk_norm ? int64_t{2} * c.head_dim * c.num_layers : 0);
  return 2.0 * static_cast<double>(matmul_params) +
         4.0 * c.num_layers * static_cast<double>(seq) * c.q_dim();
}

int64_t lora_parameter_count(const ModelConfig& c, int r) {
  int64_t total = 0;
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), i = c.intermediate_size;
  for (int l = 0; l < c.num_layers; ++l) {
    total += r * ((h + q) + 2 * (h + kv) + (q + h));
    if (!c.sparse_layer(l)) total += r * (3 * (h + i));
  }
  return total;
}

double compute_efficiency(double tokens) {
  return kPeakEfficiency * tokens / (tokens + kHalfTokens);
}

size_t Candidate::peak_bytes() const {
  return device_bytes.empty() ? 0 : *std::max_element(device_bytes.begin(), device_bytes.end());
}

std::string Candidate::offload() const {
  std::string s;
  if (offload_optimizer) s += "optimizer";
  if (offload_weights) s += std::string(s.empty() ? "" : ",") + "weights";
  if (offload_activations) s += std::string(s.empty() ? "" : ",") + "activations";
  return s.empty() ? "none" : s;
}

std::string Candidate::describe() const {
  return fmt::format("{} mb {} × {}, recompute {}, offload {}, {}{}", strategy, micro_batch,
                     accumulation, recompute ? "full" : "none", offload(), nf4 ? "nf4 base, " : "",
                     dtype_name(dtype));
}

SearchResult search(const SearchRequest& r) {
  if (r.gpus.empty()) throw_input_error("plan", "no GPUs to plan for");
  if (r.seq < 1) throw_input_error("plan", "--seq must be at least 1, found {}", r.seq);
  if (r.global_batch < 0)
    throw_input_error("plan", "--global-batch must be positive, found {}", r.global_batch);
  const Dims d = dims(r.config, r.mode, r.lora_r, r.seq);
  SearchResult result;
  for (Candidate& k : enumerate(r)) {
    evaluate(r, d, k);
    (k.status == Candidate::Status::kFits ? result.fitting : result.excluded)
        .push_back(std::move(k));
  }
  std::stable_sort(result.fitting.begin(), result.fitting.end(),
                   [](const Candidate& a, const Candidate& b) {
                     if (a.tokens_per_s != b.tokens_per_s) return a.tokens_per_s > b.tokens_per_s;
                     if (a.peak_bytes() != b.peak_bytes()) return a.peak_bytes() < b.peak_bytes();
                     return order_key(a) < order_key(b);
                   });
  if (result.fitting.empty() && r.suggest) suggest(r, result);
  return result;
}

}  // namespace fitlm::plan
