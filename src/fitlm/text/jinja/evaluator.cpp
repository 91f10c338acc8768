// Tree-walking renderer. Scoping follows Jinja: `set` writes to the innermost scope, each for-loop
// iteration has its own scope (so a `set` in a loop body does not leak out; templates use
// namespace() for that), `if` opens none, and a macro call sees the template globals plus its
// parameters. Integers are int64 with Python's results or an "integer overflow" error (there are
// no bignums); recursion, output and loops are bounded as limits.h says.
#include "fitlm/text/jinja/evaluator.h"

#include <cmath>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/builtins.h"
#include "fitlm/text/jinja/limits.h"
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

[[noreturn]] void fail_overflow(int line) {
  fail(line, "integer overflow");
}
int64_t checked_add(int64_t a, int64_t b, int line) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail_overflow(line);
  return r;
}
int64_t checked_sub(int64_t a, int64_t b, int line) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) fail_overflow(line);
  return r;
}
int64_t checked_mul(int64_t a, int64_t b, int line) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail_overflow(line);
  return r;
}

// Python's x ** y for y >= 0, by squaring: y can be huge when x is -1, 0 or 1.
int64_t int_pow(int64_t x, int64_t y, int line) {
  int64_t r = 1;
  while (y > 0) {
    if (y & 1) r = checked_mul(r, x, line);
    y >>= 1;
    // x*x overflowing while bits remain means the result overflows too (|x| >= 2 from here).
    if (y > 0) x = checked_mul(x, x, line);
  }
  return r;
}

// s * n, as Python: empty for n <= 0.
std::string repeat(const std::string& s, int64_t n, int line) {
  if (n <= 0 || s.empty()) return "";
  if (static_cast<uint64_t>(n) > kMaxTextBytes / s.size())
    fail(line, fmt::format("string repetition of {} bytes x {} exceeds the {} MiB limit", s.size(),
                           n, kMaxTextBytes >> 20));
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out += s;
  return out;
}

std::string concat(const std::string& a, const std::string& b, int line) {
  if (a.size() + b.size() > kMaxTextBytes)
    fail(line, fmt::format("string of {} bytes exceeds the {} MiB limit", a.size() + b.size(),
                           kMaxTextBytes >> 20));
  return a + b;
}

Json repeat_list(const Value& v, int64_t n, int line) {
  const Json& list = v.json();
  Json out = Json::array();
  if (n <= 0 || list.empty()) return out;
  size_t budget = kMaxTextBytes;
  to_json(v, budget);  // checks one copy's depth and size
  const size_t cost = kMaxTextBytes - budget;
  if (static_cast<uint64_t>(n) > kMaxListItems / list.size() ||
      static_cast<uint64_t>(n) > kMaxTextBytes / cost)
    fail(line, fmt::format("list repetition of {} items x {} exceeds the limit ({} items, {} MiB)",
                           list.size(), n, kMaxListItems, kMaxTextBytes >> 20));
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), list.begin(), list.end());
  return out;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "~") return Value::of(concat(to_str(a), to_str(b), line));
  if (a.is_undefined() || b.is_undefined())
    fail(line, fmt::format("'{}' is undefined (operand of '{}')",
                           a.is_undefined() ? a.name : b.name, op));
  const Json& x = a.json();
  const Json& y = b.json();
  const bool nums = a.is_data() && b.is_data() && is_num(x) && is_num(y);
  const bool ints = nums && is_int(x) && is_int(y);
  if (op == "+") {
    if (x.is_string() && y.is_string())
      return Value::of(
          concat(x.get_ref<const std::string&>(), y.get_ref<const std::string&>(), line));
    if (x.is_array() && y.is_array()) {
      size_t budget = kMaxTextBytes;
      Json out = to_json(a, budget);
      Json tail = to_json(b, budget);
      for (Json& item : tail) out.push_back(std::move(item));
      return Value::of(std::move(out));
    }
    if (ints) return Value::of(checked_add(as_int(x), as_int(y), line));
    if (nums) return Value::of(as_double(x) + as_double(y));
  } else if (op == "-") {
    if (ints) return Value::of(checked_sub(as_int(x), as_int(y), line));
    if (nums) return Value::of(as_double(x) - as_double(y));
  } else if (op == "*") {
    if (ints) return Value::of(checked_mul(as_int(x), as_int(y), line));
    if (nums) return Value::of(as_double(x) * as_double(y));
    const bool y_int = a.is_data() && b.is_data() && is_int(y);
    const bool x_int = a.is_data() && b.is_data() && is_int(x);
    if (x.is_string() && y_int)
      return Value::of(repeat(x.get_ref<const std::string&>(), as_int(y), line));
    if (x_int && y.is_string())
      return Value::of(repeat(y.get_ref<const std::string&>(), as_int(x), line));
    if (x.is_array() && y_int) return Value::of(repeat_list(a, as_int(y), line));
    if (x_int && y.is_array()) return Value::of(repeat_list(b, as_int(x), line));
  } else if (op == "/" || op == "//" || op == "%") {
    if (nums) {
      if (as_double(y) == 0) fail(line, "division by zero");
      if (ints && op != "/") {
        const int64_t p = as_int(x), q = as_int(y);
        if (q == -1) {  // p / -1 traps for INT64_MIN; Python's p % -1 is 0
          if (op == "%") return Value::of(0);
          return Value::of(checked_sub(0, p, line));
        }
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
    if (ints && as_int(y) >= 0) return Value::of(int_pow(as_int(x), as_int(y), line));
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
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    if (out.size() >= kMaxListItems)
      throw_input_error("chat_template", "range() of more than {} items", kMaxListItems);
    out.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;  // past INT64_MAX/MIN: past stop too
  }
  return Value::of(std::move(out));
}

class Renderer {
 public:
  explicit Renderer(const std::map<std::string, Value>& vars) {
    scopes_.push_back(vars);
    auto& g = scopes_[0];
    g.try_emplace("range", Value::function("range", call_range));
    g.try_emplace("namespace", Value::function("namespace", [this](const CallArgs& a) {
                    Value ns = Value::make_namespace();
                    track(ns);
                    for (const Value& init : a.args)  // namespace({'a': 1})
                      if (init.is_data() && init.json().is_object())
                        for (auto it = init.json().begin(); it != init.json().end(); ++it)
                          ns.ns->attrs[it.key()] = init.child(it.value());
                    for (const auto& [k, v] : a.kwargs) ns.ns->attrs[k] = v;
                    return ns;
                  }));
    g.try_emplace("dict", Value::function("dict", [](const CallArgs& a) {
                    Json out = Json::object();
                    size_t budget = kMaxTextBytes;
                    for (const auto& [k, v] : a.kwargs) out[k] = to_json(v, budget);
                    return Value::of(std::move(out));
                  }));
  }

  // `{% set ns.me = ns %}` is a reference cycle, which Python's garbage collector frees: empty
  // every namespace() still alive so that the render leaks none.
  ~Renderer() {
    for (const std::weak_ptr<Namespace>& w : namespaces_)
      if (std::shared_ptr<Namespace> ns = w.lock()) {
        std::map<std::string, Value> attrs = std::move(ns->attrs);
        ns->attrs.clear();
      }
  }
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  std::string run(const Body& body) {
    exec(body);
    return std::move(out_);
  }

 private:
  void track(const Value& ns) {
    if (namespaces_.size() == namespaces_.capacity()) {  // drop the dead ones before growing
      std::erase_if(namespaces_, [](const std::weak_ptr<Namespace>& w) { return w.expired(); });
      if (namespaces_.size() * 2 > namespaces_.capacity())
        namespaces_.reserve(namespaces_.capacity() * 2);
    }
    namespaces_.push_back(ns.ns);
  }

  enum class Flow { kNormal, kBreak, kContinue };

  // One level of eval/exec recursion for as long as it lives. The parser bounds one body's
  // depth; macro calls stack bodies, so the render bounds the total.
  class Nest {
   public:
    Nest(int& depth, int line) : depth_(depth) {
      if (++depth_ > kMaxRenderDepth) {
        --depth_;
        fail(line, fmt::format("rendering nested deeper than {} levels", kMaxRenderDepth));
      }
    }
    ~Nest() { --depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    int& depth_;
  };

  // Appends to the output; the limit counts the unfinished outer text of macro calls and
  // `{% set %}` blocks too, since it is all held at once.
  void emit(const std::string& s, int line) {
    if (held_ + out_.size() + s.size() > kMaxTextBytes)
      fail(line, fmt::format("rendered text exceeds the {} MiB limit", kMaxTextBytes >> 20));
    out_ += s;
  }

  // Renders a body into a string of its own: a macro's result, `{% set x %}...{% endset %}`.
  std::string capture(const Body& body) {
    std::string outer = std::move(out_);
    out_.clear();
    held_ += outer.size();
    exec(body);
    held_ -= outer.size();
    std::string inner = std::move(out_);
    out_ = std::move(outer);
    return inner;
  }

  void count_iteration(int line) {
    if (++iterations_ > kMaxLoopIterations)
      fail(line, fmt::format("more than {} loop iterations", kMaxLoopIterations));
  }

  Flow exec(const Body& body) {
    for (const StmtPtr& s : body) {
      const Flow f = exec(*s);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& s) {
    const Nest nest(depth_, s.line);
    switch (s.kind) {
      case Stmt::Kind::kText: emit(s.text, s.line); break;
      case Stmt::Kind::kPrint: emit(to_str(eval(*s.expr)), s.line); break;
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
        count_iteration(s.line);
        bind(s.targets, v, s.line);
        if (truthy(eval(*s.cond))) kept.push_back(std::move(v));
      }
      items = std::move(kept);
    }
    const size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
      count_iteration(s.line);
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
      scopes_.back()[s.targets[0]] = Value::of(capture(s.bodies[0]));
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
      if (macro_depth_ >= kMaxMacroDepth)
        fail(def->line, fmt::format("macro '{}': calls nested deeper than {} levels", def->name,
                                    kMaxMacroDepth));
      ++macro_depth_;
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
      Value result = Value::of(capture(def->bodies[0]));
      scopes_ = std::move(saved);
      --macro_depth_;
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
    const Nest nest(depth_, e.line);
    switch (e.kind) {
      case K::kLiteral: return Value::of_shared(e.literal);
      case K::kName: return lookup(e.name);
      case K::kList:
      case K::kTuple: {
        Json out = Json::array();
        size_t budget = kMaxTextBytes;  // for the whole list: its items are copied into it
        for (const ExprPtr& x : e.items) out.push_back(to_json(eval(*x), budget));
        return Value::of(std::move(out));
      }
      case K::kDict: {
        Json out = Json::object();
        size_t budget = kMaxTextBytes;
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
          std::string key = to_str(eval(*e.items[i]));
          charge(budget, key.size());
          out[std::move(key)] = to_json(eval(*e.items[i + 1]), budget);
        }
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
        if (is_int(v.json())) return Value::of(checked_sub(0, as_int(v.json()), e.line));
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
  std::vector<std::weak_ptr<Namespace>> namespaces_;  // made by namespace(), for ~Renderer
  std::string out_;
  size_t held_ = 0;         // bytes of outer output set aside by capture()
  int depth_ = 0;           // eval/exec frames now open
  int macro_depth_ = 0;     // macro calls now open
  int64_t iterations_ = 0;  // for-loop iterations so far
};

}  // namespace

Template::Template(const std::string& source) : body_(parse_template(source)) {}

std::string Template::render(const std::map<std::string, Value>& vars) const {
  return Renderer(vars).run(body_);
}

}  // namespace fitlm::jinja
