// Recursive-descent parser. Precedence, loosest first (as jinja2/parser.py):
//   a if c else b  <  or  <  and  <  not  <  comparisons, in  <  + -  <  ~  <  * / // %  <  **
//   <  unary - +  <  primary with postfix ([...], .attr, (...)), then filters `|` and tests `is`.
// Depth is bounded (limits.h) twice: the parser's own recursion (Nest), and the height of the
// tree it builds (add), which loops grow too, so evaluating and destroying any tree it returns
// recurses a bounded number of times.
#include "fitlm/text/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "fitlm/core/error.h"
#include "fitlm/text/jinja/lexer.h"
#include "fitlm/text/jinja/limits.h"

namespace fitlm::jinja {
namespace {

using K = Expr::Kind;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_all() {
    Body body = parse_body({});
    if (peek().type != TokenType::kEnd) {
      // parse_body only stops early at an end tag that nothing opened.
      throw_input_error("chat_template", "unexpected '{{% {} %}}' at line {}", peek().value,
                        peek().line);
    }
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  const Token& next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).type == TokenType::kOp && peek(ahead).value == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).type == TokenType::kName && peek(ahead).value == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    ++pos_;
    return true;
  }

  [[noreturn]] void fail_expected(const std::string& what) const {
    const Token& t = peek();
    const std::string found = t.type == TokenType::kName || t.type == TokenType::kOp
                                  ? "'" + t.value + "'"
                                  : token_type_name(t.type);
    throw_input_error("chat_template", "expected {}, found {} at line {}", what, found, t.line);
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail_expected(std::string("'") + op + "'");
  }
  void expect(TokenType t) {
    if (peek().type != t) fail_expected(token_type_name(t));
    ++pos_;
  }
  std::string expect_name() {
    if (peek().type != TokenType::kName) fail_expected("a name");
    return next().value;
  }
  [[noreturn]] void unsupported(const std::string& what, int line) const {
    throw_input_error("chat_template", "unsupported Jinja construct '{}' at line {}", what, line);
  }

  // Counts one level of parser recursion for as long as it lives.
  class Nest {
   public:
    Nest(int& depth, int limit, const char* what, int line) : depth_(depth) {
      if (++depth_ > limit) {
        --depth_;
        throw_input_error("chat_template", "{} nested deeper than {} levels at line {}", what,
                          limit, line);
      }
    }
    ~Nest() { --depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    int& depth_;
  };
  Nest nest_expression() { return Nest(expr_depth_, kMaxExprDepth, "expression", peek().line); }

  // Makes e at least one taller than child, within the limit.
  static void grow(Expr& e, const Expr& child) {
    e.height = std::max(e.height, child.height + 1);
    if (e.height > kMaxExprDepth)
      throw_input_error("chat_template", "expression nested deeper than {} levels at line {}",
                        kMaxExprDepth, e.line);
  }
  // Appends a child (null for an omitted slice bound or else branch).
  static void add(Expr& e, ExprPtr child) {
    if (child) grow(e, *child);
    e.items.push_back(std::move(child));
  }
  static void add_kwarg(Expr& e, std::string key, ExprPtr value) {
    grow(e, *value);
    e.kwargs.emplace_back(std::move(key), std::move(value));
  }

  static ExprPtr make(K kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---------------------------------------------------------------- statements

  // Parses until `{% NAME` with NAME in `stop`, leaving the position at NAME.
  Body parse_body(std::initializer_list<const char*> stop) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == TokenType::kEnd) {
        for (const char* name : stop)  // name the tag that would close the open block
          if (std::string_view(name).starts_with("end"))
            throw_input_error("chat_template", "missing '{{% {} %}}' at the end of the template",
                              name);
        return body;
      }
      if (t.type == TokenType::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = t.line;
        s->text = next().value;
        body.push_back(std::move(s));
      } else if (t.type == TokenType::kPrintBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kPrint;
        s->line = t.line;
        s->expr = parse_tuple();
        expect(TokenType::kPrintEnd);
        body.push_back(std::move(s));
      } else if (t.type == TokenType::kBlockBegin) {
        const Token& kw = peek(1);
        for (const char* name : stop)
          if (kw.type == TokenType::kName && kw.value == name) {
            next();
            return body;
          }
        next();
        body.push_back(parse_statement());
      } else {
        fail_expected("text or a tag");
      }
    }
  }

  void end_tag(const char* name) {
    if (!skip_name(name)) fail_expected(std::string("'") + name + "'");
    expect(TokenType::kBlockEnd);
  }

  StmtPtr parse_statement() {
    const Token kw = peek();
    if (kw.type != TokenType::kName) fail_expected("a statement name");
    const Nest nest(block_depth_, kMaxBlockDepth, "blocks", kw.line);
    next();
    auto s = std::make_unique<Stmt>();
    s->line = kw.line;
    const std::string& n = kw.value;
    if (n == "elif" || n == "else" || n.starts_with("end"))
      throw_input_error("chat_template", "unexpected '{{% {} %}}' at line {}", n, kw.line);
    if (n == "if") {
      s->kind = Stmt::Kind::kIf;
      s->conds.push_back(parse_expression());
      expect(TokenType::kBlockEnd);
      while (true) {
        s->bodies.push_back(parse_body({"elif", "else", "endif"}));
        if (skip_name("elif")) {
          s->conds.push_back(parse_expression());
          expect(TokenType::kBlockEnd);
        } else if (skip_name("else")) {
          expect(TokenType::kBlockEnd);
          s->bodies.push_back(parse_body({"endif"}));
          end_tag("endif");
          break;
        } else {
          end_tag("endif");
          break;
        }
      }
    } else if (n == "for") {
      s->kind = Stmt::Kind::kFor;
      do s->targets.push_back(expect_name());
      while (skip_op(","));
      if (!skip_name("in")) fail_expected("'in'");
      s->expr = parse_tuple(/*with_cond=*/false);
      if (skip_name("if")) s->cond = parse_expression();
      if (is_name("recursive")) unsupported("for ... recursive", peek().line);
      expect(TokenType::kBlockEnd);
      s->bodies.push_back(parse_body({"endfor", "else"}));
      if (skip_name("else")) {
        expect(TokenType::kBlockEnd);
        s->bodies.push_back(parse_body({"endfor"}));
      }
      end_tag("endfor");
    } else if (n == "set") {
      s->kind = Stmt::Kind::kSet;
      s->targets.push_back(expect_name());
      if (skip_op(".")) {
        s->attr = expect_name();
      } else {
        while (skip_op(",")) s->targets.push_back(expect_name());
      }
      if (skip_op("=")) {
        s->expr = parse_tuple();
        expect(TokenType::kBlockEnd);
      } else if (peek().type == TokenType::kBlockEnd && s->targets.size() == 1 && s->attr.empty()) {
        next();
        s->bodies.push_back(parse_body({"endset"}));
        end_tag("endset");
      } else if (is_op("|")) {
        unsupported("set ... | filter block", peek().line);
      } else {
        fail_expected("'='");
      }
    } else if (n == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->name = expect_name();
      expect_op("(");
      while (!skip_op(")")) {
        if (!s->targets.empty()) expect_op(",");
        if (skip_op(")")) break;  // trailing comma
        s->targets.push_back(expect_name());
        s->defaults.push_back(skip_op("=") ? parse_expression() : nullptr);
      }
      expect(TokenType::kBlockEnd);
      s->bodies.push_back(parse_body({"endmacro"}));
      end_tag("endmacro");
    } else if (n == "break" || n == "continue") {
      s->kind = n == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      expect(TokenType::kBlockEnd);
    } else if (n == "generation") {
      // transformers' AssistantTracker marks assistant text for return_assistant_tokens_mask;
      // for rendering it is transparent.
      s->kind = Stmt::Kind::kScope;
      expect(TokenType::kBlockEnd);
      s->bodies.push_back(parse_body({"endgeneration"}));
      end_tag("endgeneration");
    } else {
      unsupported(n, kw.line);
    }
    return s;
  }

  // ---------------------------------------------------------------- expressions

  // An expression, or a bare tuple `a, b` (for loop sources, set values, prints).
  ExprPtr parse_tuple(bool with_cond = true) {
    const int line = peek().line;
    ExprPtr first = with_cond ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = make(K::kTuple, line);
    add(*t, std::move(first));
    while (skip_op(",")) {
      if (peek().type == TokenType::kBlockEnd || peek().type == TokenType::kPrintEnd) break;
      add(*t, with_cond ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    const Nest nest = nest_expression();
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const int line = next().line;
      auto c = make(K::kCond, line);
      add(*c, parse_or());  // condition
      add(*c, std::move(e));
      add(*c, skip_name("else") ? parse_expression() : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, int line) {
    auto b = make(K::kBinary, line);
    b->name = op;
    add(*b, std::move(l));
    add(*b, std::move(r));
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const int line = next().line;
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const int line = next().line;
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const Nest nest = nest_expression();
      auto u = make(K::kUnary, next().line);
      u->name = "not";
      add(*u, parse_not());
      return u;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (peek().type == TokenType::kOp &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
        op = next().value;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(K::kCompare, line);
        add(*cmp, std::move(first));
      }
      cmp->ops.push_back(op);
      add(*cmp, parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t.value, std::move(e), parse_concat(), t.line);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const int line = next().line;
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t.value, std::move(e), parse_pow(), t.line);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const int line = next().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Nest nest = nest_expression();
      const Token& t = next();
      e = make(K::kUnary, t.line);
      e->name = t.value;
      add(*e, parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    if (t.type == TokenType::kName) {
      const std::string& v = next().value;
      if (v == "true" || v == "True" || v == "false" || v == "False" || v == "none" ||
          v == "None") {
        auto l = make(K::kLiteral, t.line);
        l->literal = std::make_shared<const Json>(
            v[0] == 'n' || v[0] == 'N' ? Json(nullptr) : Json(v[0] == 't' || v[0] == 'T'));
        return l;
      }
      auto n = make(K::kName, t.line);
      n->name = v;
      return n;
    }
    if (t.type == TokenType::kString) {
      auto l = make(K::kLiteral, t.line);
      std::string s;
      while (peek().type == TokenType::kString) s += next().value;  // "a" "b" concatenates
      l->literal = std::make_shared<const Json>(std::move(s));
      return l;
    }
    if (t.type == TokenType::kInt || t.type == TokenType::kFloat) {
      auto l = make(K::kLiteral, t.line);
      const std::string v = next().value;
      try {
        l->literal = std::make_shared<const Json>(t.type == TokenType::kInt ? Json(std::stoll(v))
                                                                            : Json(std::stod(v)));
      } catch (const std::exception&) {
        throw_input_error("chat_template", "number '{}' out of range at line {}", v, t.line);
      }
      return l;
    }
    if (skip_op("(")) {
      if (skip_op(")")) return make(K::kTuple, t.line);
      ExprPtr e = parse_expression();
      if (is_op(",")) {
        auto tup = make(K::kTuple, t.line);
        add(*tup, std::move(e));
        while (skip_op(",") && !is_op(")")) add(*tup, parse_expression());
        e = std::move(tup);
      }
      expect_op(")");
      return e;
    }
    if (skip_op("[")) {
      auto l = make(K::kList, t.line);
      while (!skip_op("]")) {
        if (!l->items.empty()) expect_op(",");
        if (skip_op("]")) break;
        add(*l, parse_expression());
      }
      return l;
    }
    if (skip_op("{")) {
      auto d = make(K::kDict, t.line);
      while (!skip_op("}")) {
        if (!d->items.empty()) expect_op(",");
        if (skip_op("}")) break;
        add(*d, parse_expression());
        expect_op(":");
        add(*d, parse_expression());
      }
      return d;
    }
    fail_expected("an expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const int line = peek().line;
      if (skip_op(".")) {
        if (peek().type == TokenType::kInt) {  // x.0 is x[0]
          auto i = make(K::kIndex, line);
          add(*i, std::move(e));
          add(*i, parse_primary());
          e = std::move(i);
          continue;
        }
        auto a = make(K::kAttr, line);
        a->name = expect_name();
        add(*a, std::move(e));
        e = std::move(a);
      } else if (skip_op("[")) {
        e = parse_subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    int n = 0;
    bool slice = false;
    while (true) {
      if (!is_op(":") && !is_op("]")) parts[n] = parse_expression();
      if (skip_op(":")) {
        slice = true;
        if (++n > 2) fail_expected("']'");
        continue;
      }
      expect_op("]");
      break;
    }
    auto e = make(slice ? K::kSlice : K::kIndex, line);
    add(*e, std::move(obj));
    if (!slice) {
      if (!parts[0]) fail_expected("an index");
      add(*e, std::move(parts[0]));
    } else {
      for (auto& p : parts) add(*e, std::move(p));
    }
    return e;
  }

  // (args, name=kwargs) appended to e's items after its first entry.
  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (skip_op(")")) break;
      if (is_op("*") || is_op("**")) unsupported("*args in a call", peek().line);
      if (peek().type == TokenType::kName && is_op("=", 1)) {
        std::string key = next().value;
        next();
        add_kwarg(e, std::move(key), parse_expression());
      } else {
        add(e, parse_expression());
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make(K::kCall, peek().line);
    add(*c, std::move(callee));
    parse_call_args(*c);
    return c;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        const int line = next().line;
        auto f = make(K::kFilter, line);
        f->name = expect_name();
        add(*f, std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        const int line = next().line;
        auto t = make(K::kTest, line);
        t->negated = skip_name("not");
        t->name = expect_name();
        add(*t, std::move(e));
        const Token& a = peek();
        const bool arg_start = a.type == TokenType::kName || a.type == TokenType::kString ||
                               a.type == TokenType::kInt || a.type == TokenType::kFloat ||
                               is_op("[") || is_op("{");
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (arg_start && !is_name("else") && !is_name("or") && !is_name("and") &&
                   !is_name("if")) {
          add(*t, parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int expr_depth_ = 0;   // parse_expression / parse_not / parse_unary frames now open
  int block_depth_ = 0;  // parse_statement frames now open
};

}  // namespace

Body parse_template(const std::string& source) {
  return Parser(tokenize(source)).parse_all();
}

}  // namespace fitlm::jinja
