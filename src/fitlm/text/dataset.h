// Datasets for fine-tuning: read a file (dataset_reader.h), parse each row by its type
// (dataset_format.h), tokenize with answer-only labels (dataset_mask.h), truncate to
// sequence_len, and account for every row in a summary. Splits are in dataset_split.h,
// micro-batches and packing in pack.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "fitlm/text/dataset_format.h"
#include "fitlm/text/dataset_mask.h"
#include "fitlm/text/dataset_reader.h"

namespace fitlm {

enum class OnBadRow { kFail, kSkip };
OnBadRow parse_on_bad_row(std::string_view name);  // "fail" | "skip"

struct DatasetOptions {
  DatasetType type = DatasetType::kAlpaca;
  int64_t sequence_len = 2048;  // longer examples are truncated (kept: their first tokens)
  bool train_on_inputs = false;
  OnBadRow on_bad_row = OnBadRow::kFail;
  std::string file_format;  // "" = from the extension; "jsonl" | "json" | "csv"
  std::string stratify_by;  // a row field whose value each example keeps (Example::group)
};

struct Example {
  std::vector<int32_t> input_ids;  // [n] n <= sequence_len
  std::vector<int32_t> labels;     // [n], -100 = not scored
  int64_t line = 0;                // where the row starts in its file
  std::string group;               // value of DatasetOptions::stratify_by ("" when unset)
};

// Every row read is accounted for: rows_read == examples + sum(skipped) + dropped_no_scored
// + dropped_truncated_away.
struct DatasetSummary {
  int64_t rows_read = 0;
  int64_t examples = 0;                    // kept
  std::map<std::string, int64_t> skipped;  // bad rows by reason (on_bad_row=skip)
  int64_t truncated = 0;                   // kept examples cut to sequence_len
  int64_t dropped_no_scored = 0;           // no scored token at all (e.g. no assistant turn)
  int64_t dropped_truncated_away = 0;      // every scored token was beyond sequence_len
  int64_t tokens = 0;                      // in kept examples, after truncation
  int64_t scored_tokens = 0;               // labels != -100 at positions >= 1 (loss targets)
  int64_t inexact_boundaries = 0;          // answer boundaries that fell inside a token
  int64_t skipped_total() const;
  void add(const DatasetSummary& other);  // for several files
  std::string to_string() const;          // a few lines for logs and `fitlm data inspect`
};

struct Dataset {
  std::vector<Example> examples;
  DatasetSummary summary;
};

// Loads one file. `render` is the model's chat template (empty when it has none: sharegpt and
// messages then fail, alpaca uses the Alpaca prompt text). Bad rows: with on_bad_row=fail the
// first one throws an input error "FILE:LINE: reason" (exit code 2); with skip they are counted
// and the first few logged as warnings.
Dataset load_dataset(const std::filesystem::path& path, const DatasetOptions& options,
                     const TextCodec& codec, const ChatRenderFn& render);
// As above from rows already read (tests, other sources). `source` names them in messages.
Dataset build_dataset(const std::vector<RawRow>& rows, const std::string& source,
                      const DatasetOptions& options, const TextCodec& codec,
                      const ChatRenderFn& render);

// Number of loss targets of one example: labels[t] != -100 for t >= 1 (position 0 has no
// previous token to predict it from).
int64_t count_scored(const std::vector<int32_t>& labels);

}  // namespace fitlm
