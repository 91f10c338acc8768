#include "fitlm/cli/generation_options.h"

#include <memory>
#include <utility>

#include "fitlm/cli/quantize_option.h"

namespace fitlm::cli {

void add_generation_options(CLI::App& app, GenerationCliOptions& o) {
  app.add_option("--max-new-tokens", o.max_new_tokens, "Tokens to generate at most")
      ->capture_default_str();
  app.add_option("--temperature", o.temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens (0 = off)");
  app.add_option("--top-p", o.top_p, "Nucleus sampling mass (1 = off)");
  app.add_option("--repetition-penalty", o.repetition_penalty, "HF repetition penalty (1 = off)");
  app.add_option("--stop", o.stop, "Stop when the text contains this string (repeatable)");
  app.add_option("--seed", o.seed, "Sampling seed")->capture_default_str();
}

GenerationOptions to_generation_options(const GenerationCliOptions& o, uint64_t seed_offset) {
  GenerationOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.sampling.temperature = o.temperature;
  g.sampling.top_k = o.top_k;
  g.sampling.top_p = o.top_p;
  g.sampling.repetition_penalty = o.repetition_penalty;
  g.stop = o.stop;
  g.seed = static_cast<uint64_t>(o.seed) + seed_offset;
  return g;
}

void add_generation_setup(CLI::App& app, GenerationSetup& s) {
  app.add_option("--model", s.model_dir, "Hugging Face model directory")->required();
  app.add_option("--adapter", s.adapter_dirs,
                 "PEFT LoRA adapter directory (repeatable; several are summed unless --ensemble)");
  app.add_flag("--ensemble", s.ensemble,
               "Average the next-token log-probs of the adapters (one decoder each)");
  app.add_option("--backend", s.backend, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch-size", s.max_batch, "Prompts decoded together")->capture_default_str();
  auto quantize = std::make_shared<QuantizeOption>();
  quantize->add_to(app);
  app.parse_complete_callback([quantize, &s] { s.quantize = quantize->request(); });
}

std::vector<int32_t> encode_prompt(const GenerationSession& s, const std::string& text,
                                   std::vector<ChatMessage> messages, bool chat,
                                   const std::string& system) {
  if (!chat && messages.empty()) return s.encode(text, true);
  if (messages.empty()) messages.push_back({"user", text});
  return s.encode_chat(std::move(messages), system);
}

}  // namespace fitlm::cli
