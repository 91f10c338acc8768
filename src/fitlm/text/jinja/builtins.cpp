// Filters, tests and methods. Each follows the Python function a Hugging Face template would
// reach under transformers (jinja2/filters.py, jinja2/tests.py, str/dict methods, and
// transformers' own tojson), since the rendered bytes must be the same.
#include "fitlm/text/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/limits.h"
#include "fitlm/text/jinja/py_str.h"

namespace fitlm::jinja {
namespace {

// line 0: a method call, which does not know its line.
[[noreturn]] void type_error(int line, const std::string& what) {
  if (line <= 0) throw_input_error("chat_template", "{}", what);
  throw_input_error("chat_template", "{} at line {}", what, line);
}

// int(d) as Python truncates it; a float outside int64 (or NaN) is an error, not UB.
int64_t float_to_int(double d, int line) {
  if (std::isnan(d)) type_error(line, "cannot convert float NaN to integer");
  if (!(d >= -0x1p63 && d < 0x1p63)) type_error(line, "integer overflow");
  return static_cast<int64_t>(d);
}

// Appends piece to out, failing once out would pass the text limit.
void append_bounded(std::string& out, const std::string& piece, int line) {
  if (out.size() + piece.size() > kMaxTextBytes)
    type_error(line, fmt::format("string exceeds the {} MiB limit", kMaxTextBytes >> 20));
  out += piece;
}

const Value* arg(const CallArgs& a, size_t i, const char* name) {
  if (i < a.args.size()) return &a.args[i];
  return a.kwarg(name);
}

std::string str_arg(const CallArgs& a, size_t i, const char* name, const std::string& dflt) {
  const Value* v = arg(a, i, name);
  return v && !v->is_undefined() ? to_str(*v) : dflt;
}

int64_t int_arg(const CallArgs& a, size_t i, const char* name, int64_t dflt) {
  const Value* v = arg(a, i, name);
  if (!v || !v->is_data() || v->json().is_null()) return dflt;
  if (!v->json().is_number() && !v->json().is_boolean())
    throw_input_error("chat_template", "expected an integer argument '{}', found {}", name,
                      type_name(*v));
  if (v->json().is_number_float()) return float_to_int(v->json().get<double>(), 0);
  return v->json().is_boolean() ? v->json().get<bool>() : v->json().get<int64_t>();
}

bool bool_arg(const CallArgs& a, size_t i, const char* name, bool dflt) {
  const Value* v = arg(a, i, name);
  return v ? truthy(*v) : dflt;
}

Value string_method(const Value& obj, const std::string& name) {
  const std::string s = obj.json().get<std::string>();
  const auto bind = [&](auto f) {
    return Value::function("str." + name, [s, f](const CallArgs& a) { return Value::of(f(s, a)); });
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool l = name != "rstrip", r = name != "lstrip";
    return bind([l, r](const std::string& s, const CallArgs& a) {
      const Value* chars = arg(a, 0, "chars");
      if (chars && chars->is_data() && !chars->is_none()) {
        const std::string c = to_str(*chars);
        return Json(py_strip(s, l, r, &c));
      }
      return Json(py_strip(s, l, r, nullptr));
    });
  }
  if (name == "split")
    return bind([](const std::string& s, const CallArgs& a) {
      return split(s, arg(a, 0, "sep"), int_arg(a, 1, "maxsplit", -1));
    });
  if (name == "startswith" || name == "endswith") {
    const bool prefix = name == "startswith";
    return bind([prefix](const std::string& s, const CallArgs& a) {
      if (a.args.empty()) throw_input_error("chat_template", "str.startswith/endswith need 1 arg");
      return Json(affix_match(s, a.args[0], prefix));
    });
  }
  if (name == "upper")
    return bind([](const std::string& s, const CallArgs&) {
      return Json(ascii_map(s, [](int c) { return std::toupper(c); }));
    });
  if (name == "lower")
    return bind([](const std::string& s, const CallArgs&) {
      return Json(ascii_map(s, [](int c) { return std::tolower(c); }));
    });
  if (name == "capitalize")
    return bind([](const std::string& s, const CallArgs&) { return Json(capitalize(s)); });
  if (name == "title")
    return bind([](const std::string& s, const CallArgs&) { return Json(title(s)); });
  if (name == "replace")
    return bind([](const std::string& s, const CallArgs& a) {
      return Json(replace_all(s, str_arg(a, 0, "old", ""), str_arg(a, 1, "new", ""),
                              int_arg(a, 2, "count", -1)));
    });
  if (name == "find")
    return bind([](const std::string& s, const CallArgs& a) {
      const size_t at = s.find(str_arg(a, 0, "sub", ""));
      return at == std::string::npos ? Json(-1) : Json(utf8_length(s.substr(0, at)));
    });
  if (name == "join")
    return bind([](const std::string& s, const CallArgs& a) {
      if (a.args.empty()) throw_input_error("chat_template", "str.join needs 1 argument");
      std::string out;
      bool first = true;
      for (const Value& v : iterate(a.args[0], 0)) {
        if (!first) append_bounded(out, s, 0);
        append_bounded(out, to_str(v), 0);
        first = false;
      }
      return Json(out);
    });
  return Value::undefined("str." + name);
}

Value dict_method(const Value& obj, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return Value::function("dict." + name, [obj, name](const CallArgs&) {
      Json out = Json::array();
      for (auto it = obj.json().begin(); it != obj.json().end(); ++it) {
        if (name == "items")
          out.push_back(Json::array({it.key(), it.value()}));
        else if (name == "keys")
          out.push_back(it.key());
        else
          out.push_back(it.value());
      }
      return Value::of(std::move(out));
    });
  }
  if (name == "get") {
    return Value::function("dict.get", [obj](const CallArgs& a) {
      if (a.args.empty()) throw_input_error("chat_template", "dict.get needs a key");
      const Value v = get_item(obj, a.args[0]);
      if (!v.is_undefined()) return v;
      return a.args.size() > 1 ? a.args[1] : Value::of(Json(nullptr));
    });
  }
  return Value::undefined("dict." + name);
}

// The attribute or key `path` ("a.b") of an item, for selectattr/map(attribute=...).
Value attr_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    if (v.is_undefined()) return v;
    v = get_attr(v, part);
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

CallArgs tail(const CallArgs& a, size_t from) {
  CallArgs out;
  for (size_t i = from; i < a.args.size(); ++i) out.args.push_back(a.args[i]);
  out.kwargs = a.kwargs;
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Jinja's indent(width=4, first=False, blank=False).
std::string indent(const std::string& s, const CallArgs& a, int line) {
  const Value* w = arg(a, 0, "width");
  std::string pad;
  if (w && w->is_string()) {
    pad = to_str(*w);
  } else {
    const int64_t width = int_arg(a, 0, "width", 4);  // ' ' * width: empty when negative
    if (width > static_cast<int64_t>(kMaxTextBytes))
      type_error(line, fmt::format("indent width {} exceeds the {} MiB limit", width,
                                   kMaxTextBytes >> 20));
    pad.assign(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  }
  const bool first = bool_arg(a, 1, "first", false), blank = bool_arg(a, 2, "blank", false);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < s.size()) {  // str.splitlines() on \n, \r\n, \r
    const size_t nl = s.find_first_of("\r\n", pos);
    if (nl == std::string::npos) {
      lines.push_back(s.substr(pos));
      break;
    }
    lines.push_back(s.substr(pos, nl - pos));
    pos = nl + (s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n' ? 2 : 1);
  }
  if (lines.empty()) lines.push_back("");  // s + "\n" always yields at least one line
  std::string out = first ? pad : "";
  append_bounded(out, lines[0], line);
  for (size_t i = 1; i < lines.size(); ++i) {
    append_bounded(out, "\n", line);
    if (blank || !lines[i].empty()) append_bounded(out, pad, line);
    append_bounded(out, lines[i], line);
  }
  return out;
}

Json as_list(const Value& v, int line) {
  Json out = Json::array();
  for (const Value& x : iterate(v, line)) out.push_back(to_json(x));
  return out;
}

double as_number(const Value& v, int line) {
  if (!v.is_data() || !(v.json().is_number() || v.json().is_boolean()))
    type_error(line, "expected a number, found " + type_name(v));
  return v.json().is_boolean() ? v.json().get<bool>() : v.json().get<double>();
}

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.kind == Value::Kind::kNamespace) {
    auto it = obj.ns->attrs.find(name);
    return it == obj.ns->attrs.end() ? Value::undefined(name) : it->second;
  }
  if (!obj.is_data()) return Value::undefined(name);
  const Json& j = obj.json();
  if (j.is_object()) {
    auto it = j.find(name);
    if (it != j.end()) return obj.child(*it);
    return dict_method(obj, name);
  }
  if (j.is_string()) return string_method(obj, name);
  return Value::undefined(name);
}

Value get_item(const Value& obj, const Value& key) {
  if (key.is_string() && (obj.kind == Value::Kind::kNamespace || obj.json().is_object())) {
    if (obj.kind == Value::Kind::kNamespace) return get_attr(obj, key.json().get<std::string>());
    auto it = obj.json().find(key.json().get<std::string>());
    return it == obj.json().end() ? Value::undefined(key.json().get<std::string>())
                                  : obj.child(*it);
  }
  if (!obj.is_data() || !key.is_data() || !key.json().is_number_integer())
    return Value::undefined("item");
  int64_t i = key.json().get<int64_t>();
  if (obj.json().is_array()) {
    const int64_t n = static_cast<int64_t>(obj.json().size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined("item");
    return obj.child(obj.json()[static_cast<size_t>(i)]);
  }
  if (obj.json().is_string()) {
    const auto chars = utf8_chars(obj.json().get<std::string>());
    const int64_t n = static_cast<int64_t>(chars.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined("item");
    return Value::of(Json(chars[static_cast<size_t>(i)]));
  }
  return Value::undefined("item");
}

Value get_slice(const Value& obj, const Value* start, const Value* stop, const Value* step) {
  const bool is_str = obj.is_string();
  if (!obj.is_data() || !(is_str || obj.json().is_array()))
    throw_input_error("chat_template", "cannot slice a value of type {}", type_name(obj));
  std::vector<std::string> chars;
  if (is_str) chars = utf8_chars(obj.json().get<std::string>());
  const int64_t n =
      is_str ? static_cast<int64_t>(chars.size()) : static_cast<int64_t>(obj.json().size());
  const auto num = [](const Value* v, bool& given) -> int64_t {
    given = v && v->is_data() && !v->is_none();
    if (given && !v->json().is_number_integer())
      throw_input_error("chat_template", "slice indices must be integers");
    return given ? v->json().get<int64_t>() : 0;
  };
  bool has_start, has_stop, has_step;
  int64_t b = num(start, has_start), e = num(stop, has_stop), s = num(step, has_step);
  if (!has_step) s = 1;
  if (s == 0) throw_input_error("chat_template", "slice step cannot be zero");
  // Python's PySlice_AdjustIndices.
  const auto adjust = [&](int64_t& x, bool given, int64_t dflt) {
    if (!given) {
      x = dflt;
      return;
    }
    if (x < 0)
      x = std::max<int64_t>(x + n, s < 0 ? -1 : 0);
    else if (x >= n)
      x = s < 0 ? n - 1 : n;
  };
  adjust(b, has_start, s < 0 ? n - 1 : 0);
  adjust(e, has_stop, s < 0 ? -1 : n);
  Json out = is_str ? Json("") : Json::array();
  std::string text;
  for (int64_t i = b; s > 0 ? i < e : i > e;) {
    if (is_str)
      text += chars[static_cast<size_t>(i)];
    else
      out.push_back(obj.json()[static_cast<size_t>(i)]);
    if (__builtin_add_overflow(i, s, &i)) break;  // a huge step: past the end
  }
  return Value::of(is_str ? Json(text) : std::move(out));
}

std::vector<Value> iterate(const Value& v, int line) {
  std::vector<Value> out;
  if (v.is_undefined()) return out;
  if (!v.is_data()) type_error(line, "'" + type_name(v) + "' object is not iterable");
  const Json& j = v.json();
  if (j.is_array()) {
    for (const Json& e : j) out.push_back(v.child(e));
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) out.push_back(Value::of(Json(it.key())));
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.size() > kMaxListItems && utf8_length(s) > kMaxListItems)
      type_error(line, fmt::format("cannot iterate over a string of more than {} characters",
                                   kMaxListItems));
    for (auto& c : utf8_chars(s)) out.push_back(Value::of(Json(c)));
  } else {
    type_error(line, "'" + type_name(v) + "' object is not iterable");
  }
  return out;
}

Value apply_filter(const std::string& name, const Value& v, const CallArgs& a, int line) {
  const Json& j = v.json();
  if (name == "trim" || name == "strip") {
    const Value* chars = arg(a, 0, "chars");
    const std::string c = chars ? to_str(*chars) : "";
    return Value::of(py_strip(to_str(v), true, true, chars ? &c : nullptr));
  }
  if (name == "length" || name == "count") {
    if (v.is_undefined()) return Value::of(0);
    if (j.is_string()) return Value::of(utf8_length(j.get<std::string>()));
    if (v.is_data() && (j.is_array() || j.is_object())) return Value::of(j.size());
    type_error(line, "object of type '" + type_name(v) + "' has no len()");
  }
  if (name == "tojson") {
    const Value* ascii = a.kwarg("ensure_ascii");
    if (ascii && truthy(*ascii))
      throw_input_error("chat_template",
                        "unsupported Jinja construct 'tojson(ensure_ascii=true)' at line {}", line);
    const Value* ind = arg(a, 0, "indent");
    const int64_t indent =
        ind && ind->is_data() && ind->json().is_number() ? int_arg(a, 0, "indent", -1) : -1;
    if (indent > static_cast<int64_t>(kMaxTextBytes))
      type_error(line, fmt::format("tojson indent {} exceeds the {} MiB limit", indent,
                                   kMaxTextBytes >> 20));
    std::string item_sep = indent >= 0 ? "," : ", ", key_sep = ": ";
    if (const Value* sep = a.kwarg("separators");
        sep && sep->is_data() && sep->json().size() == 2) {
      if (!sep->json().is_array() || !sep->json()[0].is_string() || !sep->json()[1].is_string())
        type_error(line, "tojson separators must be two strings, found " + type_name(*sep));
      item_sep = sep->json()[0].get<std::string>();
      key_sep = sep->json()[1].get<std::string>();
    }
    return Value::of(to_json_text(to_json(v), static_cast<int>(std::max<int64_t>(indent, -1)),
                                  item_sep, key_sep,
                                  a.kwarg("sort_keys") && truthy(*a.kwarg("sort_keys"))));
  }
  if (name == "string") return Value::of(to_str(v));
  if (name == "upper")
    return Value::of(ascii_map(to_str(v), [](int c) { return std::toupper(c); }));
  if (name == "lower")
    return Value::of(ascii_map(to_str(v), [](int c) { return std::tolower(c); }));
  if (name == "capitalize") return Value::of(capitalize(to_str(v)));
  if (name == "title") return Value::of(title(to_str(v)));
  if (name == "default" || name == "d") {
    const bool use = v.is_undefined() || (bool_arg(a, 1, "boolean", false) && !truthy(v));
    if (!use) return v;
    const Value* dflt = arg(a, 0, "default_value");
    return dflt ? *dflt : Value::of(Json(""));
  }
  if (name == "first" || name == "last") {
    const auto items = iterate(v, line);
    if (items.empty()) return Value::undefined(name);
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    const std::string sep = str_arg(a, 0, "d", "");
    const Value* attribute = arg(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& x : iterate(v, line)) {
      if (!first) append_bounded(out, sep, line);
      append_bounded(out, to_str(attribute ? attr_path(x, to_str(*attribute)) : x), line);
      first = false;
    }
    return Value::of(out);
  }
  if (name == "replace")
    return Value::of(replace_all(to_str(v), str_arg(a, 0, "old", ""), str_arg(a, 1, "new", ""),
                                 int_arg(a, 2, "count", -1)));
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool by_attr = name.ends_with("attr"), keep = name.starts_with("select");
    const size_t test_at = by_attr ? 1 : 0;
    if (by_attr && a.args.empty()) type_error(line, name + " needs an attribute name");
    Json out = Json::array();
    for (const Value& x : iterate(v, line)) {
      const Value subject = by_attr ? attr_path(x, to_str(a.args[0])) : x;
      const bool pass = a.args.size() > test_at ? apply_test(to_str(a.args[test_at]), subject,
                                                             tail(a, test_at + 1), line)
                                                : truthy(subject);
      if (pass == keep) out.push_back(to_json(x));
    }
    return Value::of(std::move(out));
  }
  if (name == "map") {
    Json out = Json::array();
    const Value* attribute = a.kwarg("attribute");
    for (const Value& x : iterate(v, line)) {
      if (attribute) {
        Value r = attr_path(x, to_str(*attribute));
        if (r.is_undefined() && a.kwarg("default")) r = *a.kwarg("default");
        out.push_back(to_json(r));
      } else {
        if (a.args.empty()) type_error(line, "map needs a filter name or attribute=");
        out.push_back(to_json(apply_filter(to_str(a.args[0]), x, tail(a, 1), line)));
      }
    }
    return Value::of(std::move(out));
  }
  if (name == "list") return Value::of(as_list(v, line));
  if (name == "items") {
    if (v.is_undefined()) return Value::of(Json::array());
    if (!j.is_object()) type_error(line, "items filter needs a mapping");
    return dict_method(v, "items").fn->operator()(CallArgs{});
  }
  if (name == "indent") return Value::of(indent(to_str(v), a, line));
  if (name == "safe") return v;
  if (name == "escape" || name == "e") return Value::of(html_escape(to_str(v)));
  if (name == "abs") {
    if (j.is_number_integer()) {
      const int64_t i = j.get<int64_t>();
      if (i == INT64_MIN) type_error(line, "integer overflow");
      return Value::of(i < 0 ? -i : i);
    }
    return Value::of(std::abs(as_number(v, line)));
  }
  if (name == "int") {
    if (j.is_string()) {
      try {
        return Value::of(std::stoll(j.get<std::string>()));
      } catch (const std::exception&) {
        return Value::of(int_arg(a, 0, "default", 0));
      }
    }
    if (v.is_data() && j.is_number_integer()) return v;
    return Value::of(v.is_data() && (j.is_number() || j.is_boolean())
                         ? float_to_int(as_number(v, line), line)
                         : int_arg(a, 0, "default", 0));
  }
  if (name == "float") {
    if (j.is_string()) {
      try {
        return Value::of(std::stod(j.get<std::string>()));
      } catch (const std::exception&) {
        return Value::of(0.0);
      }
    }
    return Value::of(v.is_data() && (j.is_number() || j.is_boolean()) ? as_number(v, line) : 0.0);
  }
  if (name == "reverse") {
    if (j.is_string()) {
      const Value step = Value::of(-1);
      return get_slice(v, nullptr, nullptr, &step);
    }
    Json out = as_list(v, line);
    std::reverse(out.begin(), out.end());
    return Value::of(std::move(out));
  }
  if (name == "unique") {
    Json out = Json::array();
    std::set<Json> seen;  // not a scan of `out` per item: that is quadratic in a 1M-item range()
    for (const Value& x : iterate(v, line)) {
      Json item = to_json(x);
      if (seen.insert(item).second) out.push_back(std::move(item));
    }
    return Value::of(std::move(out));
  }
  if (name == "sum") {
    // Integers add exactly (checked) until a float joins, as Python's sum() does.
    int64_t int_total = 0;
    double total = 0;
    bool all_int = true;
    for (const Value& x : iterate(v, line)) {
      const double d = as_number(x, line);
      if (all_int && (x.json().is_number_integer() || x.json().is_boolean())) {
        const int64_t i = x.json().is_boolean() ? x.json().get<bool>() : x.json().get<int64_t>();
        if (__builtin_add_overflow(int_total, i, &int_total)) type_error(line, "integer overflow");
        continue;
      }
      if (all_int) total = static_cast<double>(int_total);
      all_int = false;
      total += d;
    }
    return all_int ? Value::of(int_total) : Value::of(total);
  }
  throw_input_error("chat_template", "unsupported Jinja construct 'filter {}' at line {}", name,
                    line);
}

bool apply_test(const std::string& name, const Value& v, const CallArgs& a, int line) {
  const Json& j = v.json();
  const auto other = [&]() -> const Value& {
    if (a.args.empty()) type_error(line, "test '" + name + "' needs an argument");
    return a.args[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_data() && (j.is_number() || j.is_boolean());
  if (name == "integer") return v.is_data() && j.is_number_integer();
  if (name == "float") return v.is_data() && j.is_number_float();
  if (name == "boolean") return v.is_data() && j.is_boolean();
  if (name == "true") return v.is_data() && j.is_boolean() && j.get<bool>();
  if (name == "false") return v.is_data() && j.is_boolean() && !j.get<bool>();
  if (name == "mapping") return v.is_data() && j.is_object();
  // Jinja's Undefined is iterable (it iterates as empty), so `undefined is iterable` holds.
  if (name == "iterable")
    return v.is_undefined() || (v.is_data() && (j.is_string() || j.is_array() || j.is_object()));
  if (name == "sequence") return v.is_data() && (j.is_string() || j.is_array() || j.is_object());
  if (name == "callable") return v.kind == Value::Kind::kFunction;
  if (name == "odd" || name == "even") {
    if (!v.is_data() || !j.is_number_integer())
      type_error(line, "test '" + name + "' needs an integer");
    return (j.get<int64_t>() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    const int64_t d = int_arg(a, 0, "num", 1);
    if (d == 0) type_error(line, "division by zero in 'divisibleby'");
    if (d == -1) return true;  // INT64_MIN % -1 traps
    if (v.is_data() && j.is_number_integer()) return j.get<int64_t>() % d == 0;
    return std::fmod(as_number(v, line), static_cast<double>(d)) == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas")
    return values_equal(v, other());
  if (name == "ne" || name == "!=") return !values_equal(v, other());
  if (name == "lt" || name == "<" || name == "lessthan") return value_less(v, other());
  if (name == "gt" || name == ">" || name == "greaterthan") return value_less(other(), v);
  if (name == "le" || name == "<=") return !value_less(other(), v);
  if (name == "ge" || name == ">=") return !value_less(v, other());
  if (name == "in") {
    const Value& c = other();
    if (c.is_string()) return c.json().get<std::string>().find(to_str(v)) != std::string::npos;
    for (const Value& x : iterate(c, line))
      if (values_equal(x, v)) return true;
    return false;
  }
  if (name == "lower" || name == "upper") {
    const std::string s = to_str(v);
    return s == ascii_map(
                    s, name == "lower" ? [](int c) { return std::tolower(c); }
                                       : [](int c) { return std::toupper(c); });
  }
  throw_input_error("chat_template", "unsupported Jinja construct 'test {}' at line {}", name,
                    line);
}

}  // namespace fitlm::jinja
