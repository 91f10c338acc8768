// Pre-tokenizers. Each maps every input piece to a list of pieces and concatenates the lists, as
// transformers.js's PreTokenizer.pre_tokenize does.
#include "fitlm/text/pre_tokenizer.h"

#include "fitlm/text/byte_level.h"
#include "fitlm/text/pre_tokenizer_regex.h"
#include "fitlm/text/unicode.h"

namespace fitlm {
namespace {

using tokenizer_json::Json;
using tokenizer_json::Loc;

// Applies `split_one` to each piece and flattens the results into `pieces`.
template <typename F>
void map_pieces(std::vector<std::string>& pieces, F&& split_one) {
  std::vector<std::string> out;
  out.reserve(pieces.size() * 2);
  for (const std::string& p : pieces) split_one(p, out);
  pieces.swap(out);
}

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<std::string>& pieces, size_t section,
                    RegexScratch& scratch) const override {
    for (const auto& p : parts_)
      if (p) p->pre_tokenize(pieces, section, scratch);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(const Json& config, const Loc& loc) {
    const Json& pattern = tokenizer_json::require(config, "pattern", loc);
    invert_ = tokenizer_json::optional_bool(config, "invert", loc, false);
    const auto behavior = tokenizer_json::optional_string(config, "behavior", loc);
    // transformers.js: a String pattern is wrapped in a capture group, so String.split keeps
    // the delimiters even for "Removed"; only a Regex pattern really removes them.
    if (auto s = tokenizer_json::optional_string(pattern, "String", loc / "pattern")) {
      literal_ = *s;
      if (literal_.empty()) tokenizer_json::fail(loc / "pattern" / "String", "empty pattern");
    } else if (auto r = tokenizer_json::optional_string(pattern, "Regex", loc / "pattern")) {
      std::string error;
      regex_ = Regex::compile(*r, error);
      if (!regex_) tokenizer_json::fail(loc / "pattern" / "Regex", "invalid regex: " + error);
      removed_ = behavior && (*behavior == "Removed" || *behavior == "removed");
    } else {
      tokenizer_json::fail(loc / "pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    }
  }

  void pre_tokenize(std::vector<std::string>& pieces, size_t,
                    RegexScratch& scratch) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    map_pieces(pieces, [&](const std::string& text, std::vector<std::string>& out) {
      matches.clear();
      find(text, scratch, matches);
      if (invert_) {  // keep only the matches
        for (auto [b, e] : matches) out.emplace_back(text.substr(b, e - b));
        return;
      }
      size_t prev = 0;
      for (auto [b, e] : matches) {
        if (prev < b) out.emplace_back(text.substr(prev, b - prev));
        if (e > b && !removed_) out.emplace_back(text.substr(b, e - b));
        prev = e;
      }
      if (prev < text.size()) out.emplace_back(text.substr(prev));
    });
  }

 private:
  void find(const std::string& text, RegexScratch& scratch,
            std::vector<std::pair<size_t, size_t>>& out) const {
    if (regex_) return regex_->find_all(text, scratch, out);
    for (size_t pos = text.find(literal_); pos != std::string::npos;
         pos = text.find(literal_, pos + literal_.size()))
      out.emplace_back(pos, pos + literal_.size());
  }

  std::string literal_;
  std::unique_ptr<Regex> regex_;
  bool invert_ = false;
  bool removed_ = false;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(const Json& config, const Loc& loc) {
    add_prefix_space_ = tokenizer_json::optional_bool(config, "add_prefix_space", loc, false);
    if (tokenizer_json::optional_bool(config, "use_regex", loc, true)) {
      std::string error;
      gpt2_ = Regex::compile(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
          error);
    }
  }

  void pre_tokenize(std::vector<std::string>& pieces, size_t,
                    RegexScratch& scratch) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    std::string prefixed;
    map_pieces(pieces, [&](const std::string& piece, std::vector<std::string>& out) {
      std::string_view text = piece;
      if (add_prefix_space_ && (text.empty() || text[0] != ' ')) {  // JS: !startsWith(" ")
        prefixed = " " + piece;
        text = prefixed;
      }
      auto emit = [&](std::string_view word) {
        std::string mapped;
        mapped.reserve(word.size() * 2);
        byte_level::encode(word, mapped);
        out.push_back(std::move(mapped));
      };
      if (!gpt2_) return emit(text);
      matches.clear();
      gpt2_->find_all(text, scratch, matches);
      for (auto [b, e] : matches) emit(text.substr(b, e - b));
    });
  }

 private:
  bool add_prefix_space_ = false;
  std::unique_ptr<Regex> gpt2_;
};

// Metaspace as tokenizers runs it: spaces become the replacement, the replacement is prepended
// (scheme "always", or "first" on the first section only) unless already there, and with
// `split` the piece is cut before every replacement (MergedWithNext), empty pieces dropped.
class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, std::string scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(std::move(scheme)), split_(split) {}

  void pre_tokenize(std::vector<std::string>& pieces, size_t section,
                    RegexScratch&) const override {
    map_pieces(pieces, [&](const std::string& p, std::vector<std::string>& out) {
      std::string s;
      s.reserve(p.size() + 8);
      for (char c : p) c == ' ' ? void(s += replacement_) : s.push_back(c);
      if (!s.empty() && s.compare(0, replacement_.size(), replacement_) != 0 &&
          (scheme_ == "always" || (scheme_ == "first" && section == 0)))
        s = replacement_ + s;
      if (!split_) return out.push_back(std::move(s));
      size_t begin = 0;
      for (size_t pos = s.find(replacement_, 1); pos != std::string::npos;
           pos = s.find(replacement_, pos + replacement_.size())) {
        if (pos > begin) out.emplace_back(s, begin, pos - begin);
        begin = pos;
      }
      if (begin < s.size()) out.emplace_back(s, begin);
    });
  }

 private:
  std::string replacement_;
  std::string scheme_;  // "always", "first" or "never"
  bool split_;
};

// Whitespace (\w+|[^\w\s]+) and WhitespaceSplit (\S+), with JavaScript's \w and \s.
class RegexMatchPreTokenizer final : public PreTokenizer {
 public:
  explicit RegexMatchPreTokenizer(const char* pattern) {
    std::string error;
    regex_ = Regex::compile(pattern, error);
  }
  void pre_tokenize(std::vector<std::string>& pieces, size_t,
                    RegexScratch& scratch) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    map_pieces(pieces, [&](const std::string& text, std::vector<std::string>& out) {
      matches.clear();
      regex_->find_all(text, scratch, matches);
      for (auto [b, e] : matches) out.emplace_back(text.substr(b, e - b));
    });
  }

 private:
  std::unique_ptr<Regex> regex_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(std::string replacement,
                                                           std::string prepend_scheme, bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), std::move(prepend_scheme),
                                                 split);
}

std::string metaspace_prepend_scheme(const Json& config, const Loc& loc) {
  std::string scheme =
      tokenizer_json::optional_string(config, "prepend_scheme", loc).value_or("always");
  if (scheme != "always" && scheme != "first" && scheme != "never")
    tokenizer_json::fail(
        loc / "prepend_scheme",
        "expected \"always\", \"first\" or \"never\", found \"" + clip(scheme) + "\"");
  // Older files: add_prefix_space false means never (true leaves the scheme, "always" by default).
  if (!tokenizer_json::optional_bool(config, "add_prefix_space", loc, true)) scheme = "never";
  return scheme;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& config, const Loc& loc) {
  if (config.is_null()) return nullptr;
  const std::string type = tokenizer_json::type_of(config, loc);
  if (type == "Sequence") {
    const Json& list = tokenizer_json::require_array(config, "pretokenizers", loc);
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i)
      parts.push_back(make_pre_tokenizer(list[i], (loc / "pretokenizers").at(i)));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Split") return std::make_unique<SplitPreTokenizer>(config, loc);
  if (type == "ByteLevel") return std::make_unique<ByteLevelPreTokenizer>(config, loc);
  if (type == "Metaspace") {
    // tokenizers' reading (transformers.js takes an absent add_prefix_space as false and never
    // splits; it agrees with tokenizers on files that set add_prefix_space and pieces that do
    // not cross the replacement character).
    const std::string replacement = tokenizer_json::require_string(config, "replacement", loc);
    if (replacement.empty()) tokenizer_json::fail(loc / "replacement", "expected one character");
    return make_metaspace_pre_tokenizer(replacement, metaspace_prepend_scheme(config, loc),
                                        tokenizer_json::optional_bool(config, "split", loc, true));
  }
  if (type == "Whitespace") return std::make_unique<RegexMatchPreTokenizer>("\\w+|[^\\w\\s]+");
  if (type == "WhitespaceSplit") return std::make_unique<RegexMatchPreTokenizer>("\\S+");
  tokenizer_json::unsupported(config, loc, "pre_tokenizer");
}

}  // namespace fitlm
