#include "fitlm/text/dataset_mask.h"

#include <fmt/format.h>

#include <algorithm>

#include "fitlm/core/error.h"
#include "fitlm/text/batch.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm {

std::vector<int32_t> TokenizerCodec::encode(std::string_view text, bool add_special_tokens) const {
  return tok_.encode(text, add_special_tokens);
}
std::string TokenizerCodec::decode(std::span<const int32_t> ids) const {
  return tok_.decode(ids, /*skip_special_tokens=*/false);
}
bool TokenizerCodec::is_special(int32_t id) const {
  return tok_.is_special(id);
}
std::optional<int32_t> TokenizerCodec::eos_id() const {
  return tok_.eos_id();
}
std::optional<int32_t> TokenizerCodec::pad_id() const {
  return tok_.pad_id();
}
size_t TokenizerCodec::vocab_size() const {
  return tok_.vocab_size();
}

std::string alpaca_prompt_text(const std::string& instruction, const std::string& input) {
  // The Stanford Alpaca prompt, as axolotl's `alpaca` prompter writes it.
  if (input.empty())
    return "Below is an instruction that describes a task. Write a response that appropriately "
           "completes the request.\n\n### Instruction:\n" +
           instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides "
         "further context. Write a response that appropriately completes the request.\n\n"
         "### Instruction:\n" +
         instruction + "\n\n### Input:\n" + input + "\n\n### Response:\n";
}

namespace {

struct CharSpan {
  size_t begin, end;  // [begin, end) in the rendered text
};

// Token index of a character boundary in the whole encoding `ids` of `text`.
struct TokenBoundary {
  size_t index;  // tokens [0, index) lie entirely before the boundary
  bool exact;    // false: token `index` straddles the boundary
};

TokenBoundary token_boundary(std::string_view text, size_t pos, std::span<const int32_t> ids,
                             const TextCodec& codec, bool add_special_tokens) {
  if (pos >= text.size()) return {ids.size(), true};
  const std::vector<int32_t> head = codec.encode(text.substr(0, pos), add_special_tokens);
  size_t common = 0;
  while (common < head.size() && common < ids.size() && head[common] == ids[common]) ++common;
  return {common, common == head.size()};
}

std::string render_or_row_error(const ChatRenderFn& render, const std::vector<ChatMessage>& msgs,
                                bool add_generation_prompt) {
  try {
    return render(msgs, add_generation_prompt);
  } catch (const Error& e) {
    // raise_exception in a template (roles must alternate, ...) is a property of this row.
    if (e.code() != ExitCode::kBadInput) throw;
    throw RowError(BadRowReason::kTemplate, fmt::format("chat template: {}", e.what()));
  }
}

// Scores tokens overlapping `span`, stopping after the first special token (end of turn).
void score_span(const CharSpan& span, std::string_view text, std::span<const int32_t> ids,
                std::vector<int32_t>& labels, const TextCodec& codec, bool add_special_tokens,
                bool stop_at_special, int64_t& inexact) {
  if (span.end <= span.begin) return;
  const TokenBoundary b = token_boundary(text, span.begin, ids, codec, add_special_tokens);
  const TokenBoundary e = token_boundary(text, span.end, ids, codec, add_special_tokens);
  inexact += !b.exact;
  const size_t last = std::min(ids.size(), e.exact ? e.index : e.index + 1);
  for (size_t t = b.index; t < last; ++t) {
    labels[t] = ids[t];
    // The end boundary only matters when the scan reaches it.
    if (stop_at_special && codec.is_special(ids[t])) return;
  }
  inexact += !e.exact;
}

size_t common_prefix(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// Where assistant turn i may end in `full` (scoring also stops after its end-of-turn token).
// 1. render(messages[0..i]) is a prefix of the whole: it ends there (ChatML, Gemma, Llama-2).
// 2. else the renderings agree past the turn's start: up to where they part (Llama-3 templates
//    that always append the next header).
// 3. else the template renders a turn differently when it is the last message (Qwen3 adds an
//    empty think block there): bound by the rendering that includes the next message.
size_t turn_end(const std::vector<ChatMessage>& messages, size_t i, size_t start,
                const std::string& full, const ChatRenderFn& render) {
  const std::vector<ChatMessage> upto(messages.begin(), messages.begin() + i + 1);
  const std::string after = render_or_row_error(render, upto, false);
  const size_t agree = common_prefix(after, full);
  if (agree == after.size() || agree > start) return agree;
  if (i + 1 >= messages.size()) return full.size();
  const std::vector<ChatMessage> next(messages.begin(), messages.begin() + i + 2);
  return common_prefix(render_or_row_error(render, next, false), full);
}

MaskedTokens tokenize_chat(const std::vector<ChatMessage>& messages, const TextCodec& codec,
                           const ChatRenderFn& render, const MaskOptions& opt) {
  MaskedTokens out;
  out.rendered = render_or_row_error(render, messages, false);
  const std::string& full = out.rendered;
  out.input_ids = codec.encode(full, /*add_special_tokens=*/false);
  if (opt.train_on_inputs) {
    out.labels = out.input_ids;
    return out;
  }
  out.labels.assign(out.input_ids.size(), kIgnoreLabel);
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& roles = opt.roles_to_train;
    if (std::find(roles.begin(), roles.end(), messages[i].role) == roles.end()) continue;
    const std::vector<ChatMessage> head(messages.begin(), messages.begin() + i);
    const std::string before = render_or_row_error(render, head, true);
    if (full.compare(0, before.size(), before) != 0)
      throw RowError(BadRowReason::kTemplate,
                     fmt::format("chat template: rendering messages[0..{}) with the generation "
                                 "prompt is not a prefix of the whole conversation, so the "
                                 "answer of turn {} cannot be located",
                                 i, i));
    const size_t end = turn_end(messages, i, before.size(), full, render);
    score_span({before.size(), end}, full, out.input_ids, out.labels, codec, false, true,
               out.inexact_boundaries);
  }
  return out;
}

MaskedTokens tokenize_alpaca_text(const Sample& s, const TextCodec& codec, const MaskOptions& opt) {
  MaskedTokens out;
  const std::string prompt = alpaca_prompt_text(s.instruction, s.input);
  out.rendered = prompt + s.output;
  out.input_ids = codec.encode(out.rendered, /*add_special_tokens=*/true);
  out.labels.assign(out.input_ids.size(), kIgnoreLabel);
  if (opt.train_on_inputs)
    out.labels = out.input_ids;
  else
    score_span({prompt.size(), out.rendered.size()}, out.rendered, out.input_ids, out.labels, codec,
               true, false, out.inexact_boundaries);
  if (auto eos = codec.eos_id(); eos && (out.input_ids.empty() || out.input_ids.back() != *eos)) {
    out.input_ids.push_back(*eos);
    out.labels.push_back(*eos);
  }
  return out;
}

MaskedTokens tokenize_completion(const Sample& s, const TextCodec& codec) {
  MaskedTokens out;
  out.rendered = s.text;
  out.input_ids = codec.encode(s.text, /*add_special_tokens=*/true);
  if (auto eos = codec.eos_id(); eos && (out.input_ids.empty() || out.input_ids.back() != *eos))
    out.input_ids.push_back(*eos);
  out.labels = out.input_ids;
  return out;
}

MaskedTokens tokenize_pretokenized(const Sample& s, const TextCodec& codec) {
  MaskedTokens out;
  out.input_ids = s.input_ids;
  out.labels = s.labels.empty() ? s.input_ids : s.labels;
  const size_t vocab = codec.vocab_size();
  for (size_t i = 0; i < out.input_ids.size(); ++i)
    if (static_cast<size_t>(out.input_ids[i]) >= vocab)
      throw RowError(BadRowReason::kInvalidValue,
                     fmt::format("field 'input_ids[{}]': {} is outside the vocabulary (size {})", i,
                                 out.input_ids[i], vocab));
  for (size_t i = 0; i < out.labels.size(); ++i)
    if (out.labels[i] != kIgnoreLabel && static_cast<size_t>(out.labels[i]) >= vocab)
      throw RowError(BadRowReason::kInvalidValue,
                     fmt::format("field 'labels[{}]': {} is outside the vocabulary (size {})", i,
                                 out.labels[i], vocab));
  return out;
}

}  // namespace

MaskedTokens tokenize_sample(const Sample& sample, const TextCodec& codec,
                             const ChatRenderFn& render, const MaskOptions& options) {
  switch (sample.kind) {
    case Sample::Kind::kChat:
      if (!render)
        throw RowError(BadRowReason::kTemplate,
                       "the tokenizer has no chat_template (tokenizer_config.json), which "
                       "conversation rows need");
      return tokenize_chat(sample.messages, codec, render, options);
    case Sample::Kind::kAlpaca:
      return render ? tokenize_chat(sample.messages, codec, render, options)
                    : tokenize_alpaca_text(sample, codec, options);
    case Sample::Kind::kText: return tokenize_completion(sample, codec);
    case Sample::Kind::kTokens: return tokenize_pretokenized(sample, codec);
  }
  throw_internal_error("dataset", "unknown sample kind");
}

}  // namespace fitlm
