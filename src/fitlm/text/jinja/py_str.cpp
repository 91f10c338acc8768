// Python str operations with CPython's results (see py_str.h).
#include "fitlm/text/jinja/py_str.h"

#include <algorithm>
#include <cctype>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/limits.h"

namespace fitlm::jinja {
namespace {

// The code point of one UTF-8 character as utf8_chars() cuts them.
char32_t code_point(const std::string& ch) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(ch[i]); };
  switch (ch.size()) {
    case 2: return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
    case 3: return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
    case 4:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
    default: return ch.empty() ? 0 : b(0);
  }
}

// `to` inserted n times may not take the result past the text limit.
void check_replace_size(size_t base, size_t n, const std::string& to) {
  if (!to.empty() && n > (kMaxTextBytes - std::min(base, kMaxTextBytes)) / to.size())
    throw_input_error("chat_template", "str.replace result exceeds the {} MiB limit",
                      kMaxTextBytes >> 20);
}

}  // namespace

std::string ascii_map(std::string s, int (*f)(int)) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x80)
      c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return s;
}

std::string capitalize(const std::string& s) {
  std::string out = ascii_map(s, [](int c) { return std::tolower(c); });
  if (!out.empty() && static_cast<unsigned char>(out[0]) < 0x80)
    out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    const unsigned char u = static_cast<unsigned char>(c);
    const bool alpha = u < 0x80 && std::isalpha(u);
    if (alpha) c = static_cast<char>(prev_cased ? std::tolower(u) : std::toupper(u));
    prev_cased = alpha;
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count) {
  std::string out;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    if (from.empty()) {  // Python inserts `to` before every character and at the end
      const auto chars = utf8_chars(s);
      check_replace_size(
          s.size(), count < 0 ? chars.size() + 1 : std::min<size_t>(chars.size() + 1, count), to);
      std::string out2;
      int64_t k = 0;
      for (const auto& c : chars) {
        if (count < 0 || k++ < count) out2 += to;
        out2 += c;
      }
      if (count < 0 || k < count) out2 += to;
      return out2;
    }
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    check_replace_size(out.size() + (s.size() - hit - from.size()), 1, to);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos);
  return out;
}

// str.split(sep=None, maxsplit=-1).
Json split(const std::string& s, const Value* sep, int64_t maxsplit) {
  Json out = Json::array();
  if (!sep || sep->is_none() || sep->is_undefined()) {
    std::vector<std::string> chars = utf8_chars(s);
    std::string cur;
    bool in_word = false;
    size_t i = 0;
    for (; i < chars.size(); ++i) {
      const bool space = is_py_space(code_point(chars[i]));
      if (space) {
        if (in_word) {
          out.push_back(cur);
          cur.clear();
          in_word = false;
        }
      } else {
        if (!in_word && maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) break;
        cur += chars[i];
        in_word = true;
      }
    }
    if (in_word) out.push_back(cur);
    if (i < chars.size()) {  // maxsplit reached: the rest, right-stripped, is the last item
      std::string rest;
      for (; i < chars.size(); ++i) rest += chars[i];
      out.push_back(py_strip(rest, false, true, nullptr));
    }
    return out;
  }
  const std::string d = to_str(*sep);
  if (d.empty()) throw_input_error("chat_template", "split(): empty separator");
  size_t pos = 0;
  for (int64_t n = 0; maxsplit < 0 || n < maxsplit; ++n) {
    const size_t hit = s.find(d, pos);
    if (hit == std::string::npos) break;
    out.push_back(s.substr(pos, hit - pos));
    pos = hit + d.size();
  }
  out.push_back(s.substr(pos));
  return out;
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  const auto one = [&](const std::string& a) { return prefix ? s.starts_with(a) : s.ends_with(a); };
  if (affix.is_data() && affix.json().is_array()) {  // a tuple of alternatives
    for (const Json& a : affix.json())
      if (a.is_string() && one(a.get<std::string>())) return true;
    return false;
  }
  return one(to_str(affix));
}

}  // namespace fitlm::jinja
