// Readers: JSON Lines, JSON arrays and RFC 4180 CSV, with the line each row starts on.
#include "fitlm/text/dataset_reader.h"

#include <gtest/gtest.h>

#include "dataset_test_util.h"
#include "fitlm/core/error.h"
#include "fitlm/text/csv_reader.h"

namespace fitlm {
namespace {

using testing::fixture;

TEST(DatasetReader, JsonlRowsWithLinesSkippingBlankLines) {
  const auto rows = read_rows(fixture("alpaca.jsonl"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].line, 4);  // line 3 is blank
  EXPECT_EQ(rows[2].value["output"], "Blue.");
  for (const auto& r : rows) EXPECT_TRUE(r.error.empty());
}

TEST(DatasetReader, JsonlMalformedLineIsARowWithError) {
  const auto rows = read_rows(fixture("bad.jsonl"));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_TRUE(rows[0].error.empty());
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_NE(rows[1].error.find("malformed JSON"), std::string::npos) << rows[1].error;
  EXPECT_TRUE(rows[2].error.empty());  // well-formed JSON; the format check rejects it later
}

TEST(DatasetReader, JsonArrayElementsKnowTheirLines) {
  const auto rows = read_rows(fixture("sharegpt.json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].line, 2);
  EXPECT_EQ(rows[1].line, 9);
  EXPECT_EQ(rows[1].value["conversations"][1]["value"], "Four.");
}

TEST(DatasetReader, JsonArrayWithStringsHoldingBracketsAndBadElement) {
  const std::string text = "[{\"a\": \"x],[{\\\"\"},\n {\"a\": tru},\n {\"a\": [1, {\"b\": 2}]}]";
  const auto rows = read_rows_from_text("t.json", text, FileFormat::kJsonArray);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].value["a"], "x],[{\"");
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_FALSE(rows[1].error.empty());
  EXPECT_EQ(rows[2].line, 3);
  EXPECT_EQ(rows[2].value["a"][1]["b"], 2);
}

TEST(DatasetReader, JsonArrayUnclosedIsAnInputErrorWithLine) {
  try {
    read_rows_from_text("t.json", "[\n{\"a\": 1},\n{\"a\": [2}\n", FileFormat::kJsonArray);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("t.json:3"), std::string::npos) << e.what();
  }
}

TEST(DatasetReader, DetectsFormatFromExtensionAndContent) {
  EXPECT_EQ(detect_file_format("a.jsonl", "{}"), FileFormat::kJsonl);
  EXPECT_EQ(detect_file_format("a.json", "  [ {} ]"), FileFormat::kJsonArray);
  EXPECT_EQ(detect_file_format("a.json", "{}\n{}"), FileFormat::kJsonl);
  EXPECT_EQ(detect_file_format("a.CSV", ""), FileFormat::kCsv);
  EXPECT_THROW(detect_file_format("a.parquet", ""), Error);
}

TEST(CsvReader, Rfc4180QuotesEscapesAndLineBreaks) {
  const auto rows = read_rows(fixture("completion.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].value["text"], "Once upon a time, there was a \"quoted\" cat.");
  EXPECT_EQ(rows[0].line, 2);
  EXPECT_EQ(rows[1].value["text"], "A line\nthat spans two lines.");
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[2].line, 5);  // the quoted line break moved the next record down
  EXPECT_EQ(rows[2].value["text"], "Plain text without quotes");
  EXPECT_EQ(rows[2].value["label"], "a");
}

TEST(CsvReader, EmptyFieldsTrailingSeparatorAndNoFinalNewline) {
  const auto recs = parse_csv("a,b,c\n,\"\",x\n1,2,");
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[1].fields, (std::vector<std::string>{"", "", "x"}));
  EXPECT_EQ(recs[2].fields, (std::vector<std::string>{"1", "2", ""}));
}

TEST(CsvReader, BrokenRecordsAreRowErrors) {
  const auto rows = read_rows_from_text("t.csv", "a,b\n1,2,3\n\"open,4\n", FileFormat::kCsv);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_NE(rows[0].error.find("expected 2 fields"), std::string::npos) << rows[0].error;
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_NE(rows[1].error.find("unterminated"), std::string::npos) << rows[1].error;
}

}  // namespace
}  // namespace fitlm
