#include "fitlm/core/json_input.h"

#include <fstream>
#include <iterator>

#include "fitlm/core/error.h"

namespace fitlm::json_input {
namespace {

// "line L, column C" of byte `pos` in `text` (1-based, columns in bytes as nlohmann counts).
std::string position_of(std::string_view text, size_t pos) {
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < pos; ++i)
    if (text[i] == '\n') ++line, line_start = i + 1;
  return fmt::format("line {}, column {}", line, pos - line_start + 1);
}

template <typename J>
std::optional<std::string> try_parse_impl(std::string_view text, J& out) {
  try {
    out = J::parse(text);
    return std::nullopt;
  } catch (const nlohmann::json::exception& e) {
    out = J();
    return describe(e, text);
  }
}

}  // namespace

std::string describe(const nlohmann::json::exception& e, std::string_view text) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0)
    if (const size_t p = s.find("] "); p != std::string::npos) s.erase(0, p + 2);
  // The quoted token at the end ("last read: '...'", "parsing '...'") can be the whole rest of
  // a long line: clip it.
  const size_t open = s.find('\''), close = s.rfind('\'');
  std::string token;
  if (open != std::string::npos && close > open) {
    token = s.substr(open + 1, close - open - 1);
    s = s.substr(0, open + 1) + clip(token) + s.substr(close);
  }
  // out_of_range.406 ("number overflow parsing '1e999'") carries no position: find the number.
  if (e.id == 406 && !token.empty() && !text.empty())
    if (const size_t at = text.find(token); at != std::string_view::npos)
      s = fmt::format("number out of range at {}: '{}' does not fit a 64-bit number",
                      position_of(text, at), clip(token));
  return s;
}

std::optional<std::string> try_parse(std::string_view text, Json& out) {
  return try_parse_impl(text, out);
}
std::optional<std::string> try_parse(std::string_view text, OrderedJson& out) {
  return try_parse_impl(text, out);
}

Json parse(std::string_view text, const std::string& component, std::string_view source,
           const Json::parser_callback_t& callback, std::string_view what) {
  try {
    return Json::parse(text, callback);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error(component, "{}: {}: {}", clip_path(source), what, describe(e, text));
  }
}

OrderedJson parse_ordered(std::string_view text, const std::string& component,
                          std::string_view source, std::string_view what) {
  try {
    return OrderedJson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error(component, "{}: {}: {}", clip_path(source), what, describe(e, text));
  }
}

Json parse_file(const std::filesystem::path& path, const std::string& component,
                std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error(component, "{}: cannot open file", clip_path(path.string()));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw_input_error(component, "{}: cannot read file", clip_path(path.string()));
  return parse(text, component, path.string(), nullptr, what);
}

void throw_structure_error(const std::string& component, std::string_view source,
                           const nlohmann::json::exception& e) {
  throw_input_error(component, "{}: unexpected JSON structure: {}", clip_path(source), describe(e));
}

}  // namespace fitlm::json_input
