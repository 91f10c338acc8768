// Tree-walking renderer. Scoping follows Jinja: `set` writes to the innermost scope, each for-loop
// iteration has its own scope (so a `set` in a loop body does not leak out; templates use
// namespace() for that), `if` opens none, and a macro call sees the template globals plus its
// parameters.
#include "fitlm/text/jinja/evaluator.h"

#include <cmath>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/builtins.h"
#include "fitlm/text/jinja/parser.h"

namespace fitlm::jinja {
namespace {

using K = Expr::Kind;

[[noreturn]] void fail(int line, const std::string& what) {
  throw_input_error("chat_template", "{} at line {}", what, line);
}

// Operands of arithmetic: Python treats bool as int.
bool is_num(const Json& j) {
  return j.is_number() || j.is_boolean();
}
bool is_int(const Json& j) {
  return j.is_number_integer() || j.is_number_unsigned() || j.is_boolean();
}
int64_t as_int(const Json& j) {
  return j.is_boolean() ? j.get<bool>() : j.get<int64_t>();
}
double as_double(const Json& j) {
  return j.is_boolean() ? j.get<bool>() : j.get<double>();
}

Value arithmetic(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "~") return Value::of(to_str(a) + to_str(b));
  if (a.is_undefined() || b.is_undefined())
    fail(line, fmt::format("'{}' is undefined (operand of '{}')",
                           a.is_undefined() ? a.name : b.name, op));
  const Json& x = a.json();
  const Json& y = b.json();
  const bool nums = a.is_data() && b.is_data() && is_num(x) && is_num(y);
  const bool ints = nums && is_int(x) && is_int(y);
  if (op == "+") {
    if (x.is_string() && y.is_string())
      return Value::of(x.get_ref<const std::string&>() + y.get_ref<const std::string&>());
    if (x.is_array() && y.is_array()) {
      Json out = x;
      out.insert(out.end(), y.begin(), y.end());
      return Value::of(std::move(out));
    }
    if (ints) return Value::of(as_int(x) + as_int(y));
    if (nums) return Value::of(as_double(x) + as_double(y));
  } else if (op == "-") {
    if (ints) return Value::of(as_int(x) - as_int(y));
    if (nums) return Value::of(as_double(x) - as_double(y));
  } else if (op == "*") {
    if (ints) return Value::of(as_int(x) * as_int(y));
    if (nums) return Value::of(as_double(x) * as_double(y));
    const bool str_rep = x.is_string() && is_int(y), rep_str = is_int(x) && y.is_string();
    if (str_rep || rep_str) {
      const std::string& s = (str_rep ? x : y).get_ref<const std::string&>();
      std::string out;
      for (int64_t i = 0; i < as_int(str_rep ? y : x); ++i) out += s;
      return Value::of(out);
    }
  } else if (op == "/" || op == "//" || op == "%") {
    if (nums) {
      if (as_double(y) == 0) fail(line, "division by zero");
      if (ints && op != "/") {
        const int64_t p = as_int(x), q = as_int(y);
        int64_t div = p / q, mod = p % q;
        if (mod != 0 && ((mod < 0) != (q < 0))) {  // Python floors toward -inf
          --div;
          mod += q;
        }
        return Value::of(op == "//" ? div : mod);
      }
      const double p = as_double(x), q = as_double(y);
      if (op == "/") return Value::of(p / q);
      if (op == "//") return Value::of(std::floor(p / q));
      return Value::of(p - q * std::floor(p / q));
    }
    if (op == "%" && x.is_string()) fail(line, "unsupported Jinja construct 'string % formatting'");
  } else if (op == "**") {
    if (ints && as_int(y) >= 0) {
      int64_t r = 1;
      for (int64_t i = 0; i < as_int(y); ++i) r *= as_int(x);
      return Value::of(r);
    }
    if (nums) return Value::of(std::pow(as_double(x), as_double(y)));
  }
  fail(line, fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a),
                         type_name(b)));
}

bool contains(const Value& container, const Value& item, int line) {
  if (container.is_string()) {
    if (!item.is_string())
      fail(line,
           fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
    return container.json().get_ref<const std::string&>().find(
               item.json().get_ref<const std::string&>()) != std::string::npos;
  }
  if (container.is_data() && container.json().is_object())
    return item.is_string() && container.json().contains(item.json().get<std::string>());
  if (container.kind == Value::Kind::kNamespace)
    return item.is_string() && container.ns->attrs.count(item.json().get<std::string>()) > 0;
  for (const Value& x : iterate(container, line))
    if (values_equal(x, item)) return true;
  return false;
}

bool compare(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "==") return values_equal(a, b);
  if (op == "!=") return !values_equal(a, b);
  if (op == "in") return contains(b, a, line);
  if (op == "not in") return !contains(b, a, line);
  if (op == "<") return value_less(a, b);
  if (op == ">") return value_less(b, a);
  if (op == "<=") return !value_less(b, a);
  return !value_less(a, b);  // ">="
}

Value call_range(const CallArgs& a) {
  std::vector<int64_t> n;
  for (const Value& v : a.args) {
    if (!v.is_data() || !v.json().is_number_integer())
      throw_input_error("chat_template", "range() arguments must be integers");
    n.push_back(v.json().get<int64_t>());
  }
  if (n.empty() || n.size() > 3)
    throw_input_error("chat_template", "range() takes 1 to 3 arguments");
  const int64_t start = n.size() > 1 ? n[0] : 0, stop = n.size() > 1 ? n[1] : n[0],
                step = n.size() > 2 ? n[2] : 1;
  if (step == 0) throw_input_error("chat_template", "range() step must not be zero");
  Json out = Json::array();
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    out.push_back(i);
    if (out.size() > 1000000) throw_input_error("chat_template", "range() too large");
  }
  return Value::of(std::move(out));
}

class Renderer {
 public:
  explicit Renderer(const std::map<std::string, Value>& vars) {
    scopes_.push_back(vars);
    auto& g = scopes_[0];
    g.try_emplace("range", Value::function("range", call_range));
    g.try_emplace("namespace", Value::function("namespace", [](const CallArgs& a) {
                    Value ns = Value::make_namespace();
                    for (const Value& init : a.args)  // namespace({'a': 1})
                      if (init.is_data() && init.json().is_object())
                        for (auto it = init.json().begin(); it != init.json().end(); ++it)
                          ns.ns->attrs[it.key()] = init.child(it.value());
                    for (const auto& [k, v] : a.kwargs) ns.ns->attrs[k] = v;
                    return ns;
                  }));
    g.try_emplace("dict", Value::function("dict", [](const CallArgs& a) {
                    Json out = Json::object();
                    for (const auto& [k, v] : a.kwargs) out[k] = to_json(v);
                    return Value::of(std::move(out));
                  }));
  }

  std::string run(const Body& body) {
    exec(body);
    return std::move(out_);
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow exec(const Body& body) {
    for (const StmtPtr& s : body) {
      const Flow f = exec(*s);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& s) {
    switch (s.kind) {
      case Stmt::Kind::kText: out_ += s.text; break;
      case Stmt::Kind::kPrint: out_ += to_str(eval(*s.expr)); break;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < s.conds.size(); ++i)
          if (truthy(eval(*s.conds[i]))) return exec(s.bodies[i]);
        if (s.bodies.size() > s.conds.size()) return exec(s.bodies.back());
        break;
      case Stmt::Kind::kFor: exec_for(s); break;
      case Stmt::Kind::kSet: exec_set(s); break;
      case Stmt::Kind::kMacro: define_macro(s); break;
      case Stmt::Kind::kBreak: return Flow::kBreak;
      case Stmt::Kind::kContinue: return Flow::kContinue;
      case Stmt::Kind::kScope: return exec(s.bodies[0]);
    }
    return Flow::kNormal;
  }

  void bind(const std::vector<std::string>& targets, const Value& v, int line) {
    auto& scope = scopes_.back();
    if (targets.size() == 1) {
      scope[targets[0]] = v;
      return;
    }
    if (!v.is_data() || !v.json().is_array() || v.json().size() != targets.size())
      fail(line, fmt::format("cannot unpack {} into {} names", type_name(v), targets.size()));
    for (size_t i = 0; i < targets.size(); ++i) scope[targets[i]] = v.child(v.json()[i]);
  }

  void exec_for(const Stmt& s) {
    std::vector<Value> items = iterate(eval(*s.expr), s.line);
    scopes_.emplace_back();
    if (s.cond) {  // `for x in xs if cond`: loop.* counts only the items that pass
      std::vector<Value> kept;
      for (Value& v : items) {
        bind(s.targets, v, s.line);
        if (truthy(eval(*s.cond))) kept.push_back(std::move(v));
      }
      items = std::move(kept);
    }
    const size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
      scopes_.back().clear();
      Value loop = Value::make_namespace();
      auto& l = loop.ns->attrs;
      l["index0"] = Value::of(i);
      l["index"] = Value::of(i + 1);
      l["revindex0"] = Value::of(n - i - 1);
      l["revindex"] = Value::of(n - i);
      l["first"] = Value::of(i == 0);
      l["last"] = Value::of(i + 1 == n);
      l["length"] = Value::of(n);
      l["depth"] = Value::of(1);
      l["depth0"] = Value::of(0);
      if (i > 0) l["previtem"] = items[i - 1];
      if (i + 1 < n) l["nextitem"] = items[i + 1];
      scopes_.back()["loop"] = std::move(loop);
      bind(s.targets, items[i], s.line);
      if (exec(s.bodies[0]) == Flow::kBreak) break;
    }
    scopes_.pop_back();
    if (n == 0 && s.bodies.size() > 1) exec(s.bodies[1]);
  }

  void exec_set(const Stmt& s) {
    if (!s.bodies.empty()) {  // {% set x %}...{% endset %}
      std::string saved = std::move(out_);
      out_.clear();
      exec(s.bodies[0]);
      scopes_.back()[s.targets[0]] = Value::of(std::move(out_));
      out_ = std::move(saved);
      return;
    }
    Value v = eval(*s.expr);
    if (!s.attr.empty()) {
      const Value target = lookup(s.targets[0]);
      if (target.kind != Value::Kind::kNamespace)
        fail(s.line, fmt::format("cannot assign attribute '{}' on '{}': not a namespace()", s.attr,
                                 s.targets[0]));
      target.ns->attrs[s.attr] = std::move(v);
      return;
    }
    bind(s.targets, v, s.line);
  }

  void define_macro(const Stmt& s) {
    const Stmt* def = &s;
    scopes_.back()[s.name] = Value::function(s.name, [this, def](const CallArgs& a) {
      if (++depth_ > 100) fail(def->line, "macro recursion too deep");
      if (a.args.size() > def->targets.size())
        fail(def->line, fmt::format("macro '{}' takes {} arguments, {} given", def->name,
                                    def->targets.size(), a.args.size()));
      std::vector<std::map<std::string, Value>> saved = std::move(scopes_);
      scopes_ = {saved[0], {}};
      for (size_t i = 0; i < def->targets.size(); ++i) {
        const Value* kw = a.kwarg(def->targets[i]);
        scopes_.back()[def->targets[i]] = i < a.args.size()  ? a.args[i]
                                          : kw               ? *kw
                                          : def->defaults[i] ? eval(*def->defaults[i])
                                                             : Value::undefined(def->targets[i]);
      }
      std::string saved_out = std::move(out_);
      out_.clear();
      exec(def->bodies[0]);
      Value result = Value::of(std::move(out_));
      out_ = std::move(saved_out);
      scopes_ = std::move(saved);
      --depth_;
      return result;
    });
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value::undefined(name);
  }

  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.items.size(); ++i) a.args.push_back(eval(*e.items[i]));
    for (const auto& [k, v] : e.kwargs) a.kwargs.emplace_back(k, eval(*v));
    return a;
  }

  // Reading through an undefined value is an error in Jinja (UndefinedError), not "".
  Value must_be_defined(Value v, const std::string& reading, int line) {
    if (v.is_undefined())
      fail(line, fmt::format("'{}' is undefined (reading {})", v.name, reading));
    return v;
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case K::kLiteral: return Value::of_shared(e.literal);
      case K::kName: return lookup(e.name);
      case K::kList:
      case K::kTuple: {
        Json out = Json::array();
        for (const ExprPtr& x : e.items) out.push_back(to_json(eval(*x)));
        return Value::of(std::move(out));
      }
      case K::kDict: {
        Json out = Json::object();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2)
          out[to_str(eval(*e.items[i]))] = to_json(eval(*e.items[i + 1]));
        return Value::of(std::move(out));
      }
      case K::kAttr: {
        Value v = get_attr(must_be_defined(eval(*e.items[0]), "." + e.name, e.line), e.name);
        if (v.is_undefined()) v.name = e.name;
        return v;
      }
      case K::kIndex: {
        const Value obj = must_be_defined(eval(*e.items[0]), "[...]", e.line);
        const Value key = eval(*e.items[1]);
        Value v = get_item(obj, key);
        if (v.is_undefined()) v.name = fmt::format("[{}]", to_str(key));
        return v;
      }
      case K::kSlice: {
        const Value obj = must_be_defined(eval(*e.items[0]), "[...:...]", e.line);
        Value parts[3];
        for (int i = 0; i < 3; ++i)
          if (e.items[i + 1]) parts[i] = eval(*e.items[i + 1]);
        const auto ptr = [&](int i) { return e.items[i + 1] ? &parts[i] : nullptr; };
        return get_slice(obj, ptr(0), ptr(1), ptr(2));
      }
      case K::kCall: {
        const Value callee = eval(*e.items[0]);
        if (callee.kind != Value::Kind::kFunction) {
          if (callee.is_undefined()) fail(e.line, fmt::format("'{}' is undefined", callee.name));
          fail(e.line, fmt::format("'{}' object is not callable", type_name(callee)));
        }
        return (*callee.fn)(eval_args(e, 1));
      }
      case K::kFilter: return apply_filter(e.name, eval(*e.items[0]), eval_args(e, 1), e.line);
      case K::kTest:
        return Value::of(apply_test(e.name, eval(*e.items[0]), eval_args(e, 1), e.line) !=
                         e.negated);
      case K::kUnary: {
        const Value v = eval(*e.items[0]);
        if (e.name == "not") return Value::of(!truthy(v));
        if (!v.is_data() || !is_num(v.json()))
          fail(e.line, fmt::format("bad operand type for unary {}: '{}'", e.name, type_name(v)));
        if (e.name == "+") return v;
        if (is_int(v.json())) return Value::of(-as_int(v.json()));
        return Value::of(-as_double(v.json()));
      }
      case K::kBinary: {
        Value a = eval(*e.items[0]);
        if (e.name == "and") return truthy(a) ? eval(*e.items[1]) : a;
        if (e.name == "or") return truthy(a) ? a : eval(*e.items[1]);
        return arithmetic(e.name, a, eval(*e.items[1]), e.line);
      }
      case K::kCompare: {
        Value left = eval(*e.items[0]);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.items[i + 1]);
          if (!compare(e.ops[i], left, right, e.line)) return Value::of(false);
          left = std::move(right);
        }
        return Value::of(true);
      }
      case K::kCond:
        if (truthy(eval(*e.items[0]))) return eval(*e.items[1]);
        return e.items[2] ? eval(*e.items[2]) : Value::undefined("else branch");
    }
    fail(e.line, "unknown expression");
  }

  std::vector<std::map<std::string, Value>> scopes_;
  std::string out_;
  int depth_ = 0;
};

}  // namespace

Template::Template(const std::string& source) : body_(parse_template(source)) {}

std::string Template::render(const std::map<std::string, Value>& vars) const {
  return Renderer(vars).run(body_);
}

}  // namespace fitlm::jinja
