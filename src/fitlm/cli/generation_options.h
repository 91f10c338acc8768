// Options shared by `fitlm generate`, `fitlm chat` and `fitlm score-generations`: the model
// setup (--model, --adapter, --ensemble, --backend, --batch-size), the sampling options
// (--max-new-tokens, --temperature, --top-k, --top-p, --repetition-penalty, --stop, --seed) and
// how a prompt becomes token ids. One definition, so the three commands cannot drift apart.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "fitlm/infer/generate.h"
#include "fitlm/infer/generation_session.h"
#include "fitlm/text/chat_template.h"

namespace fitlm::cli {

// The generation options as given on the command line. Defaults are those of the infer layer
// (GenerationOptions, SamplingParams); a command may change a default (chat: 512 new tokens)
// before add_generation_options, and --help then shows its own default.
struct GenerationCliOptions {
  int64_t max_new_tokens = GenerationOptions{}.max_new_tokens;
  float temperature = SamplingParams{}.temperature;
  int top_k = SamplingParams{}.top_k;
  float top_p = SamplingParams{}.top_p;
  float repetition_penalty = SamplingParams{}.repetition_penalty;
  std::vector<std::string> stop;
  int64_t seed = 0;  // signed as CLI11 parses it; used modulo 2^64
};

// Adds --max-new-tokens --temperature --top-k --top-p --repetition-penalty --stop --seed.
void add_generation_options(CLI::App& app, GenerationCliOptions& o);

// The infer layer's options (eos_ids left empty: the session's). seed_offset is added to the
// seed (chat: a fresh, still reproducible draw each turn).
GenerationOptions to_generation_options(const GenerationCliOptions& o, uint64_t seed_offset = 0);

// Adds --model (required) --adapter --ensemble --backend --batch-size.
void add_generation_setup(CLI::App& app, GenerationSetup& s);

// A prompt's ids: the chat template renders `messages` (or the text as one user message when
// `chat`), with `system` prepended when given; otherwise the text as tokenizer(text) encodes it.
std::vector<int32_t> encode_prompt(const GenerationSession& s, const std::string& text,
                                   std::vector<ChatMessage> messages, bool chat,
                                   const std::string& system);

}  // namespace fitlm::cli
