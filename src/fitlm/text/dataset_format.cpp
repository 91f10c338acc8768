#include "fitlm/text/dataset_format.h"

#include <fmt/format.h>

#include <limits>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"

namespace fitlm {
namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

const json& require(const json& obj, const std::string& where, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end())
    throw RowError(BadRowReason::kMissingField, fmt::format("missing field '{}{}'", where, key));
  return *it;
}

std::string require_string(const json& obj, const std::string& where, const char* key) {
  const json& v = require(obj, where, key);
  if (!v.is_string())
    throw RowError(
        BadRowReason::kWrongType,
        fmt::format("field '{}{}': expected a string, found {}", where, key, type_name(v)));
  return v.get<std::string>();
}

// An optional string: absent or null read as "".
std::string optional_string(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string())
    throw RowError(BadRowReason::kWrongType,
                   fmt::format("field '{}': expected a string, found {}", key, type_name(*it)));
  return it->get<std::string>();
}

const json& require_array(const json& obj, const char* key) {
  const json& v = require(obj, "", key);
  if (!v.is_array())
    throw RowError(BadRowReason::kWrongType,
                   fmt::format("field '{}': expected an array, found {}", key, type_name(v)));
  if (v.empty())
    throw RowError(BadRowReason::kInvalidValue, fmt::format("field '{}' is an empty array", key));
  return v;
}

std::vector<ChatMessage> parse_turns(const json& turns, const char* key, const char* role_key,
                                     const char* content_key, bool sharegpt) {
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string where = fmt::format("{}[{}].", key, i);
    const json& t = turns[i];
    if (!t.is_object())
      throw RowError(BadRowReason::kWrongType,
                     fmt::format("'{}[{}]': expected an object, found {}", key, i, type_name(t)));
    std::string role = require_string(t, where, role_key);
    if (sharegpt) {
      if (role == "human" || role == "user")
        role = "user";
      else if (role == "gpt" || role == "assistant")
        role = "assistant";
      else if (role != "system" && role != "tool")
        throw RowError(
            BadRowReason::kInvalidValue,
            fmt::format("field '{}{}': unknown role '{}' (expected system, human or gpt)", where,
                        role_key, clip(role)));
    } else if (role.empty()) {
      throw RowError(BadRowReason::kInvalidValue,
                     fmt::format("field '{}{}' is empty", where, role_key));
    }
    messages.push_back({role, require_string(t, where, content_key)});
  }
  return messages;
}

std::vector<int32_t> parse_ids(const json& row, const char* key, bool allow_ignore) {
  json v = require(row, "", key);
  // CSV cells are strings: accept "[1, 2, 3]" there.
  if (v.is_string()) {
    json parsed;
    if (auto error = json_input::try_parse(v.get<std::string>(), parsed))
      throw RowError(BadRowReason::kWrongType,
                     fmt::format("field '{}': expected an array of integers, found a string ({})",
                                 key, *error));
    v = std::move(parsed);
  }
  if (!v.is_array())
    throw RowError(BadRowReason::kWrongType, fmt::format("field '{}': expected an array of "
                                                         "integers, found {}",
                                                         key, type_name(v)));
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const json& x = v[i];
    if (!x.is_number_integer())
      throw RowError(
          BadRowReason::kWrongType,
          fmt::format("field '{}[{}]': expected an integer, found {}", key, i, type_name(x)));
    const int64_t id = x.get<int64_t>();
    const bool ok =
        (id >= 0 && id <= std::numeric_limits<int32_t>::max()) || (allow_ignore && id == -100);
    if (!ok)
      throw RowError(BadRowReason::kInvalidValue,
                     fmt::format("field '{}[{}]': {} is not a token id{}", key, i, id,
                                 allow_ignore ? " or -100" : ""));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

}  // namespace

DatasetType parse_dataset_type(std::string_view name, std::string_view where) {
  if (name == "alpaca") return DatasetType::kAlpaca;
  if (name == "sharegpt") return DatasetType::kShareGpt;
  if (name == "messages" || name == "chat_template") return DatasetType::kMessages;
  if (name == "completion") return DatasetType::kCompletion;
  if (name == "pretokenized") return DatasetType::kPretokenized;
  throw_input_error("config",
                    "{}: unknown dataset type '{}': expected alpaca, sharegpt, messages, "
                    "completion or pretokenized",
                    where, clip(name));
}

std::string_view dataset_type_name(DatasetType type) {
  switch (type) {
    case DatasetType::kAlpaca: return "alpaca";
    case DatasetType::kShareGpt: return "sharegpt";
    case DatasetType::kMessages: return "messages";
    case DatasetType::kCompletion: return "completion";
    case DatasetType::kPretokenized: return "pretokenized";
  }
  return "?";
}

std::string_view bad_row_reason_name(BadRowReason reason) {
  switch (reason) {
    case BadRowReason::kMalformed: return "malformed";
    case BadRowReason::kMissingField: return "missing_field";
    case BadRowReason::kWrongType: return "wrong_type";
    case BadRowReason::kInvalidValue: return "invalid_value";
    case BadRowReason::kTemplate: return "template";
  }
  return "?";
}

std::string alpaca_user_text(const std::string& instruction, const std::string& input) {
  return input.empty() ? instruction : instruction + "\n\n" + input;
}

Sample parse_sample(const json& row, DatasetType type) {
  if (!row.is_object())
    throw RowError(BadRowReason::kWrongType,
                   fmt::format("expected a JSON object, found {}", type_name(row)));
  Sample s;
  switch (type) {
    case DatasetType::kAlpaca:
      s.kind = Sample::Kind::kAlpaca;
      s.instruction = require_string(row, "", "instruction");
      s.input = optional_string(row, "input");
      s.output = require_string(row, "", "output");
      s.messages = {{"user", alpaca_user_text(s.instruction, s.input)}, {"assistant", s.output}};
      break;
    case DatasetType::kShareGpt:
      s.messages = parse_turns(require_array(row, "conversations"), "conversations", "from",
                               "value", /*sharegpt=*/true);
      break;
    case DatasetType::kMessages:
      s.messages =
          parse_turns(require_array(row, "messages"), "messages", "role", "content", false);
      break;
    case DatasetType::kCompletion:
      s.kind = Sample::Kind::kText;
      s.text = require_string(row, "", "text");
      if (s.text.empty()) throw RowError(BadRowReason::kInvalidValue, "field 'text' is empty");
      break;
    case DatasetType::kPretokenized:
      s.kind = Sample::Kind::kTokens;
      s.input_ids = parse_ids(row, "input_ids", false);
      if (s.input_ids.empty())
        throw RowError(BadRowReason::kInvalidValue, "field 'input_ids' is empty");
      if (row.contains("labels") && !row["labels"].is_null()) {
        s.labels = parse_ids(row, "labels", true);
        if (s.labels.size() != s.input_ids.size())
          throw RowError(BadRowReason::kInvalidValue,
                         fmt::format("'labels' has {} entries, 'input_ids' {}: they must match",
                                     s.labels.size(), s.input_ids.size()));
      }
      break;
  }
  return s;
}

}  // namespace fitlm
