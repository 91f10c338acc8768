// Jinja parser: tokens to a syntax tree, with Jinja's operator precedence (jinja2/parser.py).
// Statements it does not know (include, extends, call, filter blocks, ...) are rejected with
// "unsupported Jinja construct 'NAME' at line L" rather than being misread.
#pragma once

#include <string>

#include "fitlm/text/jinja/ast.h"

namespace fitlm::jinja {

Body parse_template(const std::string& source);

}  // namespace fitlm::jinja
