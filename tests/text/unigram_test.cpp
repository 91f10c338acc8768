// Unit tests of the Unigram model, the Precompiled charsmap and SentencePiece .model reading;
// the corpus-scale parity with SentencePiece and transformers.js is unigram_parity_test.py.
#include "fitlm/text/unigram.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "fitlm/text/pre_tokenizer_regex.h"
#include "fitlm/text/precompiled.h"
#include "fitlm/text/sentencepiece_model.h"
#include "fitlm/text/tokenizer.h"
#include "test_temp_dir.h"

namespace fitlm {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kMeta = "\xE2\x96\x81";  // U+2581
const fs::path kFixtures = fs::path(FITLM_TEST_DATA_DIR) / "text" / "fixtures" / "unigram";

UnigramModel model(const Json& vocab, Json unk_id = 0, bool byte_fallback = false) {
  static Vocab v;
  v = Vocab{};
  return UnigramModel(Json{{"type", "Unigram"},
                           {"unk_id", unk_id},
                           {"vocab", vocab},
                           {"byte_fallback", byte_fallback}},
                      tokenizer_json::Loc{"t.json", "model"}, v);
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the fitlm::Error `f` throws ("" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Each test's own directory (test_temp_dir.h).
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("unigram") {}
};

TEST(Unigram, ViterbiTiesKeepTheEarlierStart) {
  // a|b|c, ab|c and a|bc all score -3 (exactly, in binary): tokenizers keeps, for each end, the
  // piece found first, i.e. starting earliest: best[2] = "ab", best[3] = "bc" (from 1) over "c".
  const auto m = model(Json::array({Json::array({"<unk>", 0.0}), Json::array({"a", -1.0}),
                                    Json::array({"b", -1.0}), Json::array({"c", -1.0}),
                                    Json::array({"ab", -2.0}), Json::array({"bc", -2.0})}));
  EXPECT_EQ(m.segment("abc"), (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(m.segment("ab"), (std::vector<std::string>{"ab"}));
  // A strictly better path still wins.
  const auto m2 = model(Json::array({Json::array({"<unk>", 0.0}), Json::array({"a", -1.0}),
                                     Json::array({"b", -1.0}), Json::array({"c", -1.0}),
                                     Json::array({"ab", -1.5}), Json::array({"bc", -2.0})}));
  EXPECT_EQ(m2.segment("abc"), (std::vector<std::string>{"ab", "c"}));
}

TEST(Unigram, UnknownEdgesScoreMinMinusTenAndFuse) {
  const auto m = model(Json::array(
      {Json::array({"<unk>", 0.0}), Json::array({"a", -1.0}), Json::array({"xy", -5.0})}));
  EXPECT_DOUBLE_EQ(m.unk_score(), -15.0);
  // "xy" is a piece (-5) although neither x nor y is: it beats two unknowns (-30).
  EXPECT_EQ(m.segment("xy"), (std::vector<std::string>{"xy"}));
  // Runs of unknown characters become one piece, one unk id.
  EXPECT_EQ(m.segment("qzaé€"), (std::vector<std::string>{"qz", "a", "é€"}));
  UnigramScratch s;
  std::vector<int32_t> ids;
  m.encode_word("qzaé€", s, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1, 0}));
}

TEST(Unigram, ByteFallbackSpellsUnknownPiecesInBytes) {
  Json vocab = Json::array({Json::array({"<unk>", 0.0}), Json::array({"a", -1.0})});
  for (const char* b : {"<0xE2>", "<0x82>", "<0xAC>"}) vocab.push_back(Json::array({b, -2.0}));
  UnigramScratch s;
  std::vector<int32_t> ids;
  model(vocab, 0, true).encode_word("a\xE2\x82\xAC", s, ids);  // a€
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 3, 4}));
  // Without every byte piece, or without byte_fallback, the run is unk.
  ids.clear();
  model(vocab, 0, true).encode_word("\xC3\xA9", s, ids);  // é: no <0xC3>
  EXPECT_EQ(ids, (std::vector<int32_t>{0}));
  ids.clear();
  model(vocab, 0, false).encode_word("a\xE2\x82\xAC", s, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 0}));
}

TEST(Unigram, MissingUnkIdFailsOnUnknownCharacters) {
  const auto m = model(Json::array({Json::array({"a", -1.0})}), nullptr);
  EXPECT_EQ(m.segment("aa"), (std::vector<std::string>{"a", "a"}));
  EXPECT_NE(error_of([&] { m.segment("ab"); }).find("unk_id"), std::string::npos);
}

TEST(Unigram, MalformedTokenizerJsonNamesTheField) {
  TempDir dir;
  auto load_error = [&](const Json& model_json, const Json& normalizer = nullptr) {
    dir.write("tokenizer.json", Json{{"model", model_json}, {"normalizer", normalizer}}.dump());
    return error_of([&] { Tokenizer::from_dir(dir.path()); });
  };
  const Json good = Json::array({Json::array({"<unk>", 0.0}), Json::array({"a", -1.0})});
  std::string e = load_error({{"type", "Unigram"},
                              {"unk_id", 0},
                              {"vocab", Json::array({Json::array({"a", -1.0}), "b"})}});
  EXPECT_NE(e.find("model.vocab[1]"), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer.json"), std::string::npos) << e;
  e = load_error({{"type", "Unigram"}, {"unk_id", 5}, {"vocab", good}});
  EXPECT_NE(e.find("model.unk_id"), std::string::npos) << e;
  e = load_error({{"type", "Unigram"}, {"unk_id", 0}, {"vocab", Json::array()}});
  EXPECT_NE(e.find("empty vocabulary"), std::string::npos) << e;
  const Json unigram = {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", good}};
  e = load_error(unigram, {{"type", "Precompiled"}, {"precompiled_charsmap", "AAA*"}});
  EXPECT_NE(e.find("normalizer.precompiled_charsmap"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid base64"), std::string::npos) << e;
  // Valid base64 of a blob whose trie size points past its end.
  e = load_error(unigram,
                 {{"type", "Precompiled"},
                  {"precompiled_charsmap", base64_encode(std::string("\x40\0\0\0abcd", 8))}});
  EXPECT_NE(e.find("past the end"), std::string::npos) << e;
  e = load_error(unigram, nullptr);
  EXPECT_EQ(e, "");
}

TEST(Precompiled, Base64RoundTripsAndRejectsBadInput) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", std::string("\0\xff\x80 x", 5)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("ab"), "YWI=");
  for (const char* bad : {"YWI", "YW=I", "Y===", "YWI*", "YWI=YWI="})
    EXPECT_FALSE(base64_decode(bad)) << bad;
}

// The charsmap of the t5 fixture (a subset of nmt_nfkc).
PrecompiledCharsmap fixture_charsmap() {
  const auto m = parse_sentencepiece_model(read(kFixtures / "t5" / "spiece.model"), "spiece.model");
  std::string error;
  auto cm = PrecompiledCharsmap::parse(m.precompiled_charsmap, error);
  EXPECT_TRUE(cm) << error;
  return std::move(*cm);
}

TEST(Precompiled, AppliesRulesPerGraphemeAsTokenizersDoes) {
  const PrecompiledCharsmap cm = fixture_charsmap();
  RegexScratch scratch;
  EXPECT_EQ(cm.normalize("\xEF\xBC\xA1\xEF\xBC\xA2", scratch), "AB");  // fullwidth ＡＢ
  EXPECT_EQ(cm.normalize("e\xCC\x81", scratch), "\xC3\xA9");           // e + U+0301 -> é
  // ﬁ + U+0301 is one cluster under 6 bytes: it becomes the replacement of its shortest rule
  // ("ﬁ" -> "fi") and the accent is dropped; SentencePiece's longest rule keeps it.
  EXPECT_EQ(cm.normalize("\xEF\xAC\x81\xCC\x81", scratch), "fi");
  const auto longest = cm.longest_prefix("\xEF\xAC\x81\xCC\x81");
  ASSERT_TRUE(longest);
  EXPECT_EQ(longest->first, 3u);
  // CR LF is one cluster: the rule for CR alone replaces both.
  EXPECT_EQ(cm.normalize("a\r\nb", scratch), "a b");
  // Conjoining jamo L V (6 bytes) are looked up one by one: not composed, as in tokenizers
  // (SentencePiece's rule for the pair composes them).
  const std::string lv = "\xE1\x84\x80\xE1\x85\xA1";  // U+1100 U+1161
  EXPECT_EQ(cm.normalize(lv, scratch), lv);
  ASSERT_TRUE(cm.longest_prefix(lv));
  EXPECT_EQ(cm.longest_prefix(lv)->second, "\xEA\xB0\x80");  // 가
}

TEST(SentencePieceModel, ModelFileGivesTheTokenizerJsonIds) {
  TempDir dir;
  fs::copy_file(kFixtures / "t5" / "spiece.model", dir.path() / "spiece.model");
  fs::copy_file(kFixtures / "t5" / "tokenizer_config.json", dir.path() / "tokenizer_config.json");
  const Tokenizer from_model = Tokenizer::from_dir(dir.path());
  const Tokenizer from_json = Tokenizer::from_dir(kFixtures / "t5");
  EXPECT_EQ(from_model.vocab_size(), 2600u);
  for (const char* text : {"Hello world", "  안녕하세요,  만나서 반갑습니다. ",
                           "東京は日本の首都です。", "ＡＢＣ café ｶﾀｶﾅ 😀 <extra_id_3></s>", ""}) {
    EXPECT_EQ(from_model.encode(text), from_json.encode(text)) << text;
    EXPECT_EQ(from_model.encode(text).back(), 1);  // </s> appended
  }
  EXPECT_EQ(from_model.token_to_id("<extra_id_0>"), 2599);
  EXPECT_TRUE(from_model.is_special(2599));
  const auto ids = from_model.encode("Hello world", false);
  EXPECT_EQ(from_model.decode(ids, false, false), "Hello world");
}

TEST(SentencePieceModel, MalformedFilesNameTheFileAndField) {
  const std::string bytes = read(kFixtures / "t5" / "spiece.model");
  std::string e =
      error_of([&] { parse_sentencepiece_model(bytes.substr(0, 1001), "m/spiece.model"); });
  EXPECT_NE(e.find("m/spiece.model"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  e = error_of([&] { parse_sentencepiece_model("", "m/spiece.model"); });
  EXPECT_NE(e.find("empty"), std::string::npos) << e;
  // One piece "a" (field 1: {1: "a", 2: -1.0f}) and trainer_spec {model_type: BPE (2)}.
  const std::string piece = std::string(
      "\x0a\x01"
      "a"
      "\x15\x00\x00\x80\xbf",
      8);
  const std::string bpe = "\x0a" + std::string(1, static_cast<char>(piece.size())) + piece +
                          std::string("\x12\x02\x18\x02", 4);
  const auto m = parse_sentencepiece_model(bpe, "m/tokenizer.model");
  ASSERT_EQ(m.pieces.size(), 1u);
  EXPECT_EQ(m.pieces[0].piece, "a");
  EXPECT_FLOAT_EQ(m.pieces[0].score, -1.0f);
  EXPECT_EQ(m.model_type, 2);
  e = error_of([&] { sentencepiece_to_tokenizer_json(m, "m/tokenizer.model", 0); });
  EXPECT_NE(e.find("m/tokenizer.model"), std::string::npos) << e;
  EXPECT_NE(e.find("only Unigram"), std::string::npos) << e;
  // A piece field with the wrong wire type.
  e = error_of([&] { parse_sentencepiece_model(std::string("\x08\x01", 2), "m/x.model"); });
  EXPECT_NE(e.find("pieces[0]"), std::string::npos) << e;
}

TEST(Metaspace, SplitsAndPrependsAsTokenizers) {
  TempDir dir;
  const Json vocab = Json::array({Json::array({"<unk>", 0.0}), Json::array({kMeta, -1.0}),
                                  Json::array({kMeta + "a", -1.0}), Json::array({"a", -2.0}),
                                  Json::array({"b", -2.0})});
  auto tok = [&](const Json& pre) {
    dir.write("tokenizer.json",
              Json{{"model", {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", vocab}}},
                   {"pre_tokenizer", pre},
                   {"decoder", pre}}
                  .dump());
    return Tokenizer::from_dir(dir.path());
  };
  const Tokenizer always =
      tok({{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "always"}});
  EXPECT_EQ(always.encode("a  a"), (std::vector<int32_t>{2, 1, 2}));  // ▁a ▁ ▁a
  EXPECT_EQ(always.encode("b a"), (std::vector<int32_t>{1, 4, 2}));   // ▁ b ▁a
  EXPECT_EQ(always.decode(std::vector<int32_t>{2, 1, 2}, false, false), "a  a");
  const Tokenizer never =
      tok({{"type", "Metaspace"}, {"replacement", kMeta}, {"add_prefix_space", false}});
  EXPECT_EQ(never.encode("a a"), (std::vector<int32_t>{3, 2}));  // a ▁a
  EXPECT_EQ(never.decode(std::vector<int32_t>{3, 2}, false, false), "a a");
  EXPECT_NE(error_of([&] {
              tok({{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "sometimes"}});
            }).find("pre_tokenizer.prepend_scheme"),
            std::string::npos);
}

}  // namespace
}  // namespace fitlm
