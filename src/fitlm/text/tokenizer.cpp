// Tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs the pipeline
//   added-token split -> normalizer -> pre-tokenizer -> BPE -> post-processor
// in the order and with the quirks of transformers.js, whose ids the parity test checks.
#include "fitlm/text/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/paths.h"
#include "fitlm/text/added_tokens.h"
#include "fitlm/text/bpe.h"
#include "fitlm/text/decoder.h"
#include "fitlm/text/normalizer.h"
#include "fitlm/text/post_processor.h"
#include "fitlm/text/pre_tokenizer.h"
#include "fitlm/text/pre_tokenizer_regex.h"
#include "fitlm/text/sentencepiece_model.h"
#include "fitlm/text/unicode.h"
#include "fitlm/text/unigram.h"

namespace fitlm {

using tokenizer_json::Json;
using tokenizer_json::Loc;

namespace {

constexpr std::string_view kSpieceUnderline = "\xE2\x96\x81";  // U+2581

constexpr const char* kComponent = "tokenizer";

using tokenizer_json::kMaxTokenId;

// The bound on token ids of one tokenizer.json. The id table is sized by the largest id, so an
// id must not be able to ask for much more memory than the file's own tokens take: ids below
// twice the number of tokens (model vocab + added tokens) plus 1024 leave room for sparse ids
// (reserved ranges, holes) far beyond what real tokenizers have, which are dense.
int64_t token_id_limit(const Json& root) {
  size_t entries = 0;
  if (auto m = root.find("model"); m != root.end() && m->is_object())
    if (auto v = m->find("vocab"); v != m->end() && (v->is_object() || v->is_array()))
      entries += v->size();
  if (auto a = root.find("added_tokens"); a != root.end() && a->is_array()) entries += a->size();
  return std::min<int64_t>(kMaxTokenId, 2 * static_cast<int64_t>(entries) + 1024);
}

// A special-token entry of tokenizer_config.json: a string, null, or {"content": ...}.
std::optional<std::string> config_token(const Json& config, const char* key, const Loc& loc) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  tokenizer_json::fail(
      loc / key, std::string("expected a string or {\"content\": ...}, found ") + it->type_name());
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

// transformers' clean_up_tokenization: undo spaces before punctuation and contractions.
void clean_up_tokenization(std::string& s) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) replace_all(s, from, to);
}

}  // namespace

// Per-thread working state: regex match data, the BPE word cache, reusable buffers.
struct EncodeScratch {
  RegexScratch regex;
  BpeCache cache;
  UnigramScratch unigram;
  std::vector<Section> sections, normalized_sections;
  std::vector<std::string> pieces;
};

struct Tokenizer::Impl {
  std::string json_path;
  Vocab vocab;
  std::unique_ptr<BpeModel> model;        // BPE, or
  std::unique_ptr<UnigramModel> unigram;  // Unigram
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<TokenDecoder> decoder;
  std::vector<AddedToken> added;
  std::unique_ptr<AddedTokenSplitter> raw_splitter, normalized_splitter;
  TokenMap added_by_content;                         // content -> index in `added` (last wins)
  std::unordered_set<std::string> special_contents;  // for skip_special_tokens
  std::vector<uint8_t> special_ids;
  std::optional<std::string> bos, eos, pad;
  bool clean_up = true, remove_space = false, llama_non_legacy = false;

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<EncodeScratch>> pool;

  std::unique_ptr<EncodeScratch> acquire() {
    std::lock_guard lock(pool_mutex);
    if (pool.empty()) return std::make_unique<EncodeScratch>();
    auto s = std::move(pool.back());
    pool.pop_back();
    return s;
  }
  void release(std::unique_ptr<EncodeScratch> s) {
    std::lock_guard lock(pool_mutex);
    pool.push_back(std::move(s));
  }

  void load(const Json& root, const std::optional<Json>& config, const Loc& loc, const Loc& cloc);
  const std::optional<std::string>& unk_token() const {
    return unigram ? unigram->unk_token() : model->unk_token();
  }
  void encode_text(std::string_view text, EncodeScratch& s, std::vector<int32_t>& ids) const;
  void encode_plain(std::string_view text, size_t section, EncodeScratch& s,
                    std::vector<int32_t>& ids) const;
  std::vector<int32_t> encode(std::string_view text, bool add_special, EncodeScratch& s) const;
};

void Tokenizer::Impl::load(const Json& root, const std::optional<Json>& config, const Loc& loc,
                           const Loc& cloc) {
  if (!root.is_object()) tokenizer_json::fail(loc, "expected a JSON object");
  const Json& m = tokenizer_json::require(root, "model", loc);
  if (!m.is_object()) tokenizer_json::fail(loc / "model", "expected an object");
  // A model without "type" is BPE when it has merges (older files).
  const std::string type = tokenizer_json::optional_string(m, "type", loc / "model")
                               .value_or(m.contains("merges") ? "BPE" : "");
  if (type != "BPE" && type != "Unigram")
    tokenizer_json::fail(loc / "model" / "type", "unsupported model type \"" + clip(type) +
                                                     "\" (BPE and Unigram are supported)");
  vocab.id_limit = token_id_limit(root);
  if (type == "BPE")
    model = std::make_unique<BpeModel>(m, loc / "model", vocab);
  else
    unigram = std::make_unique<UnigramModel>(m, loc / "model", vocab);

  added = parse_added_tokens(root, loc, vocab.id_limit);
  for (size_t i = 0; i < added.size(); ++i) {
    vocab.set(added[i].content, added[i].id);
    added_by_content[added[i].content] = static_cast<int32_t>(i);
    if (added[i].special) special_contents.insert(added[i].content);
  }
  if (model) model->finalize(vocab);
  special_ids.assign(vocab.id_to_token.size(), 0);
  for (const AddedToken& t : added)
    if (t.special) special_ids[static_cast<size_t>(t.id)] = 1;
  raw_splitter = std::make_unique<AddedTokenSplitter>(added, false);
  normalized_splitter = std::make_unique<AddedTokenSplitter>(added, true);

  auto component = [&](const char* key) -> const Json& {
    static const Json null_json;
    auto it = root.find(key);
    return it == root.end() ? null_json : *it;
  };
  normalizer = make_normalizer(component("normalizer"), loc / "normalizer");
  pre_tokenizer = make_pre_tokenizer(component("pre_tokenizer"), loc / "pre_tokenizer");
  post_processor = make_post_processor(component("post_processor"), loc / "post_processor",
                                       [this](std::string_view t) { return vocab.find(t); });
  std::unordered_set<std::string> added_contents;
  for (const AddedToken& t : added) added_contents.insert(t.content);
  decoder = make_decoder(component("decoder"), loc / "decoder", added_contents);

  if (!config) return;
  const Json& c = *config;
  if (!c.is_object()) tokenizer_json::fail(cloc, "expected a JSON object");
  bos = config_token(c, "bos_token", cloc);
  eos = config_token(c, "eos_token", cloc);
  pad = config_token(c, "pad_token", cloc);
  clean_up = tokenizer_json::optional_bool(c, "clean_up_tokenization_spaces", cloc, true);
  remove_space = tokenizer_json::optional_bool(c, "remove_space", cloc, false);
  if (tokenizer_json::optional_bool(c, "do_lowercase_and_remove_accent", cloc, false))
    tokenizer_json::fail(cloc / "do_lowercase_and_remove_accent", "unsupported (XLM only)");
  if (auto it = c.find("additional_special_tokens"); it != c.end() && it->is_array())
    for (const Json& t : *it) {
      if (t.is_string())
        special_contents.insert(t.get<std::string>());
      else if (t.is_object() && t.contains("content") && t["content"].is_string())
        special_contents.insert(t["content"].get<std::string>());
    }
  // transformers.js's LlamaTokenizer with legacy == false swaps in a Metaspace pre-tokenizer
  // and prefixes U+2581 itself (huggingface/transformers#24565).
  std::string cls = tokenizer_json::optional_string(c, "tokenizer_class", cloc).value_or("");
  if (cls.size() > 4 && cls.ends_with("Fast")) cls.resize(cls.size() - 4);
  if (cls == "LlamaTokenizer" && !tokenizer_json::optional_bool(c, "legacy", cloc, true)) {
    llama_non_legacy = true;
    normalizer = nullptr;
    pre_tokenizer = make_metaspace_pre_tokenizer(std::string(kSpieceUnderline), "first", false);
  }
}

void Tokenizer::Impl::encode_plain(std::string_view text, size_t section, EncodeScratch& s,
                                   std::vector<int32_t>& ids) const {
  std::string x(text);
  if (remove_space) {  // trim and collapse whitespace runs to one space
    std::string y;
    bool in_space = false;
    std::string_view t = unicode::js_trim_end(unicode::js_trim_start(x));
    for (size_t i = 0; i < t.size();) {
      const size_t b = i;
      if (unicode::is_js_whitespace(unicode::next_code_point(t, i))) {
        if (!in_space) y += ' ';
        in_space = true;
      } else {
        y.append(t.substr(b, i - b));
        in_space = false;
      }
    }
    x.swap(y);
  }
  if (normalizer) x = normalizer->normalize(x, s.regex);
  if (x.empty()) return;

  // Added tokens marked "normalized" are matched in the normalized text.
  std::vector<Section> parts;
  if (!normalized_splitter->empty())
    normalized_splitter->split(x, parts);
  else
    parts.push_back({x, -1});
  for (const Section& part : parts) {
    if (part.token >= 0) {
      ids.push_back(added[static_cast<size_t>(part.token)].id);
      continue;
    }
    const size_t begin = ids.size();
    s.pieces.clear();
    s.pieces.emplace_back(part.text);
    if (pre_tokenizer) pre_tokenizer->pre_tokenize(s.pieces, section, s.regex);
    if (unigram) {
      for (const std::string& w : s.pieces) unigram->encode_word(w, s.unigram, ids);
      continue;
    }
    for (const std::string& w : s.pieces) model->encode_word(w, vocab, s.cache, ids);
    model->fuse_unk(ids, begin);
  }
}

void Tokenizer::Impl::encode_text(std::string_view text, EncodeScratch& s,
                                  std::vector<int32_t>& ids) const {
  std::string owned;
  if (!unicode::is_valid_utf8(text)) text = owned = unicode::sanitize_utf8(text);
  if (llama_non_legacy && !text.empty()) {
    owned = std::string(kSpieceUnderline) + std::string(text);
    replace_all(owned, kSpieceUnderline, " ");
    owned.replace(0, 1, kSpieceUnderline);
    text = owned;
  }
  std::vector<Section>& sections = s.sections;
  sections.clear();
  raw_splitter->split(text, sections);
  // lstrip / rstrip trim the neighbouring sections (transformers.js _encode_text).
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].token < 0) continue;
    const AddedToken& t = added[static_cast<size_t>(sections[i].token)];
    if (t.lstrip && i > 0) sections[i - 1].text = unicode::js_trim_end(sections[i - 1].text);
    if (t.rstrip && i + 1 < sections.size())
      sections[i + 1].text = unicode::js_trim_start(sections[i + 1].text);
  }
  const size_t first = ids.size();
  for (size_t i = 0; i < sections.size(); ++i) {
    const std::string_view x = sections[i].text;
    if (x.empty()) continue;
    // A section equal to an added token's content is that token (even if trimming made it so).
    if (auto it = added_by_content.find(x); it != added_by_content.end()) {
      ids.push_back(added[static_cast<size_t>(it->second)].id);
      continue;
    }
    encode_plain(x, i, s, ids);
  }
  if (llama_non_legacy && ids.size() - first > 1) {
    const auto underline = vocab.find(kSpieceUnderline);
    const int32_t second = ids[first + 1];
    if (underline && ids[first] == *underline && vocab.has_token[static_cast<size_t>(second)] &&
        special_contents.count(vocab.id_to_token[static_cast<size_t>(second)]))
      ids.erase(ids.begin() + static_cast<long>(first));
  }
}

std::vector<int32_t> Tokenizer::Impl::encode(std::string_view text, bool add_special,
                                             EncodeScratch& s) const {
  std::vector<int32_t> ids;
  encode_text(text, s, ids);
  if (post_processor) post_processor->process(ids, add_special);
  return ids;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  const auto config = dir / "tokenizer_config.json";
  const auto config_path = paths::exists(config, kComponent)
                               ? std::optional<std::filesystem::path>(config)
                               : std::nullopt;
  const auto json = dir / "tokenizer.json";
  if (paths::exists(json, kComponent)) return from_files(json, config_path);
  // No tokenizer.json: a SentencePiece model (T5's spiece.model, others' tokenizer.model).
  for (const char* name : {"spiece.model", "tokenizer.model"})
    if (paths::exists(dir / name, kComponent)) return from_sentencepiece(dir / name, config_path);
  throw_input_error(kComponent,
                    "{}: no tokenizer.json (nor a SentencePiece spiece.model or tokenizer.model) "
                    "in this directory",
                    clip_path(dir.string()));
}

bool Tokenizer::dir_has_tokenizer(const std::filesystem::path& dir) {
  for (const char* name : {"tokenizer.json", "spiece.model", "tokenizer.model"})
    if (paths::exists(dir / name, kComponent)) return true;
  return false;
}

Tokenizer Tokenizer::from_files(const std::filesystem::path& tokenizer_json,
                                const std::optional<std::filesystem::path>& tokenizer_config) {
  const Json root = json_input::parse_file(tokenizer_json, kComponent);
  return from_json(root, tokenizer_json.string(), tokenizer_config);
}

Tokenizer Tokenizer::from_sentencepiece(
    const std::filesystem::path& model_file,
    const std::optional<std::filesystem::path>& tokenizer_config) {
  const std::string file = model_file.string();
  std::ifstream in(model_file, std::ios::binary);
  if (!in) throw_input_error(kComponent, "{}: cannot open", clip_path(file));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const SentencePieceModel m = parse_sentencepiece_model(bytes, file);
  // T5Tokenizer's extra_ids (100 by default) from tokenizer_config.json.
  int extra_ids = 100;
  if (tokenizer_config) {
    const Json c = json_input::parse_file(*tokenizer_config, kComponent);
    if (auto it = c.is_object() ? c.find("extra_ids") : c.end(); it != c.end()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 100000)
        tokenizer_json::fail(Loc{tokenizer_config->string(), "extra_ids"},
                             "expected an integer in [0, 100000]");
      extra_ids = static_cast<int>(it->get<int64_t>());
    }
  }
  return from_json(sentencepiece_to_tokenizer_json(m, file, extra_ids), file, tokenizer_config);
}

Tokenizer Tokenizer::from_json(const Json& root, const std::string& source,
                               const std::optional<std::filesystem::path>& tokenizer_config) {
  auto impl = std::make_unique<Impl>();
  impl->json_path = source;
  std::optional<Json> config;
  Loc cloc;
  if (tokenizer_config) {
    config = json_input::parse_file(*tokenizer_config, kComponent);
    cloc = Loc{tokenizer_config->string(), ""};
  }
  // The readers check the types they read (tokenizer_json.h); the net catches what they miss.
  json_input::read_fields(kComponent, source, [&] {
    impl->load(root, config, Loc{source, ""}, cloc);
  });
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  auto s = impl_->acquire();
  auto ids = impl_->encode(text, add_special_tokens, *s);
  impl_->release(std::move(s));
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens,
                                                          int threads) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  size_t n = threads > 0 ? static_cast<size_t>(threads)
                         : std::max(1u, std::thread::hardware_concurrency());
  n = std::min(n, std::max<size_t>(1, texts.size() / 4));
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    auto s = impl_->acquire();
    try {
      constexpr size_t kChunk = 16;  // small chunks balance long and short texts
      for (size_t b; (b = next.fetch_add(kChunk)) < texts.size();)
        for (size_t i = b; i < std::min(b + kChunk, texts.size()); ++i)
          out[i] = impl_->encode(texts[i], add_special_tokens, *s);
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
    }
    impl_->release(std::move(s));
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return decode(ids, skip_special_tokens, impl_->clean_up);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens,
                              bool clean_up_tokenization_spaces) const {
  const Impl& im = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const bool known = id >= 0 && static_cast<size_t>(id) < im.vocab.id_to_token.size() &&
                       im.vocab.has_token[static_cast<size_t>(id)];
    std::string t;
    if (known) {
      t = im.vocab.id_to_token[static_cast<size_t>(id)];
    } else if (im.unk_token()) {
      t = *im.unk_token();  // transformers.js: vocab[i] ?? unk_token
    } else {
      throw_input_error("tokenizer", "{}: token id {} is not in the vocabulary (size {})",
                        im.json_path, id, im.vocab.id_to_token.size());
    }
    if (skip_special_tokens && im.special_contents.count(t)) continue;
    tokens.push_back(std::move(t));
  }
  std::string text;
  if (im.decoder) {
    auto s = impl_->acquire();
    im.decoder->decode_chain(tokens, s->regex);
    impl_->release(std::move(s));
    for (const std::string& t : tokens) text += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
  }
  if (im.decoder && im.model && !im.model->end_of_word_suffix().empty()) {
    replace_all(text, im.model->end_of_word_suffix(), " ");
    if (skip_special_tokens) text = unicode::js_trim_end(unicode::js_trim_start(text));
  }
  if (clean_up_tokenization_spaces) clean_up_tokenization(text);
  return text;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const Vocab& v = impl_->vocab;
  if (id < 0 || static_cast<size_t>(id) >= v.id_to_token.size()) return {};
  return v.id_to_token[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->vocab.find(token);
}

size_t Tokenizer::vocab_size() const {
  return impl_->vocab.id_to_token.size();
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special_ids.size() &&
         impl_->special_ids[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos ? impl_->vocab.find(*impl_->bos) : std::nullopt;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos ? impl_->vocab.find(*impl_->eos) : std::nullopt;
}
std::optional<int32_t> Tokenizer::pad_id() const {
  return impl_->pad ? impl_->vocab.find(*impl_->pad) : std::nullopt;
}
std::string Tokenizer::bos_token() const {
  return impl_->bos.value_or("");
}
std::string Tokenizer::eos_token() const {
  return impl_->eos.value_or("");
}
bool Tokenizer::clean_up_tokenization_spaces() const {
  return impl_->clean_up;
}

}  // namespace fitlm
