// Dataset row formats: what fields a row of each `type` must hold, and the conversation, text or
// token ids it stands for. Checks every field and names it when it is missing or of the wrong
// type; tokenization and loss masks are in dataset_mask.h.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fitlm/text/chat_template.h"

namespace fitlm {

enum class DatasetType {
  kAlpaca,        // {instruction, input?, output}
  kShareGpt,      // {conversations: [{from: system|human|gpt, value}]}
  kMessages,      // OpenAI {messages: [{role, content}]}
  kCompletion,    // {text}: loss on every token
  kPretokenized,  // {input_ids, labels?}: labels default to input_ids
};

// Input error "[config] WHERE: unknown dataset type 'x': expected alpaca, ..." otherwise; `where`
// names the file and key the name came from ("a.yaml: key 'datasets[0].type'", "--type").
DatasetType parse_dataset_type(std::string_view name, std::string_view where);

std::string_view dataset_type_name(DatasetType type);

// Why a row was rejected; the summary counts skipped rows by these names.
enum class BadRowReason { kMalformed, kMissingField, kWrongType, kInvalidValue, kTemplate };
std::string_view bad_row_reason_name(BadRowReason reason);  // "malformed", "missing_field", ...

// A row that cannot be used. The loader adds file:line and applies on_bad_row.
class RowError : public std::runtime_error {
 public:
  RowError(BadRowReason reason, const std::string& message)
      : std::runtime_error(message), reason_(reason) {}
  BadRowReason reason() const { return reason_; }

 private:
  BadRowReason reason_;
};

// One row in a format-neutral shape. Exactly one of the three groups is filled.
struct Sample {
  enum class Kind { kChat, kAlpaca, kText, kTokens } kind = Kind::kChat;
  std::vector<ChatMessage> messages;       // kChat, and kAlpaca rendered as a chat
  std::string instruction, input, output;  // kAlpaca (for the template-less prompt format)
  std::string text;                        // kText
  std::vector<int32_t> input_ids, labels;  // kTokens; labels empty = same as input_ids
};

// Parses one row. Throws RowError naming the field ("conversations[2].value: expected a string,
// found number"). ShareGPT roles map human→user, gpt→assistant, system→system (also accepts
// user/assistant/tool); an unknown role is an error.
Sample parse_sample(const nlohmann::json& row, DatasetType type);

// The alpaca user turn: instruction, then "\n\n" + input when input is not empty.
std::string alpaca_user_text(const std::string& instruction, const std::string& input);

}  // namespace fitlm
