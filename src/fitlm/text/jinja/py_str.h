// Python str operations that templates reach through methods and filters: case mapping,
// replace, split, startswith/endswith. Case mapping is ASCII-only (templates apply it to role
// names and keywords, not to user text).
#pragma once

#include <cstdint>
#include <string>

#include "fitlm/text/jinja/value.h"

namespace fitlm::jinja {

// Applies f (toupper/tolower) to ASCII bytes, leaving UTF-8 sequences as they are.
std::string ascii_map(std::string s, int (*f)(int));
std::string capitalize(const std::string& s);  // str.capitalize()
std::string title(const std::string& s);       // str.title()
// str.replace(old, new, count); count < 0 replaces all.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count);
// str.split(sep=None, maxsplit=-1); sep null, undefined or none splits on whitespace runs.
Json split(const std::string& s, const Value* sep, int64_t maxsplit);
// str.startswith / str.endswith; affix may be a tuple (list) of alternatives.
bool affix_match(const std::string& s, const Value& affix, bool prefix);

}  // namespace fitlm::jinja
