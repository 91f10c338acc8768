// Reads dataset files into rows of JSON values, each with the line it starts on, without judging
// their content (dataset_format.h does that). Formats: JSON Lines, one JSON array of objects, and
// CSV with a header row (every field a string).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace fitlm {

enum class FileFormat { kJsonl, kJsonArray, kCsv };

// .jsonl/.ndjson: JSON Lines; .csv: CSV; .json: a JSON array when the first non-blank character
// is '[', JSON Lines otherwise (many ".json" datasets are really JSON Lines).
FileFormat detect_file_format(const std::filesystem::path& path, std::string_view text);
// "jsonl", "json", "csv"; error listing the valid names otherwise.
FileFormat parse_file_format(std::string_view name);

struct RawRow {
  int64_t line = 0;      // 1-based line where the row starts
  nlohmann::json value;  // the row (an object for well-formed rows)
  std::string error;     // non-empty: the row could not be parsed; value is null
};

// Reads and splits the file. Only a file that cannot be read, or a JSON array whose brackets do
// not balance, throws (input error naming the file); a bad row is returned with `error` set so
// that on_bad_row=skip can continue past it.
std::vector<RawRow> read_rows(const std::filesystem::path& path);
// As above from text already in memory (`path` is only used for the format and messages).
std::vector<RawRow> read_rows_from_text(const std::filesystem::path& path, std::string_view text,
                                        FileFormat format);

}  // namespace fitlm
