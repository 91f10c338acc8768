#include "fitlm/text/dataset_reader.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/text/csv_reader.h"

namespace fitlm {
namespace {

std::string_view strip_bom(std::string_view text) {
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  return text;
}

std::string lower_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// One row's JSON: any nlohmann error (a syntax error, a number out of range such as 1e999) is
// this row's error, so that on_bad_row=skip skips the row instead of ending the load.
void parse_row(std::string_view text, RawRow& row) {
  if (auto error = json_input::try_parse(text, row.value)) row.error = "malformed JSON: " + *error;
}

std::vector<RawRow> read_jsonl(std::string_view text) {
  std::vector<RawRow> rows;
  int64_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view s = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    if (s.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank line: no row
    RawRow row;
    row.line = line;
    parse_row(s, row);
    rows.push_back(std::move(row));
  }
  return rows;
}

// Splits a top-level JSON array into its elements by scanning brackets and strings, so that each
// element is parsed on its own: one malformed element then costs one row, and every row knows
// the line it starts on (nlohmann's DOM keeps no positions).
std::vector<RawRow> read_json_array(const std::filesystem::path& path, std::string_view text) {
  std::vector<RawRow> rows;
  size_t i = 0;
  int64_t line = 1;
  auto skip_ws = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) {
      if (text[i] == '\n') ++line;
      ++i;
    }
  };
  skip_ws();
  if (i >= text.size() || text[i] != '[')
    throw_input_error("dataset", "{}:{}: expected a JSON array ('[') at the start of the file",
                      clip_path(path.string()), line);
  ++i;
  skip_ws();
  if (i < text.size() && text[i] == ']') return rows;
  while (true) {
    skip_ws();
    if (i >= text.size())
      throw_input_error("dataset", "{}:{}: the JSON array is not closed (missing ']')",
                        clip_path(path.string()), line);
    const size_t begin = i;
    const int64_t begin_line = line;
    int depth = 0;
    bool in_string = false;
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (c == '\n') ++line;
      if (in_string) {
        if (c == '\\') {
          if (i + 1 < text.size() && text[i + 1] == '\n') ++line;
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
        continue;
      }
      if (c == '"')
        in_string = true;
      else if (c == '{' || c == '[')
        ++depth;
      else if (c == '}' || c == ']') {
        if (depth == 0) break;  // the array's own ']'
        --depth;
      } else if (c == ',' && depth == 0) {
        break;
      }
    }
    if (i >= text.size())
      throw_input_error("dataset",
                        "{}:{}: the JSON array is not closed (missing ']' or an "
                        "unbalanced bracket or quote in the element starting here)",
                        clip_path(path.string()), begin_line);
    RawRow row;
    row.line = begin_line;
    parse_row(text.substr(begin, i - begin), row);
    rows.push_back(std::move(row));
    if (text[i] == ']') break;
    ++i;  // the ','
  }
  ++i;
  skip_ws();
  if (i < text.size())
    throw_input_error("dataset", "{}:{}: unexpected text after the closing ']' of the JSON array",
                      clip_path(path.string()), line);
  return rows;
}

std::vector<RawRow> read_csv(const std::filesystem::path& path, std::string_view text) {
  std::vector<CsvRecord> records = parse_csv(text);
  if (records.empty()) return {};
  const CsvRecord& header = records.front();
  if (!header.error.empty())
    throw_input_error("dataset", "{}:{}: CSV header: {}", clip_path(path.string()), header.line,
                      header.error);
  std::vector<RawRow> rows;
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    RawRow row;
    row.line = rec.line;
    if (!rec.error.empty()) {
      row.error = "malformed CSV: " + rec.error;
    } else if (rec.fields.size() != header.fields.size()) {
      row.error = fmt::format("malformed CSV: expected {} fields as in the header, found {}",
                              header.fields.size(), rec.fields.size());
    } else {
      row.value = nlohmann::json::object();
      for (size_t f = 0; f < rec.fields.size(); ++f) row.value[header.fields[f]] = rec.fields[f];
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

FileFormat parse_file_format(std::string_view name) {
  if (name == "jsonl") return FileFormat::kJsonl;
  if (name == "json") return FileFormat::kJsonArray;
  if (name == "csv") return FileFormat::kCsv;
  throw_input_error("dataset", "unknown file format '{}': expected jsonl, json or csv", name);
}

FileFormat detect_file_format(const std::filesystem::path& path, std::string_view text) {
  const std::string ext = lower_extension(path);
  if (ext == ".csv") return FileFormat::kCsv;
  if (ext == ".json") {
    text = strip_bom(text);
    const size_t p = text.find_first_not_of(" \t\r\n");
    return p != std::string_view::npos && text[p] == '[' ? FileFormat::kJsonArray
                                                         : FileFormat::kJsonl;
  }
  if (ext == ".jsonl" || ext == ".ndjson") return FileFormat::kJsonl;
  throw_input_error("dataset",
                    "{}: cannot tell the file format from the extension '{}': expected .jsonl, "
                    ".json or .csv",
                    clip_path(path.string()), clip(ext));
}

std::vector<RawRow> read_rows_from_text(const std::filesystem::path& path, std::string_view text,
                                        FileFormat format) {
  text = strip_bom(text);
  switch (format) {
    case FileFormat::kJsonl: return read_jsonl(text);
    case FileFormat::kJsonArray: return read_json_array(path, text);
    case FileFormat::kCsv: return read_csv(path, text);
  }
  throw_internal_error("dataset", "unknown file format");
}

std::vector<RawRow> read_rows(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw_input_error("dataset", "{}: cannot open the dataset file", clip_path(path.string()));
  std::ostringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  return read_rows_from_text(path, text, detect_file_format(path, text));
}

}  // namespace fitlm
