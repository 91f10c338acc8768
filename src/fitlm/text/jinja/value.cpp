// Python semantics of template values: truthiness, str/repr, json.dumps, equality, UTF-8 strings.
#include "fitlm/text/jinja/value.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/limits.h"

namespace fitlm::jinja {

const Value* CallArgs::kwarg(const std::string& name) const {
  for (const auto& [k, v] : kwargs)
    if (k == name) return &v;
  return nullptr;
}

Value Value::undefined(std::string what) {
  Value v;
  v.name = std::move(what);
  return v;
}

Value Value::of(Json j) {
  return of_shared(std::make_shared<const Json>(std::move(j)));
}

Value Value::of_shared(std::shared_ptr<const Json> root) {
  Value v;
  v.kind = Kind::kData;
  v.data = std::move(root);
  return v;
}

Value Value::function(std::string name, Function f) {
  Value v;
  v.kind = Kind::kFunction;
  v.name = std::move(name);
  v.fn = std::make_shared<const Function>(std::move(f));
  return v;
}

Namespace::~Namespace() {
  // Moves every namespace held here into `pending`; one that nothing else holds has its own
  // namespaces moved out before it is released, so no release recurses more than one level.
  std::vector<std::shared_ptr<Namespace>> pending;
  const auto take = [&pending](std::map<std::string, Value>& attrs) {
    for (auto& entry : attrs)
      if (entry.second.ns) pending.push_back(std::move(entry.second.ns));
  };
  take(attrs);
  while (!pending.empty()) {
    std::shared_ptr<Namespace> n = std::move(pending.back());
    pending.pop_back();
    if (n.use_count() == 1) take(n->attrs);
  }
}

Value Value::make_namespace() {
  Value v;
  v.kind = Kind::kNamespace;
  v.ns = std::make_shared<Namespace>();
  return v;
}

const Json& Value::json() const {
  static const Json kNull;
  return is_data() ? *data : kNull;
}

Value Value::child(const Json& element) const {
  Value v;
  v.kind = Kind::kData;
  v.data = std::shared_ptr<const Json>(data, &element);  // aliasing: keeps the tree alive
  return v;
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction: return true;
    case Value::Kind::kData: break;
  }
  const Json& j = *v.data;
  if (j.is_null()) return false;
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>() != 0;
  if (j.is_number_unsigned()) return j.get<uint64_t>() != 0;
  if (j.is_number_float()) return j.get<double>() != 0.0;
  if (j.is_string()) return !j.get_ref<const std::string&>().empty();
  return !j.empty();  // array, object
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form, then laid out as Python's repr does:
  // positional when -4 <= exponent < 16, else d.ddde+XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  const bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  const size_t e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  return neg ? "-" + out : out;
}

namespace {

std::string number_text(const Json& j) {
  if (j.is_number_integer()) return std::to_string(j.get<int64_t>());
  if (j.is_number_unsigned()) return std::to_string(j.get<uint64_t>());
  return float_repr(j.get<double>());
}

// Python's repr of a str: single quotes unless the text has ' and no ".
std::string str_repr(const std::string& s) {
  const char q =
      (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == static_cast<unsigned char>(q)) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + q;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += static_cast<char>(c);
    }
  }
  out += '"';
}

void dump(std::string& out, const Json& j, int indent, int depth, const std::string& item_sep,
          const std::string& key_sep, bool sort_keys) {
  const auto newline = [&](int d) {
    if (out.size() + 1 + static_cast<size_t>(indent) * d > kMaxTextBytes)
      throw_input_error("chat_template", "tojson text exceeds the {} MiB limit",
                        kMaxTextBytes >> 20);
    out += '\n';
    out.append(static_cast<size_t>(indent) * d, ' ');
  };
  if (j.is_array() || j.is_object()) {
    const bool arr = j.is_array();
    if (j.empty()) {
      out += arr ? "[]" : "{}";
      return;
    }
    out += arr ? '[' : '{';
    std::vector<std::pair<const std::string*, const Json*>> items;
    if (arr) {
      for (const Json& e : j) items.push_back({nullptr, &e});
    } else {
      for (auto it = j.begin(); it != j.end(); ++it) items.push_back({&it.key(), &it.value()});
      if (sort_keys)
        std::sort(items.begin(), items.end(), [](auto& a, auto& b) { return *a.first < *b.first; });
    }
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += item_sep;
      if (indent >= 0) newline(depth + 1);
      if (!arr) {
        json_string(out, *items[i].first);
        out += key_sep;
      }
      dump(out, *items[i].second, indent, depth + 1, item_sep, key_sep, sort_keys);
    }
    if (indent >= 0) newline(depth);
    out += arr ? ']' : '}';
  } else if (j.is_string()) {
    json_string(out, j.get_ref<const std::string&>());
  } else if (j.is_boolean()) {
    out += j.get<bool>() ? "true" : "false";
  } else if (j.is_null()) {
    out += "null";
  } else if (j.is_number_float() && !std::isfinite(j.get<double>())) {
    const double d = j.get<double>();
    out += std::isnan(d) ? "NaN" : (d > 0 ? "Infinity" : "-Infinity");
  } else {
    out += number_text(j);
  }
}

}  // namespace

std::string py_repr(const Json& j) {
  if (j.is_string()) return str_repr(j.get_ref<const std::string&>());
  if (j.is_null()) return "None";
  if (j.is_boolean()) return j.get<bool>() ? "True" : "False";
  if (j.is_number()) return number_text(j);
  std::string out = j.is_array() ? "[" : "{";
  bool first = true;
  if (j.is_array()) {
    for (const Json& e : j) {
      out += first ? "" : ", ";
      out += py_repr(e);
      first = false;
    }
    return out + "]";
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    out += first ? "" : ", ";
    out += str_repr(it.key()) + ": " + py_repr(it.value());
    first = false;
  }
  return out + "}";
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kFunction: return fmt::format("<function {}>", v.name);
    case Value::Kind::kNamespace: return "<Namespace>";
    case Value::Kind::kData: break;
  }
  return v.data->is_string() ? v.data->get<std::string>() : py_repr(*v.data);
}

std::string to_json_text(const Json& j, int indent, const std::string& item_sep,
                         const std::string& key_sep, bool sort_keys) {
  std::string out;
  dump(out, j, indent, 0, item_sep, key_sep, sort_keys);
  return out;
}

void charge(size_t& budget, size_t bytes) {
  if (bytes > budget)
    throw_input_error("chat_template", "value exceeds the {} MiB limit", kMaxTextBytes >> 20);
  budget -= bytes;
}

namespace {

constexpr size_t kItemBytes = 16;

void check_depth(int depth) {
  if (depth > kMaxValueDepth)
    throw_input_error("chat_template", "value nested deeper than {} levels", kMaxValueDepth);
}

// Charges what copying j costs, before it is copied (the copy itself recurses).
void charge_json(const Json& j, size_t& budget, int depth) {
  check_depth(depth);
  charge(budget, kItemBytes + (j.is_string() ? j.get_ref<const std::string&>().size() : 0));
  if (j.is_array()) {
    for (const Json& e : j) charge_json(e, budget, depth + 1);
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      charge(budget, it.key().size());
      charge_json(it.value(), budget, depth + 1);
    }
  }
}

Json to_json_at(const Value& v, size_t& budget, int depth) {
  switch (v.kind) {
    case Value::Kind::kData: charge_json(*v.data, budget, depth); return *v.data;
    case Value::Kind::kNamespace: {  // a namespace may hold itself: the depth check ends that
      check_depth(depth);
      charge(budget, kItemBytes);
      Json o = Json::object();
      for (const auto& [k, a] : v.ns->attrs) {
        charge(budget, k.size());
        o[k] = to_json_at(a, budget, depth + 1);
      }
      return o;
    }
    default: charge(budget, kItemBytes); return nullptr;
  }
}

}  // namespace

Json to_json(const Value& v, size_t& budget) {
  return to_json_at(v, budget, 0);
}

Json to_json(const Value& v) {
  size_t budget = kMaxTextBytes;
  return to_json(v, budget);
}

bool values_equal(const Value& a, const Value& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined: return true;
    case Value::Kind::kNamespace: return a.ns == b.ns;
    case Value::Kind::kFunction: return a.fn == b.fn;
    case Value::Kind::kData: return *a.data == *b.data;
  }
  return false;
}

bool value_less(const Value& a, const Value& b) {
  const Json& x = a.json();
  const Json& y = b.json();
  if (a.is_data() && b.is_data()) {
    if (x.is_number() && y.is_number()) return x.get<double>() < y.get<double>();
    if (x.is_boolean() && y.is_boolean()) return x.get<bool>() < y.get<bool>();
    // UTF-8 byte order is code point order, which is how Python orders str.
    if (x.is_string() && y.is_string())
      return x.get_ref<const std::string&>() < y.get_ref<const std::string&>();
    if (x.is_array() && y.is_array()) return x < y;
  }
  throw_input_error("chat_template", "'<' not supported between instances of '{}' and '{}'",
                    type_name(a), type_name(b));
}

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "Undefined";
    case Value::Kind::kNamespace: return "Namespace";
    case Value::Kind::kFunction: return "function";
    case Value::Kind::kData: break;
  }
  const Json& j = *v.data;
  if (j.is_null()) return "NoneType";
  if (j.is_boolean()) return "bool";
  if (j.is_number_float()) return "float";
  if (j.is_number()) return "int";
  if (j.is_string()) return "str";
  if (j.is_array()) return "list";
  return "dict";
}

namespace {

// Decodes one code point at s[i], advancing i; malformed bytes decode as themselves (U+DCxx-like
// escapes are not needed: templates only split and measure strings).
char32_t next_code_point(const std::string& s, size_t& i) {
  const unsigned char c = s[i];
  int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
  if (n <= 0 || i + n >= s.size()) {
    ++i;
    return c;
  }
  char32_t cp = c & (0x3f >> n);
  for (int k = 1; k <= n; ++k) {
    const unsigned char d = s[i + k];
    if ((d & 0xc0) != 0x80) {
      ++i;
      return c;
    }
    cp = (cp << 6) | (d & 0x3f);
  }
  i += n + 1;
  return cp;
}

}  // namespace

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    next_code_point(s, i);
    out.push_back(s.substr(start, i - start));
  }
  return out;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) next_code_point(s, i);
  return n;
}

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

std::string py_strip(const std::string& s, bool left, bool right, const std::string* chars) {
  // Work on code points so that multi-byte whitespace (U+3000) and strip sets both behave.
  std::vector<std::pair<size_t, char32_t>> cps;  // (byte offset, code point)
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    cps.push_back({at, next_code_point(s, i)});
  }
  std::vector<char32_t> set;
  if (chars)
    for (size_t i = 0; i < chars->size();) set.push_back(next_code_point(*chars, i));
  const auto strip_it = [&](char32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_py_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b].second)) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1].second)) --e;
  const size_t from = b < cps.size() ? cps[b].first : s.size();
  const size_t to = e < cps.size() ? cps[e].first : s.size();
  return s.substr(from, to - from);
}

}  // namespace fitlm::jinja
