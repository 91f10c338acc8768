// A parsed Jinja template and its renderer. Parsing happens once; render() is const and
// thread-safe (each call has its own scopes), so one template serves a whole dataset.
#pragma once

#include <map>
#include <string>

#include "fitlm/text/jinja/ast.h"
#include "fitlm/text/jinja/value.h"

namespace fitlm::jinja {

class Template {
 public:
  // Throws fitlm::Error (component "chat_template") for syntax errors, unsupported constructs
  // and nesting past limits.h.
  explicit Template(const std::string& source);

  // Renders with `vars` as the template's globals. Jinja's own globals (range, namespace, dict)
  // are added unless `vars` overrides them. Errors, and any limit of limits.h passed, throw
  // fitlm::Error (component "chat_template", exit code 2).
  std::string render(const std::map<std::string, Value>& vars) const;

 private:
  Body body_;
};

}  // namespace fitlm::jinja
