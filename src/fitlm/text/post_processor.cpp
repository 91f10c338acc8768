// Post-processors. Only the single-sequence template is used: fitlm encodes one text at a time.
#include "fitlm/text/post_processor.h"

namespace fitlm {
namespace {

using tokenizer_json::Json;
using tokenizer_json::Loc;

class TemplatePostProcessor final : public PostProcessor {
 public:
  TemplatePostProcessor(const Json& config, const Loc& loc, const TokenLookup& lookup) {
    const Json& single = tokenizer_json::require_array(config, "single", loc);
    const Json* specials = config.contains("special_tokens") ? &config["special_tokens"] : nullptr;
    for (size_t i = 0; i < single.size(); ++i) {
      const Loc at = (loc / "single").at(i);
      const Json& item = single[i];
      if (item.contains("Sequence")) {
        const std::string id =
            tokenizer_json::require_string(item["Sequence"], "id", at / "Sequence");
        if (id != "A")
          tokenizer_json::fail(at / "Sequence" / "id", "expected \"A\" in a single template");
        steps_.push_back(kSequence);
      } else if (item.contains("SpecialToken")) {
        const std::string tok =
            tokenizer_json::require_string(item["SpecialToken"], "id", at / "SpecialToken");
        // transformers.js emits the token string and maps it through the vocab; fall back to the
        // ids listed under special_tokens when the vocab lacks it.
        if (auto id = lookup(tok)) {
          steps_.push_back(*id);
        } else if (specials && specials->contains(tok) && (*specials)[tok].contains("ids") &&
                   (*specials)[tok]["ids"].is_array()) {
          for (const Json& v : (*specials)[tok]["ids"]) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
                v.get<int64_t>() >= tokenizer_json::kMaxTokenId)
              tokenizer_json::fail(loc / "special_tokens" / clip(tok),
                                   fmt::format("ids must be integers in [0, {}), found {}",
                                               tokenizer_json::kMaxTokenId, clip(v.dump())));
            steps_.push_back(static_cast<int32_t>(v.get<int64_t>()));
          }
        } else {
          tokenizer_json::fail(at / "SpecialToken" / "id",
                               "token \"" + clip(tok) + "\" is not in the vocab");
        }
      } else {
        tokenizer_json::fail(at, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
  }

  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<int32_t> out;
    out.reserve(ids.size() + steps_.size());
    for (int32_t s : steps_) {
      if (s == kSequence)
        out.insert(out.end(), ids.begin(), ids.end());
      else
        out.push_back(s);
    }
    ids.swap(out);
  }

 private:
  static constexpr int32_t kSequence = -1;
  std::vector<int32_t> steps_;  // token ids, kSequence where the text goes
};

class IdentityPostProcessor final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&, bool) const override {}
};

class SequencePostProcessor final : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& p : parts_)
      if (p) p->process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const Json& config, const Loc& loc,
                                                   const TokenLookup& lookup) {
  if (config.is_null()) return nullptr;
  const std::string type = tokenizer_json::type_of(config, loc);
  if (type == "TemplateProcessing")
    return std::make_unique<TemplatePostProcessor>(config, loc, lookup);
  if (type == "ByteLevel") return std::make_unique<IdentityPostProcessor>();
  if (type == "Sequence") {
    const Json& list = tokenizer_json::require_array(config, "processors", loc);
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t i = 0; i < list.size(); ++i)
      parts.push_back(make_post_processor(list[i], (loc / "processors").at(i), lookup));
    return std::make_unique<SequencePostProcessor>(std::move(parts));
  }
  tokenizer_json::unsupported(config, loc, "post_processor");
}

}  // namespace fitlm
