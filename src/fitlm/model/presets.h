// Shapes of real model families, for `fitlm bench` and `fitlm plan` without files on disk.
// Each equals the corresponding Hugging Face config.json.
#pragma once

#include <string>
#include <vector>

#include "fitlm/model/config.h"

namespace fitlm {

std::vector<std::string> preset_names();
// Error listing the names when unknown.
ModelConfig preset_config(const std::string& name);

}  // namespace fitlm
