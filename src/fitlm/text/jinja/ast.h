// Syntax tree of a parsed template. One node struct per family (expressions, statements) with a
// kind tag keeps the evaluator a pair of switches that a reader can follow top to bottom.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fitlm/text/jinja/value.h"

namespace fitlm::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // items
    kTuple,    // items (evaluated as a list)
    kDict,     // items as key, value pairs: items[2i], items[2i+1]
    kAttr,     // items[0].name
    kIndex,    // items[0][items[1]]
    kSlice,    // items[0][items[1]:items[2]:items[3]] (null entries are omitted bounds)
    kCall,     // items[0](items[1..], kwargs)
    kFilter,   // items[0] | name(items[1..], kwargs)
    kTest,     // items[0] is [not] name(items[1..])
    kUnary,    // op items[0]: "not", "-", "+"
    kBinary,   // items[0] op items[1]: arithmetic, "~", "and", "or"
    kCompare,  // items[0] ops[0] items[1] ops[1] items[2] ... (chained, as Python)
    kCond,     // items[1] if items[0] else items[2] (items[2] may be null)
  };
  Kind kind;
  int line = 0;
  std::shared_ptr<const Json> literal;  // shared so evaluating a literal does not copy it
  std::string name;  // kName, kAttr, kFilter, kTest; the operator for kUnary/kBinary
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "not in"
  bool negated = false;          // kTest: `is not`
  int height = 1;                // 1 + the tallest child; the parser keeps it <= kMaxExprDepth
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,   // text
    kPrint,  // {{ expr }}
    kIf,     // conds[i] -> bodies[i]; bodies.back() is the else body when it has one more
    kFor,    // for targets in expr [if cond] : bodies[0] [else bodies[1]]
    kSet,    // set targets (or targets[0].attr) = expr; or {% set x %}bodies[0]{% endset %}
    kMacro,  // macro name(params = defaults) : bodies[0]
    kBreak,
    kContinue,
    kScope,  // a body rendered in place: {% generation %}
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;  // kFor: the loop filter
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  std::vector<std::string> targets;  // kFor / kSet names; kMacro parameter names
  std::string attr;                  // kSet: `set ns.attr = ...`
  std::string name;                  // kMacro
  std::vector<ExprPtr> defaults;     // kMacro: one per parameter (null when none)
};

}  // namespace fitlm::jinja
