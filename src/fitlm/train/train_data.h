// The data of a training run: the config's datasets tokenized (or read pretokenized), the
// eval set (test_datasets or a val_set_size split), and how they are cut into micro-batches.
#pragma once

#include <cstdint>
#include <vector>

#include "fitlm/model/config.h"
#include "fitlm/text/pack.h"
#include "fitlm/train/train_config.h"

namespace fitlm::train {

struct TrainData {
  std::vector<Example> train, eval;
  int32_t pad_id = 0;
};

// Errors (exit 2) name the config, the dataset file and row; no examples left is an error.
TrainData load_train_data(const TrainConfig& c, const ModelConfig& model_config);

BatchOptions batch_options(const TrainConfig& c, int32_t pad_id, bool shuffle);

}  // namespace fitlm::train
