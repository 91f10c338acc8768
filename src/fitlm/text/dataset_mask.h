// Tokenization with answer-only loss masks (axolotl `train_on_inputs: false`,
// `roles_to_train: [assistant]`, `train_on_eos: turn`).
//
// Rules, chosen to reproduce what the Python stack feeds the model:
// - Chat rows (sharegpt, messages, alpaca when a chat template exists) are rendered with the
//   model's template and the *whole* rendering is tokenized once with add_special_tokens=false,
//   as HF's apply_chat_template(tokenize=True) does: the template writes BOS itself, so the
//   post-processor must not add a second one. input_ids are therefore exactly
//   encode(render(messages), add_special_tokens=false).
// - Assistant character spans come from prefix renderings: turn i starts where
//   render(messages[0..i), add_generation_prompt=true) ends (a row where that is not a prefix
//   of the whole rendering is a bad row, reason "template") and runs to where
//   render(messages[0..i]) stops agreeing with the whole rendering; for templates that render
//   the last message differently (Qwen3's think block), to where the rendering that includes
//   message i+1 stops agreeing.
// - Char spans map to tokens by tokenizing the text before each boundary: when that is a token
//   prefix of the whole encoding the boundary is exact (the usual case: boundaries follow
//   special tokens and newlines). Otherwise a token straddles it and is scored (it overlaps the
//   span, as offset-mapping masks do); such boundaries are counted, not hidden.
// - Within a span, scoring stops after the first special token (the end-of-turn token:
//   <|eot_id|>, <|im_end|>, <end_of_turn>, </s>): it is scored, whatever the template writes
//   after it (a newline, the next header) is not. Consequence: assistant content that contains
//   special-token text ends the scored part there.
// - Alpaca without a chat template: "### Instruction:\n{instruction}\n\n[### Input:\n{input}\n\n]
//   ### Response:\n" + output, encoded with add_special_tokens=true (BOS per the tokenizer),
//   then EOS appended; the output and EOS are scored.
// - completion: encode(text, add_special_tokens=true) + EOS (unless already last); all scored.
// - pretokenized: ids as given; labels as given or = input_ids.
// - train_on_inputs=true scores every token.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fitlm/text/chat_template.h"
#include "fitlm/text/dataset_format.h"

namespace fitlm {

class Tokenizer;

// What masking needs from a tokenizer; an interface so tests can use a tiny fake one and so
// this file does not depend on how Tokenizer is built.
class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual std::optional<int32_t> pad_id() const = 0;
  virtual size_t vocab_size() const = 0;
};

class TokenizerCodec final : public TextCodec {
 public:
  explicit TokenizerCodec(const Tokenizer& tokenizer) : tok_(tokenizer) {}
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  bool is_special(int32_t id) const override;
  std::optional<int32_t> eos_id() const override;
  std::optional<int32_t> pad_id() const override;
  size_t vocab_size() const override;

 private:
  const Tokenizer& tok_;
};

// Renders messages with the model's chat template (ChatTemplate::render, or a fake in tests).
using ChatRenderFn =
    std::function<std::string(const std::vector<ChatMessage>&, bool add_generation_prompt)>;
// Keeps a reference to tmpl. Inline so that only code that renders links ChatTemplate.
inline ChatRenderFn chat_render_fn(const ChatTemplate& tmpl) {
  return [&tmpl](const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    return tmpl.render(messages, add_generation_prompt);
  };
}

struct MaskOptions {
  bool train_on_inputs = false;
  std::vector<std::string> roles_to_train = {"assistant"};
};

struct MaskedTokens {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;     // -100 where not scored
  std::string rendered;            // the text that was tokenized ("" for pretokenized rows)
  int64_t inexact_boundaries = 0;  // span boundaries that fell inside a token
};

// The alpaca prompt used when the tokenizer has no chat template (text before the output).
std::string alpaca_prompt_text(const std::string& instruction, const std::string& input);

// Tokenizes one sample and builds its labels (no truncation). `render` may be empty when the
// model has no chat template: chat rows are then a RowError (template), alpaca uses the prompt
// text above. Throws RowError for rows that cannot be rendered.
MaskedTokens tokenize_sample(const Sample& sample, const TextCodec& codec,
                             const ChatRenderFn& render, const MaskOptions& options);

}  // namespace fitlm
