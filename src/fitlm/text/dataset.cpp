#include "fitlm/text/dataset.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/text/batch.h"

namespace fitlm {

OnBadRow parse_on_bad_row(std::string_view name) {
  if (name == "fail") return OnBadRow::kFail;
  if (name == "skip") return OnBadRow::kSkip;
  throw_input_error("dataset", "on_bad_row must be 'fail' or 'skip', found '{}'", name);
}

int64_t count_scored(const std::vector<int32_t>& labels) {
  int64_t n = 0;
  for (size_t t = 1; t < labels.size(); ++t) n += labels[t] != kIgnoreLabel;
  return n;
}

int64_t DatasetSummary::skipped_total() const {
  int64_t n = 0;
  for (const auto& [reason, count] : skipped) n += count;
  return n;
}

void DatasetSummary::add(const DatasetSummary& o) {
  rows_read += o.rows_read;
  examples += o.examples;
  for (const auto& [reason, count] : o.skipped) skipped[reason] += count;
  truncated += o.truncated;
  dropped_no_scored += o.dropped_no_scored;
  dropped_truncated_away += o.dropped_truncated_away;
  tokens += o.tokens;
  scored_tokens += o.scored_tokens;
  inexact_boundaries += o.inexact_boundaries;
}

std::string DatasetSummary::to_string() const {
  std::string s =
      fmt::format("rows read {}, examples {}, skipped {}", rows_read, examples, skipped_total());
  if (!skipped.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [reason, count] : skipped) {
      s += fmt::format("{}{} {}", first ? "" : ", ", reason, count);
      first = false;
    }
    s += ")";
  }
  s += fmt::format(
      "\ntruncated {}, dropped with no scored token {}, dropped because truncation "
      "removed every scored token {}",
      truncated, dropped_no_scored, dropped_truncated_away);
  s += fmt::format("\ntokens {}, scored tokens {} ({:.1f}%)", tokens, scored_tokens,
                   tokens ? 100.0 * static_cast<double>(scored_tokens) / tokens : 0.0);
  if (inexact_boundaries)
    s += fmt::format("\nanswer boundaries inside a token: {} (the straddling token is scored)",
                     inexact_boundaries);
  return s;
}

namespace {

constexpr int kWarnedBadRows = 5;  // skipped rows logged one by one before going quiet

std::string group_value(const nlohmann::json& row, const std::string& field) {
  if (field.empty() || !row.is_object()) return {};
  auto it = row.find(field);
  if (it == row.end())
    throw RowError(BadRowReason::kMissingField,
                   fmt::format("missing field '{}' (stratify_by)", field));
  return it->is_string() ? it->get<std::string>() : it->dump();
}

}  // namespace

Dataset build_dataset(const std::vector<RawRow>& rows, const std::string& source,
                      const DatasetOptions& options, const TextCodec& codec,
                      const ChatRenderFn& render) {
  if (options.sequence_len < 2)
    throw_input_error("dataset", "sequence_len must be at least 2, found {}", options.sequence_len);
  const bool needs_template =
      options.type == DatasetType::kShareGpt || options.type == DatasetType::kMessages;
  if (needs_template && !render)
    throw_input_error("dataset",
                      "{}: type {} renders conversations with the model's chat template, but the "
                      "tokenizer has none (no chat_template in tokenizer_config.json)",
                      source, dataset_type_name(options.type));
  MaskOptions mask;
  mask.train_on_inputs = options.train_on_inputs;

  Dataset ds;
  DatasetSummary& sum = ds.summary;
  auto bad_row = [&](int64_t line, BadRowReason reason, const std::string& message) {
    if (options.on_bad_row == OnBadRow::kFail)
      throw_input_error("dataset", "{}:{}: {} (on_bad_row=skip skips such rows)", source, line,
                        message);
    const int64_t n = sum.skipped_total();
    if (n < kWarnedBadRows)
      log::warn("[dataset] {}:{}: skipped: {}", source, line, message);
    else if (n == kWarnedBadRows)
      log::warn("[dataset] {}: more bad rows skipped; the summary counts them", source);
    ++sum.skipped[std::string(bad_row_reason_name(reason))];
  };

  for (const RawRow& row : rows) {
    ++sum.rows_read;
    if (!row.error.empty()) {
      bad_row(row.line, BadRowReason::kMalformed, row.error);
      continue;
    }
    Example ex;
    ex.line = row.line;
    MaskedTokens tokens;
    try {
      const Sample sample = parse_sample(row.value, options.type);
      ex.group = group_value(row.value, options.stratify_by);
      tokens = tokenize_sample(sample, codec, render, mask);
    } catch (const RowError& e) {
      bad_row(row.line, e.reason(), e.what());
      continue;
    }
    sum.inexact_boundaries += tokens.inexact_boundaries;
    const bool had_scored = count_scored(tokens.labels) > 0;
    const bool truncated = static_cast<int64_t>(tokens.input_ids.size()) > options.sequence_len;
    if (truncated) {
      tokens.input_ids.resize(static_cast<size_t>(options.sequence_len));
      tokens.labels.resize(static_cast<size_t>(options.sequence_len));
    }
    const int64_t scored = count_scored(tokens.labels);
    if (scored == 0) {
      // An example with nothing to learn would only cost compute; it is dropped, and counted.
      ++(had_scored ? sum.dropped_truncated_away : sum.dropped_no_scored);
      continue;
    }
    sum.truncated += truncated;
    sum.tokens += static_cast<int64_t>(tokens.input_ids.size());
    sum.scored_tokens += scored;
    ex.input_ids = std::move(tokens.input_ids);
    ex.labels = std::move(tokens.labels);
    ds.examples.push_back(std::move(ex));
  }
  sum.examples = static_cast<int64_t>(ds.examples.size());
  return ds;
}

Dataset load_dataset(const std::filesystem::path& path, const DatasetOptions& options,
                     const TextCodec& codec, const ChatRenderFn& render) {
  std::vector<RawRow> rows;
  if (options.file_format.empty()) {
    rows = read_rows(path);
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_input_error("dataset", "{}: cannot open the dataset file", path.string());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    rows = read_rows_from_text(path, text, parse_file_format(options.file_format));
  }
  return build_dataset(rows, path.string(), options, codec, render);
}

}  // namespace fitlm
