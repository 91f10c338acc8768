// A five-layer random Llama (vocabulary 1003, hidden 256) written as a Hugging Face directory
// in bf16, for the CUDA model tests: weights ~ N(0, 0.05), norms 1 + N(0, 0.05).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../model/random_checkpoint.h"

namespace fitlm::cuda_test {

namespace fs = std::filesystem;

inline fs::path write_random_model(const std::string& tag) {
  const nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                              {"vocab_size", 1003},
                              {"hidden_size", 256},
                              {"intermediate_size", 384},
                              {"num_hidden_layers", 5},
                              {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},
                              {"rms_norm_eps", 1e-5},
                              {"rope_theta", 10000.0},
                              {"tie_word_embeddings", false}};
  const fs::path dir =
      fs::temp_directory_path() / ("fitlm_cuda_" + tag + "_" + std::to_string(::getpid()));
  test::write_random_checkpoint(dir, cfg, io::StDType::kBF16, 0.05f);
  return dir;
}

}  // namespace fitlm::cuda_test
