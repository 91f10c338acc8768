// What `fitlm generate`, `fitlm chat` and `fitlm score-generations` share: the base model loaded
// once (frozen), PEFT adapters in their own arenas, the tokenizer, the EOS ids, and decoders
// sized for the prompts at hand (one decoder, or one per adapter for --ensemble).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fitlm/infer/generate.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/text/chat_template.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm {

struct GenerationSetup {
  std::string model_dir;
  std::vector<std::string> adapter_dirs;  // summed on the fly, or one decoder each (ensemble)
  bool ensemble = false;
  std::string backend = "cpu";
  int64_t max_batch = 8;                    // sequences decoded together
  std::optional<QuantizeRequest> quantize;  // keep the base 4-bit (--quantize)
};

class GenerationSession {
 public:
  explicit GenerationSession(const GenerationSetup& setup);
  ~GenerationSession();

  const ModelConfig& config() const;
  // nullptr when the model directory has no tokenizer.json (then only token ids work).
  const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }
  const std::filesystem::path& model_dir() const { return model_dir_; }
  // config.json eos_token_id(s), generation_config.json eos_token_id(s), the tokenizer's eos.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

  // Prompt text -> ids as HF's tokenizer(text) does (special tokens added: usually BOS); for
  // text rendered by a chat template (which carries its own BOS) pass add_special = false.
  std::vector<int32_t> encode(const std::string& text, bool add_special) const;

  // Renders messages (a system message prepended when given and absent) through the model's
  // chat template with add_generation_prompt, then encodes without adding special tokens.
  std::vector<int32_t> encode_chat(std::vector<ChatMessage> messages,
                                   const std::string& system = "") const;

  // Generates for any number of prompts, max_batch at a time. options.eos_ids empty = eos_ids().
  std::vector<GenerationResult> generate(const std::vector<std::vector<int32_t>>& prompts,
                                         GenerationOptions options);

 private:
  void ensure_decoders(int64_t batch, int64_t max_len);

  GenerationSetup setup_;
  std::filesystem::path model_dir_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Transformer> model_;
  std::vector<std::unique_ptr<LoadedAdapter>> adapters_;
  std::vector<std::unique_ptr<Decoder>> decoders_;
  std::optional<Tokenizer> tokenizer_;
  mutable std::unique_ptr<ChatTemplate> chat_template_;  // read on first use
  std::vector<int32_t> eos_ids_;
};

}  // namespace fitlm
