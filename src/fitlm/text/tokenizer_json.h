// Reading tokenizer.json / tokenizer_config.json fields with errors that name the file and the
// field ("[tokenizer] /m/tokenizer.json: field model.merges[3]: expected ...").
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "fitlm/core/error.h"

namespace fitlm::tokenizer_json {

using Json = nlohmann::json;

// No token id may reach this, whatever the vocabulary: no model fitlm loads has more rows
// (ModelConfig bounds vocab_size by the same 2^24).
constexpr int64_t kMaxTokenId = int64_t{1} << 24;

// Where a JSON value sits: the file and a dotted path inside it.
struct Loc {
  std::string file;
  std::string path;
  Loc operator/(std::string_view key) const {
    return {file, path.empty() ? std::string(key) : path + "." + std::string(key)};
  }
  Loc at(size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
};

[[noreturn]] inline void fail(const Loc& loc, std::string_view message) {
  throw_input_error("tokenizer", "{}: field {}: {}", clip_path(loc.file),
                    loc.path.empty() ? "(root)" : clip(loc.path, 160), message);
}

inline const Json& require(const Json& obj, std::string_view key, const Loc& loc) {
  if (!obj.is_object()) fail(loc, "expected an object");
  auto it = obj.find(key);
  if (it == obj.end()) fail(loc / key, "missing");
  return *it;
}

inline std::string require_string(const Json& obj, std::string_view key, const Loc& loc) {
  const Json& v = require(obj, key, loc);
  if (!v.is_string()) fail(loc / key, std::string("expected a string, found ") + v.type_name());
  return v.get<std::string>();
}

// Absent or null gives nullopt.
inline std::optional<std::string> optional_string(const Json& obj, std::string_view key,
                                                  const Loc& loc) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) fail(loc / key, std::string("expected a string, found ") + it->type_name());
  return it->get<std::string>();
}

inline bool optional_bool(const Json& obj, std::string_view key, const Loc& loc, bool fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    fail(loc / key, std::string("expected a boolean, found ") + it->type_name());
  return it->get<bool>();
}

inline const Json& require_array(const Json& obj, std::string_view key, const Loc& loc) {
  const Json& v = require(obj, key, loc);
  if (!v.is_array()) fail(loc / key, std::string("expected an array, found ") + v.type_name());
  return v;
}

// The component "type" field.
inline std::string type_of(const Json& obj, const Loc& loc) {
  return require_string(obj, "type", loc);
}

[[noreturn]] inline void unsupported(const Json& obj, const Loc& loc, std::string_view what) {
  const auto it = obj.is_object() ? obj.find("type") : obj.end();
  const std::string type = it != obj.end() && it->is_string() ? it->get<std::string>() : "?";
  fail(loc / "type",
       std::string("unsupported ") + std::string(what) + " type \"" + clip(type) + "\"");
}

}  // namespace fitlm::tokenizer_json
