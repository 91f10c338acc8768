// `strategy: auto` and `micro_batch_size: auto` in `fitlm train`: the planner's search
// (plan/search.h) over what the config leaves open — the strategy over several ranks, the
// micro-batch, and recompute when gradient_checkpointing is auto — with everything the config
// names held fixed (offload, the adapter and its 4-bit base, the dtype, the accumulation or the
// global batch). Each GPU is capped at max_memory (or its entry of the per-GPU list), and every
// candidate's memory is the runtime's own plan for that rank, so the choice runs in what it
// claims. Every rank computes the same choice from the config alone (no communication).
#pragma once

#include <optional>
#include <string>

#include "fitlm/model/transformer.h"
#include "fitlm/plan/search.h"
#include "fitlm/train/train_config.h"

namespace fitlm::train {

// What the search needs to know of this job besides its config.
struct AutoChoiceJob {
  ModelConfig model;
  int world = 1;
  TrainMode mode = TrainMode::kLora;
  LoraConfig lora;
  std::optional<Base4Layout> base4;  // a 4-bit base (QLoRA)
  DType dtype = DType::kF32;         // the backend's storage dtype
  size_t reserved_bytes = 0;         // the backend's own device reserve outside the arena
  bool cpu = true;                   // CPU ranks: no host mapping, and a generic rate
  std::string device_description;    // CUDA: names the GPU model for its published rates
};

// Whether the config leaves something for the search: micro_batch_size: auto, or strategy: auto
// over several ranks with max_memory.
bool wants_auto_choice(const TrainConfig& c, int world);

plan::SearchRequest auto_search_request(const TrainConfig& c, const AutoChoiceJob& job);

// The fastest candidate that fits (the search's first). When none fits: exit-3 error with the
// closest candidate and what would make the job fit.
plan::Candidate choose_auto(const TrainConfig& c, const AutoChoiceJob& job);

// Writes the candidate's strategy, micro-batch, accumulation and recompute into the config.
void apply_auto_choice(const plan::Candidate& k, TrainConfig& c);

}  // namespace fitlm::train
