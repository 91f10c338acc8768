#include "fitlm/core/byte_size.h"

#include <cctype>
#include <cmath>

#include "fitlm/core/error.h"

namespace fitlm {

size_t parse_byte_size(const std::string& text) {
  size_t pos = 0;
  double value = 0.0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw_input_error("size", "'{}' is not a size (examples: 15GiB, 800MB, 1.5G)", clip(text));
  }
  std::string unit = text.substr(pos);
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  double mult = 0.0;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kib")
    mult = 1024.0;
  else if (unit == "kb")
    mult = 1e3;
  else if (unit == "m" || unit == "mib")
    mult = 1024.0 * 1024;
  else if (unit == "mb")
    mult = 1e6;
  else if (unit == "g" || unit == "gib")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "gb")
    mult = 1e9;
  else if (unit == "t" || unit == "tib")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "tb")
    mult = 1e12;
  if (mult == 0.0 || !(value >= 0.0))
    throw_input_error("size", "'{}' is not a size (examples: 15GiB, 800MB, 1.5G)", clip(text));
  if (!(value * mult < 9.2e18))  // llround is undefined past int64
    throw_input_error("size", "'{}' is too large a size (at most 8 EiB)", clip(text));
  return static_cast<size_t>(std::llround(value * mult));
}

}  // namespace fitlm
