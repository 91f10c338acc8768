// Jinja's filters and tests, and the Python methods templates call on strings and dicts
// (`content.strip()`, `tool.items()`), with Python's results.
#pragma once

#include <string>

#include "fitlm/text/jinja/value.h"

namespace fitlm::jinja {

// `obj.name`: a dict key, or a bound method of a str/dict; Undefined when neither.
Value get_attr(const Value& obj, const std::string& name);
// `obj[key]`: list/str index (negative from the end), dict key; Undefined when missing.
Value get_item(const Value& obj, const Value& key);
// `obj[start:stop:step]` on a list or str; null Values are omitted bounds.
Value get_slice(const Value& obj, const Value* start, const Value* stop, const Value* step);

// `value | name(args)`. Throws "unsupported Jinja construct 'filter NAME' at line L" for
// filters this engine does not implement.
Value apply_filter(const std::string& name, const Value& value, const CallArgs& args, int line);
// `value is name(args)`.
bool apply_test(const std::string& name, const Value& value, const CallArgs& args, int line);

// Items a `for` loop visits: list elements, dict keys, str characters; Undefined is empty.
std::vector<Value> iterate(const Value& v, int line);

}  // namespace fitlm::jinja
