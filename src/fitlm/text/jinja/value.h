// Runtime values of the chat-template Jinja engine. Template data (messages, tools, literals) is
// immutable JSON shared by pointer, so `messages[i].content` never copies the conversation; the
// only mutable objects are namespace() instances, which Jinja shares by reference.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace fitlm::jinja {

// ordered_json keeps the key order of the user's dicts, as Python dicts (and tojson) do.
using Json = nlohmann::ordered_json;

struct Value;
struct Namespace;

// Arguments of a call: positional then keyword, as Python passes them.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  const Value* kwarg(const std::string& name) const;
};

using Function = std::function<Value(const CallArgs&)>;

struct Value {
  enum class Kind { kUndefined, kData, kNamespace, kFunction };

  Kind kind = Kind::kUndefined;
  std::shared_ptr<const Json> data;  // kData: points into a shared, immutable JSON tree
  std::shared_ptr<Namespace> ns;     // kNamespace
  std::shared_ptr<const Function> fn;
  std::string name;  // kUndefined: what was looked up (for error messages); kFunction: its name

  static Value undefined(std::string what = {});
  static Value of(Json j);
  static Value of_shared(std::shared_ptr<const Json> root);
  static Value function(std::string name, Function f);
  static Value make_namespace();

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_data() const { return kind == Kind::kData; }
  // The JSON payload; null for non-data values.
  const Json& json() const;
  // A value for one element of this one's JSON, sharing ownership of the tree (no copy).
  Value child(const Json& element) const;
  bool is_string() const { return is_data() && data->is_string(); }
  bool is_none() const { return is_data() && data->is_null(); }
};

struct Namespace {
  std::map<std::string, Value> attrs;
  Namespace() = default;
  // Iterative: a template can chain namespaces (ns.next = namespace(next=ns.next) in a loop) far
  // deeper than a recursive destruction has stack for.
  ~Namespace();
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;
};

// Python semantics shared by the evaluator and the filters.
bool truthy(const Value& v);
// str(v): what `{{ v }}` prints. Undefined prints as "" (Jinja's default Undefined).
std::string to_str(const Value& v);
// repr(v) of a JSON value, as str() of a list or dict shows its items.
std::string py_repr(const Json& j);
// Python float repr: shortest round-trip digits, "1.0", "1e-05", "1e+16".
std::string float_repr(double d);
// json.dumps(v, ensure_ascii=False, indent=indent, separators=...), as transformers' tojson does.
std::string to_json_text(const Json& j, int indent = -1, const std::string& item_sep = ", ",
                         const std::string& key_sep = ": ", bool sort_keys = false);
// The JSON form of a value for storing in lists/dicts built by the template. The copy is
// charged to `budget` (16 bytes per item plus the bytes of its strings and keys; an input error
// when it runs out), and a value nested deeper than kMaxValueDepth is an input error: copying and
// printing recurse over it. The one-argument form has a budget of kMaxTextBytes.
Json to_json(const Value& v);
Json to_json(const Value& v, size_t& budget);
// Takes `bytes` from budget, or throws the input error "value exceeds the ... limit".
void charge(size_t& budget, size_t bytes);
bool values_equal(const Value& a, const Value& b);
// Python ordering (<) for numbers and strings; throws for other types.
bool value_less(const Value& a, const Value& b);
std::string type_name(const Value& v);

// Strings are UTF-8; Python indexes them by code point.
std::vector<std::string> utf8_chars(const std::string& s);
size_t utf8_length(const std::string& s);
// Python's str.isspace() for one code point (the set str.strip() removes).
bool is_py_space(char32_t c);
std::string py_strip(const std::string& s, bool left, bool right, const std::string* chars);

}  // namespace fitlm::jinja
