// Untrusted JSON and user paths: every failure is an input error that names the source.
#include "fitlm/core/json_input.h"

#include <gtest/gtest.h>

#include <string>

#include "fitlm/core/error.h"
#include "fitlm/core/paths.h"

namespace fitlm {
namespace {

std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an fitlm::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(JsonInput, NumberOutOfRangeIsAnInputErrorWithItsPosition) {
  const std::string huge(400, '9');
  for (const std::string& number : {std::string("1e999"), huge, "-" + huge}) {
    const std::string text = "{\n  \"a\": 1,\n  \"b\": " + number + "\n}";
    const std::string msg =
        input_error_of([&] { json_input::parse(text, "config", "dir/config.json"); });
    EXPECT_NE(msg.find("[config] dir/config.json: not valid JSON: number out of range at line "
                       "3, column 8"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find("json.exception"), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 300u) << "the 400-digit number is clipped";
  }
}

TEST(JsonInput, TryParseReportsTheReason) {
  json_input::Json j;
  auto e = json_input::try_parse("[1, 1e999]", j);
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("number out of range at line 1, column 5: '1e999'"), std::string::npos) << *e;
  EXPECT_TRUE(j.is_null());
  e = json_input::try_parse("{oops", j);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->rfind("parse error at line 1, column 2", 0), 0u) << *e;
  EXPECT_FALSE(json_input::try_parse("[1, 2]", j));
  EXPECT_EQ(j.size(), 2u);
  json_input::OrderedJson o;
  EXPECT_TRUE(json_input::try_parse("{\"x\": 1E400}", o));
}

TEST(JsonInput, LongTokensInSyntaxErrorsAreClipped) {
  const std::string text = "[\"" + std::string(100000, 'x') + "\x01\"]";
  const std::string msg = input_error_of([&] { json_input::parse(text, "dataset", "a.json"); });
  EXPECT_LT(msg.size(), 400u) << msg.substr(0, 400);
}

TEST(JsonInput, StructureErrorsOfFieldReadersNameTheFile) {
  const json_input::Json j = json_input::parse("{\"n\": \"x\"}", "adapter", "a/cfg.json");
  const std::string msg = input_error_of([&] {
    json_input::read_fields("adapter", "a/cfg.json", [&] { return j.at("n").get<int>(); });
  });
  EXPECT_NE(msg.find("[adapter] a/cfg.json: unexpected JSON structure: type must be number"),
            std::string::npos)
      << msg;
}

TEST(Clip, LongValuesAreCutInTheMiddle) {
  EXPECT_EQ(clip("short"), "short");
  const std::string v = std::string(300000, 'a') + "TAIL";
  const std::string c = clip(v);
  EXPECT_LE(c.size(), 80u);
  EXPECT_NE(c.find("..."), std::string::npos);
  EXPECT_EQ(c.substr(c.size() - 4), "TAIL");
  // Multi-byte characters are not split.
  std::string accents;

  for (int i = 0; i < 100; ++i) accents += "\xC3\xA9";
  const std::string a = clip(accents);
  for (size_t i = 0; i + 3 < a.size(); ++i)
    if (a.compare(i, 3, "...") == 0) {
      EXPECT_EQ(i % 2, 0u) << "cut inside a character";
      EXPECT_EQ((a.size() - i - 3) % 2, 0u) << "cut inside a character";
    }
}

TEST(Paths, NameTooLongIsAnInputErrorNamingThePath) {
  const std::string name = "/tmp/" + std::string(300, 'n') + "/config.json";
  for (auto query : {&paths::exists, &paths::is_directory, &paths::is_regular_file}) {
    const std::string msg = input_error_of([&] { query(name, "config"); });
    EXPECT_NE(msg.find("[config] /tmp/nnn"), std::string::npos) << msg;
    EXPECT_NE(msg.find("...nnn"), std::string::npos) << msg;
    EXPECT_NE(msg.find("File name too long"), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 300u);
  }
  EXPECT_FALSE(paths::exists("/tmp/surely/not/here", "config"));
  EXPECT_FALSE(paths::is_directory("/etc/passwd/x", "config"));  // ENOTDIR: just not there
  EXPECT_TRUE(paths::is_directory("/tmp", "config"));
}

}  // namespace
}  // namespace fitlm
