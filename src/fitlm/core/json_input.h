// Parsing untrusted JSON (model files, datasets, command-line values): the one place where
// nlohmann's exceptions (parse_error, out_of_range for a number like 1e999, type_error) become
// input errors that name the file, so bad input never ends as "[internal] [json.exception...]".
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace fitlm::json_input {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// nlohmann's message without its "[json.exception.parse_error.101] " tag, with a long quoted
// token ("number overflow parsing '1e999...'") clipped, and with the line of an overflowing
// number (the library does not say where it was) when `text` is given.
std::string describe(const nlohmann::json::exception& e, std::string_view text = {});

// Parses `text`; on failure returns the reason (describe()) and leaves `out` null. For row
// readers, where one bad row is a row error and not the end of the load.
std::optional<std::string> try_parse(std::string_view text, Json& out);
std::optional<std::string> try_parse(std::string_view text, OrderedJson& out);

// Parses `text` or throws an input error "[component] source: <what>: <reason>" (what: "not
// valid JSON" unless the caller words it otherwise). `callback` is nlohmann's parser callback
// (e.g. to find duplicate keys).
Json parse(std::string_view text, const std::string& component, std::string_view source,
           const Json::parser_callback_t& callback = nullptr,
           std::string_view what = "not valid JSON");
OrderedJson parse_ordered(std::string_view text, const std::string& component,
                          std::string_view source, std::string_view what = "not valid JSON");

// Reads and parses a whole file: input errors for a file that cannot be read or is not JSON.
Json parse_file(const std::filesystem::path& path, const std::string& component,
                std::string_view what = "not valid JSON");

// Runs `read` (code that walks a parsed document) and turns any nlohmann exception it lets
// escape (a get<int>() on a string, value() on a non-object) into an input error naming the
// file: the net under field readers that check types themselves.
template <typename F>
auto read_fields(const std::string& component, std::string_view source, F&& read)
    -> decltype(read());
[[noreturn]] void throw_structure_error(const std::string& component, std::string_view source,
                                        const nlohmann::json::exception& e);

template <typename F>
auto read_fields(const std::string& component, std::string_view source, F&& read)
    -> decltype(read()) {
  try {
    return read();
  } catch (const nlohmann::json::exception& e) {
    throw_structure_error(component, source, e);
  }
}

}  // namespace fitlm::json_input
