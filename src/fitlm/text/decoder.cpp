// Decoders, mirroring transformers.js (including its TextDecoder behaviour on invalid bytes).
#include "fitlm/text/decoder.h"

#include "fitlm/text/byte_level.h"
#include "fitlm/text/normalizer.h"
#include "fitlm/text/pre_tokenizer.h"
#include "fitlm/text/unicode.h"

namespace fitlm {
namespace {

using tokenizer_json::Json;
using tokenizer_json::Loc;

class ByteLevelDecoder final : public TokenDecoder {
 public:
  explicit ByteLevelDecoder(std::unordered_set<std::string> added) : added_(std::move(added)) {}
  // Runs of ordinary tokens are byte-decoded together; added tokens are kept as they are.
  void decode_chain(std::vector<std::string>& tokens, RegexScratch&) const override {
    std::vector<std::string> out;
    std::string run;
    bool have_run = false;
    auto flush = [&] {
      if (have_run) out.push_back(unicode::sanitize_utf8(byte_level::decode(run)));
      run.clear();
      have_run = false;
    };
    for (std::string& t : tokens) {
      if (added_.count(t)) {
        flush();
        out.push_back(std::move(t));
      } else {
        run += t;
        have_run = true;
      }
    }
    flush();
    tokens.swap(out);
  }

 private:
  std::unordered_set<std::string> added_;
};

class ReplaceDecoder final : public TokenDecoder {
 public:
  explicit ReplaceDecoder(PatternReplacer r) : replacer_(std::move(r)) {}
  void decode_chain(std::vector<std::string>& tokens, RegexScratch& scratch) const override {
    for (std::string& t : tokens) t = replacer_.apply(t, scratch);
  }

 private:
  PatternReplacer replacer_;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

size_t utf16_length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) n += unicode::next_code_point(s, i) >= 0x10000 ? 2 : 1;
  return n;
}

class ByteFallbackDecoder final : public TokenDecoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, RegexScratch&) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      // TextDecoder() drops a leading byte order mark.
      std::string_view b = bytes;
      if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
      out.push_back(unicode::sanitize_utf8(b));
      bytes.clear();
    };
    for (std::string& t : tokens) {
      const int byte = parse_byte_token(t);
      if (byte >= 0) {
        bytes.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }

 private:
  // "<0xHH>" -> HH, with JavaScript parseInt's leniency on the two characters; -1 otherwise.
  static int parse_byte_token(std::string_view t) {
    if (t.size() < 6 || t.substr(0, 3) != "<0x" || t.back() != '>') return -1;
    const std::string_view mid = t.substr(3, t.size() - 4);
    if (utf16_length(mid) != 2) return -1;
    const int hi = hex_value(mid[0]);
    if (hi < 0) return -1;
    const int lo = mid.size() == 2 ? hex_value(mid[1]) : -1;
    return lo < 0 ? hi : hi * 16 + lo;
  }
};

class FuseDecoder final : public TokenDecoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, RegexScratch&) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder final : public TokenDecoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens, RegexScratch&) const override {
    const size_t n = content_.size();
    for (std::string& t : tokens) {
      size_t begin = 0, end = t.size();
      for (size_t i = 0; i < start_ && begin + n <= end && t.compare(begin, n, content_) == 0; ++i)
        begin += n;
      for (size_t i = 0; i < stop_ && end >= begin + n && t.compare(end - n, n, content_) == 0; ++i)
        end -= n;
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

// tokenizers' Metaspace decoder: the replacement becomes a space, except in the first token,
// where it is dropped (every occurrence) unless the prepend scheme is "never".
class MetaspaceDecoder final : public TokenDecoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens, RegexScratch&) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string s;
      const std::string& t = tokens[i];
      for (size_t pos = 0;;) {
        const size_t hit = t.find(replacement_, pos);
        s.append(t, pos, hit == std::string::npos ? std::string::npos : hit - pos);
        if (hit == std::string::npos) break;
        if (!(strip_first_ && i == 0)) s += ' ';
        pos = hit + replacement_.size();
      }
      tokens[i] = std::move(s);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder final : public TokenDecoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<TokenDecoder>> parts)
      : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens, RegexScratch& scratch) const override {
    for (const auto& p : parts_)
      if (p) p->decode_chain(tokens, scratch);
  }

 private:
  std::vector<std::unique_ptr<TokenDecoder>> parts_;
};

size_t count_field(const Json& config, const char* key, const Loc& loc) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return 0;
  if (!it->is_number_unsigned()) tokenizer_json::fail(loc / key, "expected a non-negative integer");
  return it->get<size_t>();
}

}  // namespace

std::unique_ptr<TokenDecoder> make_decoder(const Json& config, const Loc& loc,
                                           const std::unordered_set<std::string>& added_contents) {
  if (config.is_null()) return nullptr;
  const std::string type = tokenizer_json::type_of(config, loc);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>(added_contents);
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(
        PatternReplacer(tokenizer_json::require(config, "pattern", loc),
                        tokenizer_json::require_string(config, "content", loc), loc / "pattern"));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const std::string content = tokenizer_json::require_string(config, "content", loc);
    if (content.empty()) tokenizer_json::fail(loc / "content", "expected one character");
    return std::make_unique<StripDecoder>(content, count_field(config, "start", loc),
                                          count_field(config, "stop", loc));
  }
  if (type == "Metaspace") {
    const std::string replacement = tokenizer_json::require_string(config, "replacement", loc);
    if (replacement.empty()) tokenizer_json::fail(loc / "replacement", "expected one character");
    return std::make_unique<MetaspaceDecoder>(replacement,
                                              metaspace_prepend_scheme(config, loc) != "never");
  }
  if (type == "Sequence") {
    const Json& list = tokenizer_json::require_array(config, "decoders", loc);
    std::vector<std::unique_ptr<TokenDecoder>> parts;
    for (size_t i = 0; i < list.size(); ++i)
      parts.push_back(make_decoder(list[i], (loc / "decoders").at(i), added_contents));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  tokenizer_json::unsupported(config, loc, "decoder");
}

}  // namespace fitlm
