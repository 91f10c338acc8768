// Loading whole files: bad rows (fail vs skip), truncation and the summary that accounts for
// every row; the YAML data config.
#include <gtest/gtest.h>

#include "dataset_test_util.h"
#include "fitlm/core/error.h"
#include "fitlm/text/dataset.h"
#include "fitlm/text/dataset_config.h"

namespace fitlm {
namespace {

using testing::chatml;
using testing::FakeCodec;
using testing::fixture;

void expect_all_rows_accounted(const DatasetSummary& s) {
  EXPECT_EQ(s.rows_read,
            s.examples + s.skipped_total() + s.dropped_no_scored + s.dropped_truncated_away);
}

TEST(DatasetLoad, BadRowFailsWithFileLineAndReason) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kAlpaca;
  try {
    load_dataset(fixture("bad.jsonl"), opt, codec, chatml);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.jsonl:2: malformed JSON"), std::string::npos) << msg;
  }
}

TEST(DatasetLoad, SkipCountsBadRowsByReason) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kAlpaca;
  opt.on_bad_row = OnBadRow::kSkip;
  const Dataset ds = load_dataset(fixture("bad.jsonl"), opt, codec, chatml);
  EXPECT_EQ(ds.summary.rows_read, 5);
  EXPECT_EQ(ds.summary.examples, 2);
  EXPECT_EQ(ds.summary.skipped.at("malformed"), 1);
  EXPECT_EQ(ds.summary.skipped.at("missing_field"), 1);
  EXPECT_EQ(ds.summary.skipped.at("wrong_type"), 1);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.examples[0].line, 1);
  EXPECT_EQ(ds.examples[1].line, 5);
  expect_all_rows_accounted(ds.summary);
  EXPECT_NE(ds.summary.to_string().find("missing_field 1"), std::string::npos);
}

// A number out of range (1e999, a 400-digit integer) is a malformed row like any JSON error: it
// fails with FILE:LINE, or is skipped with on_bad_row=skip (it used to abort the whole load).
TEST(DatasetLoad, NumberOutOfRangeIsASkippableRowError) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kPretokenized;
  const std::string text =
      "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 1e999]}\n{\"input_ids\": [" +
      std::string(400, '9') + "]}\n{\"input_ids\": [4, 5]}\n";
  for (FileFormat format : {FileFormat::kJsonl, FileFormat::kJsonArray}) {
    std::string t = text;
    if (format == FileFormat::kJsonArray) {
      for (size_t p; (p = t.find("}\n{")) != std::string::npos;) t.replace(p, 3, "},\n{");
      t = "[" + t + "]";
    }
    const std::vector<RawRow> rows = read_rows_from_text("d.jsonl", t, format);
    opt.on_bad_row = OnBadRow::kFail;
    try {
      build_dataset(rows, "d.jsonl", opt, codec, chatml);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadInput);
      EXPECT_NE(std::string(e.what()).find("d.jsonl:2: malformed JSON: number out of range"),
                std::string::npos)
          << e.what();
    }
    opt.on_bad_row = OnBadRow::kSkip;
    const Dataset ds = build_dataset(rows, "d.jsonl", opt, codec, chatml);
    EXPECT_EQ(ds.summary.rows_read, 4);
    EXPECT_EQ(ds.summary.examples, 2);
    EXPECT_EQ(ds.summary.skipped.at("malformed"), 2);
  }
  // CSV cells holding ids are parsed as JSON too: a row error there as well.
  const std::vector<RawRow> csv =
      read_rows_from_text("d.csv", "input_ids\n\"[1, 1e999]\"\n\"[1, 2]\"\n", FileFormat::kCsv);
  opt.on_bad_row = OnBadRow::kSkip;
  const Dataset ds = build_dataset(csv, "d.csv", opt, codec, chatml);
  EXPECT_EQ(ds.summary.examples, 1);
  EXPECT_EQ(ds.summary.skipped.at("wrong_type"), 1);
}

TEST(DatasetLoad, MissingFieldMessageNamesLineAndField) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kAlpaca;
  const std::vector<RawRow> rows = {{7, nlohmann::json{{"instruction", "x"}}, ""}};
  try {
    build_dataset(rows, "data.jsonl", opt, codec, chatml);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.jsonl:7: missing field 'output'"), std::string::npos)
        << e.what();
  }
}

TEST(DatasetLoad, EachFormatLoadsFromItsFixture) {
  FakeCodec codec;
  struct Case {
    const char* file;
    DatasetType type;
    int64_t examples;
  };
  for (const Case& c : {Case{"alpaca.jsonl", DatasetType::kAlpaca, 3},
                        Case{"sharegpt.json", DatasetType::kShareGpt, 2},
                        Case{"messages.jsonl", DatasetType::kMessages, 2},
                        Case{"completion.csv", DatasetType::kCompletion, 3},
                        Case{"pretokenized.jsonl", DatasetType::kPretokenized, 2}}) {
    DatasetOptions opt;
    opt.type = c.type;
    const Dataset ds = load_dataset(fixture(c.file), opt, codec, chatml);
    EXPECT_EQ(ds.summary.examples, c.examples) << c.file;
    EXPECT_GT(ds.summary.scored_tokens, 0) << c.file;
    EXPECT_EQ(ds.summary.skipped_total(), 0) << c.file;
    expect_all_rows_accounted(ds.summary);
  }
}

TEST(DatasetLoad, ChatTypeWithoutTemplateIsAnInputError) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kMessages;
  EXPECT_THROW(load_dataset(fixture("messages.jsonl"), opt, codec, {}), Error);
}

TEST(DatasetLoad, TruncationIsCountedAndFullyTruncatedAnswersAreDropped) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kMessages;
  const std::string long_prompt(40, 'x');  // one letter run: one token
  std::vector<RawRow> rows;
  // Row 1: the answer starts after ~10 tokens and runs long: truncated, kept.
  rows.push_back({1, nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "Q"},
      {"role": "assistant", "content": "a b c d e f g h i j k l m n o p"}]})"),
                  ""});
  // Row 2: a prompt of many tokens pushes the answer out of the window: dropped, counted.
  rows.push_back({2, nlohmann::json::parse(R"({"messages": [{"role": "user", "content":
      "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"}, {"role": "assistant", "content": "A"}]})"),
                  ""});
  // Row 3: no assistant turn at all.
  rows.push_back(
      {3, nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "Q"}]})"), ""});
  opt.sequence_len = 16;
  const Dataset ds = build_dataset(rows, "mem", opt, codec, chatml);
  EXPECT_EQ(ds.summary.examples, 1);
  EXPECT_EQ(ds.summary.truncated, 1);
  EXPECT_EQ(ds.summary.dropped_truncated_away, 1);
  EXPECT_EQ(ds.summary.dropped_no_scored, 1);
  ASSERT_EQ(ds.examples.size(), 1u);
  EXPECT_EQ(ds.examples[0].input_ids.size(), 16u);
  EXPECT_EQ(ds.summary.tokens, 16);
  EXPECT_EQ(ds.summary.scored_tokens, count_scored(ds.examples[0].labels));
  expect_all_rows_accounted(ds.summary);
}

TEST(DatasetLoad, StratifyFieldIsKept) {
  FakeCodec codec;
  DatasetOptions opt;
  opt.type = DatasetType::kCompletion;
  opt.stratify_by = "label";
  const Dataset ds = load_dataset(fixture("completion.csv"), opt, codec, {});
  ASSERT_EQ(ds.examples.size(), 3u);
  EXPECT_EQ(ds.examples[0].group, "a");
  EXPECT_EQ(ds.examples[1].group, "b");
}

TEST(DataConfig, ReadsDataKeysAndResolvesPathsNextToTheConfig) {
  const DataConfig c = load_data_config(fixture("config.yaml"));
  EXPECT_EQ(c.base_model, "./model");
  ASSERT_EQ(c.datasets.size(), 2u);
  EXPECT_EQ(c.datasets[0].type, DatasetType::kAlpaca);
  EXPECT_TRUE(std::filesystem::exists(c.datasets[0].path)) << c.datasets[0].path;
  EXPECT_EQ(c.datasets[1].type, DatasetType::kMessages);
  EXPECT_EQ(c.sequence_len, 512);
  EXPECT_TRUE(c.sample_packing);
  EXPECT_FALSE(c.train_on_inputs);
  EXPECT_EQ(c.on_bad_row, OnBadRow::kSkip);
  EXPECT_EQ(c.seed, 7u);
}

TEST(DataConfig, BadKeysAreInputErrors) {
  EXPECT_THROW(parse_data_config("datasets: []\n", ".", "c.yaml"), Error);
  EXPECT_THROW(parse_data_config("datasets:\n  - path: a.jsonl\n", ".", "c.yaml"), Error);
  EXPECT_THROW(
      parse_data_config("sequence_len: many\ndatasets:\n  - {path: a, type: alpaca}\n", ".", "c"),
      Error);
  EXPECT_THROW(parse_data_config("datasets:\n  - {path: a, type: oasst}\n", ".", "c"), Error);
  // An unknown type names the config file, its line and the dataset entry.
  try {
    parse_data_config(
        "sequence_len: 8\ndatasets:\n  - {path: a, type: alpaca}\n  - {path: b, "
        "type: oasst}\n",
        ".", "c.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[config] c.yaml:4: 'datasets[1].type': unknown "
                                         "dataset type 'oasst': expected alpaca"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace fitlm
