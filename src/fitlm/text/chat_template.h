// Renders a model's own Jinja `chat_template` (from tokenizer_config.json) as HF's
// apply_chat_template(tokenize=False) does. Supports the Jinja subset used by the Llama-2/3,
// Mistral, Qwen2.5/3 and Gemma-3 templates; anything else is a clear error naming the construct.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fitlm {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

class ChatTemplate {
 public:
  // Reads `chat_template` (string, or list of {name, template}: the "default" one), bos_token and
  // eos_token from tokenizer_config.json. Error naming the file when there is none.
  static ChatTemplate from_tokenizer_config(const std::filesystem::path& path);
  // A HF model directory: DIR/chat_template.jinja when present (newer transformers save the
  // template there), else tokenizer_config.json's chat_template; special tokens from the latter.
  static ChatTemplate from_model_dir(const std::filesystem::path& dir);
  // As from_model_dir, or nullopt when the model has no template at all (datasets without chat
  // rows need none); a template that is there but broken is still an error.
  static std::optional<ChatTemplate> find_in_model_dir(const std::filesystem::path& dir);
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // extra: additional template variables (e.g. {"enable_thinking": false}).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;

  // As render(), for messages as HF takes them: any JSON (tool_calls, list content, ...). extra
  // may set `tools`, `documents`, `enable_thinking`, ...; it overrides the defaults.
  std::string render_json(
      const nlohmann::ordered_json& messages, bool add_generation_prompt,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const;
  // The special-token variables HF passes (bos_token, eos_token, unk_token, pad_token, ...).
  const nlohmann::ordered_json& special_tokens() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fitlm
