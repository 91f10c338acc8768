#include "fitlm/cli/scored_rows.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"

namespace fitlm::cli {
namespace {

// Token ids (and, in labels, -100): integers that fit int32 (get<int32_t>() would wrap others).
std::vector<int32_t> int_array(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j[key].is_array()) throw_input_error("data", "{}: '{}' must be an array", where, key);
  std::vector<int32_t> out;
  out.reserve(j[key].size());
  for (const auto& v : j[key]) {
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      throw_input_error("data", "{}: '{}' must hold token ids, found {}", where, key,
                        clip(v.dump()));
    out.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return out;
}

}  // namespace

std::vector<ScoredRow> read_scored_rows(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw_input_error("data", "cannot open {}", path.string());
  std::vector<ScoredRow> rows;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", clip_path(path.string()), n);
    nlohmann::json j;
    if (auto error = json_input::try_parse(line, j))
      throw_input_error("data", "{}: invalid JSON: {}", where, *error);
    if (!j.is_object() || !j.contains("input_ids"))
      throw_input_error("data", "{}: expected an object with 'input_ids'", where);
    ScoredRow r;
    r.input_ids = int_array(j, "input_ids", where);
    if (r.input_ids.empty()) throw_input_error("data", "{}: 'input_ids' is empty", where);
    if (j.contains("labels") && !j["labels"].is_null()) {
      r.labels = int_array(j, "labels", where);
      if (r.labels.size() != r.input_ids.size())
        throw_input_error("data", "{}: 'labels' has {} entries, 'input_ids' {}", where,
                          r.labels.size(), r.input_ids.size());
    } else {
      r.labels = r.input_ids;
    }
    rows.push_back(std::move(r));
  }
  if (rows.empty()) throw_input_error("data", "{}: no rows", path.string());
  return rows;
}

std::vector<HostBatch> pack_rows(const std::vector<ScoredRow>& rows, int64_t max_tokens) {
  std::vector<HostBatch> batches;
  HostBatch cur;
  auto flush = [&] {
    if (!cur.input_ids.empty()) batches.push_back(std::move(cur));
    cur = HostBatch{};
  };
  for (const ScoredRow& r : rows) {
    const auto n = static_cast<int64_t>(r.input_ids.size());
    if (n > max_tokens)
      throw_input_error("data", "a row of {} tokens exceeds the batch size of {} tokens", n,
                        max_tokens);
    if (static_cast<int64_t>(cur.input_ids.size()) + n > max_tokens) flush();
    if (cur.cu_seqlens.empty()) cur.cu_seqlens.push_back(0);
    cur.input_ids.insert(cur.input_ids.end(), r.input_ids.begin(), r.input_ids.end());
    cur.labels.insert(cur.labels.end(), r.labels.begin(), r.labels.end());
    cur.cu_seqlens.push_back(static_cast<int32_t>(cur.input_ids.size()));
  }
  flush();
  return batches;
}

}  // namespace fitlm::cli
