// Protobuf wire format (varint keys: field << 3 | wire type; 0 varint, 1 fixed64, 2 length-
// delimited, 5 fixed32) for ModelProto { 1 pieces, 2 trainer_spec, 3 normalizer_spec },
// SentencePiece { 1 piece, 2 score, 3 type }, TrainerSpec { 3 model_type, 35 byte_fallback,
// 40 unk_id }, NormalizerSpec { 2 precompiled_charsmap, 3 add_dummy_prefix }. Other fields are
// skipped.
#include "fitlm/text/sentencepiece_model.h"

#include <fmt/format.h>

#include <cstring>
#include <functional>

#include "fitlm/core/error.h"
#include "fitlm/text/precompiled.h"
#include "fitlm/text/unicode.h"

namespace fitlm {
namespace {

using tokenizer_json::Json;
using tokenizer_json::Loc;

struct Field {
  uint32_t number = 0;
  int wire = 0;
  uint64_t varint = 0;     // wire types 0, 1, 5
  std::string_view bytes;  // wire type 2
};

class Reader {
 public:
  Reader(std::string_view data, Loc loc) : data_(data), loc_(std::move(loc)) {}

  // Calls f(field, loc of the field) for each field of the message.
  void each(const std::function<void(const Field&, const Loc&)>& f) {
    while (pos_ < data_.size()) {
      Field fl;
      const uint64_t key = varint("a field key");
      fl.number = static_cast<uint32_t>(key >> 3);
      fl.wire = static_cast<int>(key & 7);
      const Loc at = loc_ / fmt::format("#{}", fl.number);
      if (fl.number == 0) tokenizer_json::fail(at, "field number 0");
      switch (fl.wire) {
        case 0: fl.varint = varint("a varint"); break;
        case 1: fl.varint = fixed(8, at); break;
        case 5: fl.varint = fixed(4, at); break;
        case 2: {
          const uint64_t n = varint("a length");
          if (n > data_.size() - pos_)
            tokenizer_json::fail(
                at, fmt::format("truncated: {} bytes announced, {} left", n, data_.size() - pos_));
          fl.bytes = data_.substr(pos_, n);
          pos_ += n;
          break;
        }
        default: tokenizer_json::fail(at, fmt::format("unsupported wire type {}", fl.wire));
      }
      f(fl, at);
    }
  }

 private:
  uint64_t varint(const char* what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size())
        tokenizer_json::fail(
            loc_, std::string("truncated in ") + what + " at byte " + std::to_string(pos_));
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    tokenizer_json::fail(loc_, std::string("overlong varint in ") + what);
  }
  uint64_t fixed(size_t n, const Loc& at) {
    if (n > data_.size() - pos_) tokenizer_json::fail(at, "truncated fixed-size value");
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(data_[pos_ + k]);
    pos_ += n;
    return v;
  }

  std::string_view data_;
  size_t pos_ = 0;
  Loc loc_;
};

void expect_wire(const Field& f, int wire, const Loc& at) {
  if (f.wire != wire)
    tokenizer_json::fail(at, fmt::format("wire type {}, expected {}", f.wire, wire));
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& file) {
  SentencePieceModel m;
  const Loc root{file, ""};
  if (bytes.empty()) tokenizer_json::fail(root, "empty file");
  Reader(bytes, root).each([&](const Field& f, const Loc&) {
    if (f.number == 1) {
      const Loc at = (root / "pieces").at(m.pieces.size());
      expect_wire(f, 2, at);
      SentencePieceModel::Piece p;
      Reader(f.bytes, at).each([&](const Field& g, const Loc&) {
        if (g.number == 1) {
          expect_wire(g, 2, at / "piece");
          if (!unicode::is_valid_utf8(g.bytes))
            tokenizer_json::fail(at / "piece", "not valid UTF-8");
          p.piece = std::string(g.bytes);
        } else if (g.number == 2) {
          expect_wire(g, 5, at / "score");
          const auto u = static_cast<uint32_t>(g.varint);
          std::memcpy(&p.score, &u, 4);
        } else if (g.number == 3) {
          expect_wire(g, 0, at / "type");
          p.type = static_cast<int>(g.varint);
        }
      });
      m.pieces.push_back(std::move(p));
    } else if (f.number == 2) {
      const Loc at = root / "trainer_spec";
      expect_wire(f, 2, at);
      Reader(f.bytes, at).each([&](const Field& g, const Loc&) {
        if (g.number == 3) {
          expect_wire(g, 0, at / "model_type");
          m.model_type = static_cast<int>(g.varint);
        } else if (g.number == 35) {
          expect_wire(g, 0, at / "byte_fallback");
          m.byte_fallback = g.varint != 0;
        } else if (g.number == 40) {
          expect_wire(g, 0, at / "unk_id");
          m.unk_id = static_cast<int32_t>(static_cast<int64_t>(g.varint));
        }
      });
    } else if (f.number == 3) {
      const Loc at = root / "normalizer_spec";
      expect_wire(f, 2, at);
      Reader(f.bytes, at).each([&](const Field& g, const Loc&) {
        if (g.number == 2) {
          expect_wire(g, 2, at / "precompiled_charsmap");
          m.precompiled_charsmap = std::string(g.bytes);
        } else if (g.number == 3) {
          expect_wire(g, 0, at / "add_dummy_prefix");
          m.add_dummy_prefix = g.varint != 0;
        }
      });
    }
  });
  if (m.pieces.empty()) tokenizer_json::fail(root / "pieces", "no pieces");
  return m;
}

Json sentencepiece_to_tokenizer_json(const SentencePieceModel& m, const std::string& file,
                                     int extra_ids) {
  const Loc root{file, ""};
  if (m.model_type != 1)
    tokenizer_json::fail(root / "trainer_spec" / "model_type",
                         fmt::format("model type {} ({}): only Unigram (1) SentencePiece models "
                                     "are supported; convert it to tokenizer.json",
                                     m.model_type, m.model_type == 2 ? "BPE" : "not Unigram"));
  if (m.unk_id < 0 || static_cast<size_t>(m.unk_id) >= m.pieces.size())
    tokenizer_json::fail(
        root / "trainer_spec" / "unk_id",
        fmt::format("{} is not a piece id (the model has {} pieces)", m.unk_id, m.pieces.size()));
  auto added = [](size_t id, const std::string& content, bool special) {
    return Json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", special}};
  };
  Json vocab = Json::array(), added_tokens = Json::array();
  std::optional<size_t> eos;
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const auto& p = m.pieces[i];
    vocab.push_back(Json::array({p.piece, static_cast<double>(p.score)}));
    if (p.type == SentencePieceModel::kControl || p.type == SentencePieceModel::kUnknown ||
        p.type == SentencePieceModel::kUserDefined)
      added_tokens.push_back(added(i, p.piece, p.type != SentencePieceModel::kUserDefined));
    if (p.piece == "</s>" && !eos) eos = i;
  }
  for (int i = extra_ids - 1; i >= 0; --i) {
    const std::string t = fmt::format("<extra_id_{}>", i);
    added_tokens.push_back(added(vocab.size(), t, true));
    vocab.push_back(Json::array({t, 0.0}));
  }
  const std::string meta = "\xE2\x96\x81";  // U+2581
  Json norms = Json::array();
  if (!m.precompiled_charsmap.empty())
    norms.push_back(
        {{"type", "Precompiled"}, {"precompiled_charsmap", base64_encode(m.precompiled_charsmap)}});
  norms.push_back({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}});
  norms.push_back({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", meta}});
  const Json metaspace = {{"type", "Metaspace"},
                          {"replacement", meta},
                          {"prepend_scheme", m.add_dummy_prefix ? "always" : "never"},
                          {"split", true}};
  Json decoder = metaspace;
  if (m.byte_fallback) {
    decoder = {{"type", "Sequence"},
               {"decoders",
                {{{"type", "Replace"}, {"pattern", {{"String", meta}}}, {"content", " "}},
                 {{"type", "ByteFallback"}},
                 {{"type", "Fuse"}},
                 {{"type", "Strip"},
                  {"content", " "},
                  {"start", m.add_dummy_prefix ? 1u : 0u},
                  {"stop", 0u}}}}};
  }
  Json post = nullptr;
  if (eos) {
    const Json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
    const Json b = {{"Sequence", {{"id", "B"}, {"type_id", 0}}}};
    const Json e = {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}};
    post = {
        {"type", "TemplateProcessing"},
        {"single", {a, e}},
        {"pair", {a, e, b, e}},
        {"special_tokens",
         {{"</s>",
           {{"id", "</s>"}, {"ids", Json::array({*eos})}, {"tokens", Json::array({"</s>"})}}}}}};
  }
  return {{"version", "1.0"},
          {"added_tokens", added_tokens},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", norms}}},
          {"pre_tokenizer", metaspace},
          {"post_processor", post},
          {"decoder", decoder},
          {"model",
           {{"type", "Unigram"},
            {"unk_id", m.unk_id},
            {"vocab", vocab},
            {"byte_fallback", m.byte_fallback}}}};
}

}  // namespace fitlm
