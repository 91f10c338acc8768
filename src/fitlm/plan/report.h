// The output of `fitlm plan --gpus`: the ranked table with the exclusions grouped by reason,
// and the same as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "fitlm/plan/search.h"

namespace fitlm::plan {

std::string format_search(const SearchRequest& request, const SearchResult& result, int top);
nlohmann::json search_json(const SearchRequest& request, const SearchResult& result, int top);
// The machine's physical memory (sysconf), 0 when unknown.
size_t machine_memory_bytes();

}  // namespace fitlm::plan
