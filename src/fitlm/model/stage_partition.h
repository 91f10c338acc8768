// Splitting a model's decoder layers into pipeline stages, one per GPU, so that every stage's
// plan — the same plan_transformer the stage allocates, with its embedding or head and one slot
// of activations per micro-batch it holds in flight — fits that GPU's own cap.
#pragma once

#include <vector>

#include "fitlm/model/transformer.h"

namespace fitlm {

// Consecutive stages over all layers, stage s holding `in_flight[s]` micro-batches at once
// (dist::one_f_one_b_in_flight). Among the splits where every stage s fits caps[s] (0: no cap),
// one with the fewest layers on its largest stage — the pipeline runs at the pace of its
// slowest stage — taking, for that size, as many layers as fit on the earlier stages (the
// later ones hold fewer micro-batches in flight). `base` is the job's shape without a stage.
// Refuses (ExitCode::kNoFit) when no split fits, naming the stage and what it needs; an
// input error when there are more stages than layers.
std::vector<RunShape::Stage> partition_stages(const ModelConfig& config, TrainMode mode,
                                              const LoraConfig& lora, const RunShape& base,
                                              DType compute, const std::vector<size_t>& caps,
                                              const std::vector<int>& in_flight);

}  // namespace fitlm
