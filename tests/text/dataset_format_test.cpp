// Row formats: the fields each type needs, and errors that name the field.
#include "fitlm/text/dataset_format.h"

#include <gtest/gtest.h>

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

using nlohmann::json;

RowError parse_error(const json& row, DatasetType type) {
  try {
    parse_sample(row, type);
  } catch (const RowError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << row.dump();
  return RowError(BadRowReason::kMalformed, "");
}

TEST(DatasetFormat, AlpacaBecomesAChatWithOptionalInput) {
  Sample s = parse_sample(json{{"instruction", "Do X."}, {"input", "data"}, {"output", "Done."}},
                          DatasetType::kAlpaca);
  EXPECT_EQ(s.kind, Sample::Kind::kAlpaca);
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[0].role, "user");
  EXPECT_EQ(s.messages[0].content, "Do X.\n\ndata");
  EXPECT_EQ(s.messages[1].role, "assistant");
  EXPECT_EQ(s.messages[1].content, "Done.");
  s = parse_sample(json{{"instruction", "Do X."}, {"input", nullptr}, {"output", "Done."}},
                   DatasetType::kAlpaca);
  EXPECT_EQ(s.messages[0].content, "Do X.");
}

TEST(DatasetFormat, ShareGptMapsRoles) {
  const json row = {{"conversations",
                     {{{"from", "system"}, {"value", "S"}},
                      {{"from", "human"}, {"value", "H"}},
                      {{"from", "gpt"}, {"value", "G"}}}}};
  const Sample s = parse_sample(row, DatasetType::kShareGpt);
  ASSERT_EQ(s.messages.size(), 3u);
  EXPECT_EQ(s.messages[0].role, "system");
  EXPECT_EQ(s.messages[1].role, "user");
  EXPECT_EQ(s.messages[2].role, "assistant");
  EXPECT_EQ(s.messages[2].content, "G");
}

TEST(DatasetFormat, MessagesCompletionPretokenized) {
  Sample s = parse_sample(json::parse(R"({"messages": [{"role": "user", "content": "u"},
                                       {"role": "assistant", "content": "a"}]})"),
                          DatasetType::kMessages);
  EXPECT_EQ(s.messages.size(), 2u);
  s = parse_sample(json{{"text", "hello"}}, DatasetType::kCompletion);
  EXPECT_EQ(s.kind, Sample::Kind::kText);
  EXPECT_EQ(s.text, "hello");
  s = parse_sample(json::parse(R"({"input_ids": [1, 2, 3], "labels": [-100, 2, 3]})"),
                   DatasetType::kPretokenized);
  EXPECT_EQ(s.input_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(s.labels, (std::vector<int32_t>{-100, 2, 3}));
  s = parse_sample(json{{"input_ids", "[4, 5]"}}, DatasetType::kPretokenized);  // a CSV cell
  EXPECT_EQ(s.input_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_TRUE(s.labels.empty());
}

TEST(DatasetFormat, ErrorsNameTheFieldAndReason) {
  RowError e = parse_error(json{{"instruction", "x"}}, DatasetType::kAlpaca);
  EXPECT_EQ(e.reason(), BadRowReason::kMissingField);
  EXPECT_NE(std::string(e.what()).find("'output'"), std::string::npos) << e.what();

  e = parse_error(json{{"instruction", 1}, {"output", "o"}}, DatasetType::kAlpaca);
  EXPECT_EQ(e.reason(), BadRowReason::kWrongType);
  EXPECT_NE(std::string(e.what()).find("expected a string, found number"), std::string::npos);

  e = parse_error(json::parse(R"({"conversations": [{"from": "human", "value": "x"},
                                   {"from": "bot", "value": "y"}]})"),
                  DatasetType::kShareGpt);
  EXPECT_EQ(e.reason(), BadRowReason::kInvalidValue);
  EXPECT_NE(std::string(e.what()).find("conversations[1].from"), std::string::npos) << e.what();

  e = parse_error(json::parse(R"({"messages": [{"role": "user"}]})"), DatasetType::kMessages);
  EXPECT_EQ(e.reason(), BadRowReason::kMissingField);
  EXPECT_NE(std::string(e.what()).find("messages[0].content"), std::string::npos) << e.what();

  e = parse_error(json::parse(R"({"input_ids": [1, 2], "labels": [1]})"),
                  DatasetType::kPretokenized);
  EXPECT_EQ(e.reason(), BadRowReason::kInvalidValue);
  e = parse_error(json::parse(R"({"input_ids": [1, 2.5]})"), DatasetType::kPretokenized);
  EXPECT_EQ(e.reason(), BadRowReason::kWrongType);
  e = parse_error(json::parse(R"([1, 2])"), DatasetType::kCompletion);
  EXPECT_EQ(e.reason(), BadRowReason::kWrongType);
  e = parse_error(json{{"messages", json::array()}}, DatasetType::kMessages);
  EXPECT_EQ(e.reason(), BadRowReason::kInvalidValue);
}

TEST(DatasetFormat, TypeNames) {
  for (auto t : {DatasetType::kAlpaca, DatasetType::kShareGpt, DatasetType::kMessages,
                 DatasetType::kCompletion, DatasetType::kPretokenized})
    EXPECT_EQ(parse_dataset_type(dataset_type_name(t), "test"), t);
  EXPECT_THROW(parse_dataset_type("oasst", "test"), Error);
}

}  // namespace
}  // namespace fitlm
