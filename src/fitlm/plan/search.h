// `fitlm plan --gpus`: the search over training configurations for a model on a set of GPUs.
// Every candidate's memory is the runtime's own plan (plan_transformer per rank, partition_stages
// for a pipeline) plus what the CUDA backend and the GPU comm allocate outside the arena; its
// speed comes from a documented cost model (docs/planning.md) on the GPUs' published rates.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "fitlm/model/transformer.h"
#include "fitlm/plan/gpu_catalog.h"

namespace fitlm::plan {

enum class FineTune { kLora, kQlora, kFull };

struct SearchRequest {
  ModelConfig config;
  FineTune mode = FineTune::kLora;
  int64_t seq = 2048;
  int64_t global_batch = 0;  // sequences per optimizer step; 0: each candidate's own (no
                             // accumulation; a pipeline 4 × stages micro-batches)
  std::vector<GpuSpec> gpus;
  size_t host_memory = 0;       // bytes the job may pin on the host
  bool allow_quantize = false;  // LoRA may become QLoRA (an NF4 base)
  int lora_r = 16;
  int64_t logits_chunk = 1024;
  int max_micro_batch = 16;  // micro-batches tried: 1, 2, 4, ... up to this
  bool suggest = true;       // when nothing fits, search variants for a suggestion

  // What a caller has fixed (fitlm train: what its config names); unset means searched.
  struct Fixed {
    std::vector<std::string> strategies;  // empty: every strategy for the GPU count
    std::optional<int> micro_batch;
    std::optional<int> accumulation;  // without a global batch: micro-batches per rank per step
    std::optional<bool> recompute, offload_weights, offload_optimizer, offload_activations;
    std::optional<DType> dtype;                // the backend's storage dtype
    std::optional<LoraConfig> lora;            // the adapter's own (default: r = lora_r, all seven)
    std::optional<Base4Layout> base4;          // the 4-bit base's layout (default: NF4, 64, double)
    std::optional<size_t> fixed_device_bytes;  // the backend's own reserve (default: CUDA's)
    bool maps_host_memory = true;              // mapped host memory costs device memory (CUDA)
  } fixed;
};

struct Candidate {
  std::string strategy;  // single, ddp, zero2, zero3, pipeline
  int micro_batch = 1;   // sequences per micro-batch
  int accumulation = 1;  // micro-batches per rank per optimizer step (pipeline: per step)
  bool recompute = false;
  bool offload_weights = false, offload_optimizer = false, offload_activations = false;
  bool nf4 = false;
  DType dtype = DType::kBF16;
  std::vector<RunShape::Stage> stages;  // pipeline: the split
  // Per GPU (rank r on gpus[r]): the arena (plan_transformer's total), the host bytes of its
  // plan_transformer_host, and the device total: arena + CUDA fixed workspace + the device-side
  // cost of mapped host memory + GPU comm staging (several ranks).
  std::vector<size_t> arena_bytes, rank_host_bytes, device_bytes;
  size_t host_bytes = 0;  // all ranks on the one machine
  enum class Status { kFits, kOverMemory, kOverHost, kRefused } status = Status::kRefused;
  std::string reason;  // why excluded: the plan's message, or which GPU is over by how much
  int over_gpu = -1;   // kOverMemory: the GPU most over its memory
  size_t over_bytes = 0;
  double over_ratio = 0;  // kOverMemory: the largest (bytes needed / memory) − 1 over the GPUs
  double tokens_per_s = 0;
  double step_seconds = 0;
  int64_t tokens_per_step = 0;

  size_t peak_bytes() const;     // max over GPUs of device_bytes
  std::string offload() const;   // "none", "optimizer", "weights,activations", ...
  std::string describe() const;  // "zero2 mb 4 × 2, recompute full, offload none, bf16"
};

struct SearchResult {
  std::vector<Candidate> fitting;        // best first: predicted tokens/s, then lower peak memory
  std::vector<Candidate> excluded;       // in enumeration order
  std::vector<std::string> suggestions;  // when nothing fits: what would make it fit
};

SearchResult search(const SearchRequest& request);

// The cost model's pieces (docs/planning.md), exposed for tests and docs.
// Forward FLOPs per token as `fitlm bench` counts them: 2 · matmul parameters (the LM head
// included; a mixture of experts counts the experts a token uses) + 4 · layers · seq · q_dim.
double forward_flops_per_token(const ModelConfig& config, int64_t seq);
int64_t lora_parameter_count(const ModelConfig& config, int r);
// The share of a GPU's published dense rate a GEMM over `tokens` rows reaches.
double compute_efficiency(double tokens);

}  // namespace fitlm::plan
