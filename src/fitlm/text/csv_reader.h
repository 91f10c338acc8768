// RFC 4180 CSV: comma-separated fields, optional double quotes around a field, "" for a quote
// inside a quoted field, CRLF or LF record ends, line breaks allowed inside quoted fields. The
// first record is the header that names the fields.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fitlm {

struct CsvRecord {
  int64_t line = 0;  // 1-based line where the record starts (a quoted field may span lines)
  std::vector<std::string> fields;
  std::string error;  // non-empty: the record could not be parsed (e.g. unterminated quote)
};

// Splits `text` into records. Blank lines between records are skipped. Never throws: a broken
// record carries `error` so the caller can apply its bad-row policy with the line number.
std::vector<CsvRecord> parse_csv(std::string_view text);

}  // namespace fitlm
