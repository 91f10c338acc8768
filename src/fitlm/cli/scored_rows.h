// Rows of {"input_ids": [...], "labels": [...]} (labels optional, −100 = ignored) from a JSONL
// file, as `fitlm eval` and `fitlm dump` read them.
#pragma once

#include <filesystem>
#include <vector>

#include "fitlm/model/transformer.h"

namespace fitlm::cli {

struct ScoredRow {
  std::vector<int32_t> input_ids, labels;
};

std::vector<ScoredRow> read_scored_rows(const std::filesystem::path& path);
// Packs rows into batches of at most max_tokens (each row its own segment).
std::vector<HostBatch> pack_rows(const std::vector<ScoredRow>& rows, int64_t max_tokens);

}  // namespace fitlm::cli
