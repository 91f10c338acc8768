// Limits of the chat-template engine. Templates are untrusted input (they come inside downloaded
// model repos), so whatever a template asks for, parsing and rendering it must end with its output
// or with an input error, never a stack overflow, a trap or an unbounded allocation. Each limit is
// far above what real chat templates reach (they nest a few levels and render kilobytes).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fitlm::jinja {

// Height of an expression's syntax tree: brackets, operators, filters, `.attr` and `if ... else`
// each add a level, and so does each link of a flat chain (`1+1+...` is a left spine). Parentheses
// add none but count as well, since they nest the parser.
inline constexpr int kMaxExprDepth = 256;
// Blocks inside blocks: {% if %}, {% for %}, {% macro %}, {% set %}...{% endset %}.
inline constexpr int kMaxBlockDepth = 256;
// Nested evaluation at render time (an expression or statement inside another, across macro
// calls): with the two limits above one template body needs at most 512; macros stack bodies.
inline constexpr int kMaxRenderDepth = 1024;
// Macro calls inside macro calls (recursion).
inline constexpr int kMaxMacroDepth = 100;
// The rendered text, and any single string, list or dict the template builds on the way (a list
// or dict costs 16 bytes per item plus the bytes of its strings).
inline constexpr size_t kMaxTextBytes = size_t{16} << 20;
// range(), list repetition, and the characters of a string a loop or filter iterates over.
inline constexpr size_t kMaxListItems = 1'000'000;
// Lists and dicts a template builds, and data it copies into them (printing recurses).
inline constexpr int kMaxValueDepth = 512;
// For-loop iterations in one render (all loops together, nested ones included).
inline constexpr int64_t kMaxLoopIterations = 1'000'000;

}  // namespace fitlm::jinja
