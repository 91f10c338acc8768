#include "fitlm/infer/generation_session.h"

#include <algorithm>
#include <fstream>

#include "fitlm/core/error.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/hf_model.h"

namespace fitlm {
namespace {

// generation_config.json eos_token_id: an id or a list; other values, and integers that are not
// token ids, are ignored (the file is optional and advisory).
void add_ids(const nlohmann::json& j, std::vector<int32_t>& out) {
  auto add = [&](const nlohmann::json& e) {
    if (e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() <= INT32_MAX)
      out.push_back(static_cast<int32_t>(e.get<int64_t>()));
  };
  if (j.is_array())
    for (const auto& e : j) add(e);
  else
    add(j);
}

}  // namespace

GenerationSession::GenerationSession(const GenerationSetup& setup)
    : setup_(setup), model_dir_(setup.model_dir) {
  if (setup_.ensemble && setup_.adapter_dirs.size() < 2)
    throw_input_error("generate", "--ensemble needs at least two --adapter directories (got {})",
                      setup_.adapter_dirs.size());
  backend_ = make_backend(setup_.backend);
  // The base model only serves weights here: its own activation plan is kept to one token.
  RunShape shape;
  shape.max_tokens = 1;
  shape.logits_chunk = 1;
  ModelConfig config = read_model_config(model_dir_);
  check_model_weights(config, model_dir_);
  shape.base4 = base4_layout(config, model_dir_, setup_.quantize);
  if (Tokenizer::dir_has_tokenizer(model_dir_)) {
    tokenizer_.emplace(Tokenizer::from_dir(model_dir_));
    check_tokenizer_fits(*tokenizer_, config, model_dir_);
  }
  model_ = std::make_unique<Transformer>(*backend_, std::move(config), TrainMode::kFrozen,
                                         LoraConfig{}, shape);
  load_model_weights(*model_, model_dir_);
  for (const std::string& dir : setup_.adapter_dirs)
    adapters_.push_back(std::make_unique<LoadedAdapter>(*backend_, model_->config(), dir));

  const ModelConfig& c = model_->config();
  eos_ids_.assign(c.eos_token_ids.begin(), c.eos_token_ids.end());
  if (std::ifstream gc(model_dir_ / "generation_config.json"); gc) {
    const nlohmann::json j = nlohmann::json::parse(gc, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("eos_token_id")) add_ids(j["eos_token_id"], eos_ids_);
  }
  if (tokenizer_ && tokenizer_->eos_id()) eos_ids_.push_back(*tokenizer_->eos_id());
  std::sort(eos_ids_.begin(), eos_ids_.end());
  eos_ids_.erase(std::unique(eos_ids_.begin(), eos_ids_.end()), eos_ids_.end());
}

GenerationSession::~GenerationSession() = default;

const ModelConfig& GenerationSession::config() const {
  return model_->config();
}

std::vector<int32_t> GenerationSession::encode(const std::string& text, bool add_special) const {
  if (!tokenizer_)
    throw_input_error("generate", "{} has no tokenizer.json; pass token ids instead of text",
                      model_dir_.string());
  return tokenizer_->encode(text, add_special);
}

std::vector<int32_t> GenerationSession::encode_chat(std::vector<ChatMessage> messages,
                                                    const std::string& system) const {
  if (!system.empty() && (messages.empty() || messages.front().role != "system"))
    messages.insert(messages.begin(), ChatMessage{"system", system});
  if (!chat_template_)
    chat_template_ = std::make_unique<ChatTemplate>(ChatTemplate::from_model_dir(model_dir_));
  // The rendered text carries the template's own BOS: HF's apply_chat_template(tokenize=True)
  // encodes it without adding special tokens again.
  return encode(chat_template_->render(messages, /*add_generation_prompt=*/true), false);
}

void GenerationSession::ensure_decoders(int64_t batch, int64_t max_len) {
  if (!decoders_.empty() && decoders_.front()->shape().max_batch >= batch &&
      decoders_.front()->shape().max_len >= max_len)
    return;
  decoders_.clear();  // frees the old caches before planning larger ones
  const DecoderShape shape{batch, max_len};
  if (setup_.ensemble) {
    for (const auto& a : adapters_)
      decoders_.push_back(std::make_unique<Decoder>(
          *model_, std::vector<const AdapterWeights*>{&a->weights()}, shape));
  } else {
    std::vector<const AdapterWeights*> all;
    for (const auto& a : adapters_) all.push_back(&a->weights());
    decoders_.push_back(std::make_unique<Decoder>(*model_, all, shape));
  }
}

std::vector<GenerationResult> GenerationSession::generate(
    const std::vector<std::vector<int32_t>>& prompts, GenerationOptions o) {
  if (o.eos_ids.empty()) o.eos_ids = eos_ids_;
  std::vector<GenerationResult> out;
  if (prompts.empty()) return out;
  Detokenizer detok;
  if (tokenizer_)
    detok = [this](std::span<const int32_t> ids) { return tokenizer_->decode(ids, true); };
  const int64_t n = static_cast<int64_t>(prompts.size());
  const int64_t batch = std::min<int64_t>(n, std::max<int64_t>(1, setup_.max_batch));
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const std::vector<std::vector<int32_t>> chunk(prompts.begin() + b0,
                                                  prompts.begin() + std::min(n, b0 + batch));
    int64_t longest = 0;
    for (const auto& p : chunk) longest = std::max<int64_t>(longest, p.size());
    ensure_decoders(batch, longest + std::max<int64_t>(o.max_new_tokens, 1));
    std::vector<Decoder*> ds;
    for (auto& d : decoders_) ds.push_back(d.get());
    auto r = fitlm::generate(ds, chunk, o, detok, static_cast<uint64_t>(b0));
    out.insert(out.end(), std::make_move_iterator(r.begin()), std::make_move_iterator(r.end()));
  }
  return out;
}

}  // namespace fitlm
