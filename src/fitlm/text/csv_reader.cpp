#include "fitlm/text/csv_reader.h"

namespace fitlm {

std::vector<CsvRecord> parse_csv(std::string_view text) {
  std::vector<CsvRecord> records;
  size_t i = 0;
  int64_t line = 1;
  const size_t n = text.size();
  while (i < n) {
    // Blank lines carry no record (common at the end of a file).
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    CsvRecord rec;
    rec.line = line;
    std::string field;
    bool done = false;
    while (!done) {
      field.clear();
      if (i < n && text[i] == '"') {
        ++i;
        bool closed = false;
        while (i < n) {
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field.push_back('"');
              i += 2;
              continue;
            }
            ++i;
            closed = true;
            break;
          }
          if (c == '\n') ++line;
          field.push_back(c);
          ++i;
        }
        if (!closed) {
          rec.error = "unterminated quoted field (a '\"' opens a field that never closes)";
          i = n;
          done = true;
          break;
        }
        // After a closing quote only a separator or the end of the record may follow.
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          rec.error = "characters after the closing quote of a field";
          while (i < n && text[i] != '\n') ++i;
        }
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' &&
               !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n'))
          field.push_back(text[i++]);
      }
      rec.fields.push_back(field);
      if (i >= n) {
        done = true;
      } else if (text[i] == ',') {
        ++i;
      } else {  // record end: LF or CRLF
        i += text[i] == '\r' ? 2 : 1;
        ++line;
        done = true;
      }
    }
    records.push_back(std::move(rec));
  }
  return records;
}

}  // namespace fitlm
