// `fitlm generate`: text from a model (+ LoRA adapters, or an ensemble of them) for one prompt or
// a JSONL file of prompts, with a KV cache (infer/decoder.h) and HF-style sampling.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/generation_options.h"
#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/infer/generation_session.h"
#include "fitlm/text/chat_template.h"

namespace fitlm::cli {
namespace {

struct GenerateOptions {
  GenerationSetup setup;
  std::string prompt, prompts_file, prompt_ids, system;
  bool chat = false, json = false;
  GenerationCliOptions gen;
};

// One prompt as the user gave it: text, chat messages, or raw token ids.
struct PromptSpec {
  std::string text;
  std::vector<ChatMessage> messages;
  std::vector<int32_t> ids;
  nlohmann::json original;  // echoed in --json output
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      ids.push_back(std::stoi(item));
    } catch (const std::exception&) {
      throw_input_error("generate", "--prompt-ids: '{}' is not an integer", clip(item));
    }
  }
  return ids;
}

std::vector<PromptSpec> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_input_error("generate", "cannot open {}", path);
  std::vector<PromptSpec> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    if (auto error = json_input::try_parse(line, j))
      throw_input_error("generate", "{}:{}: not valid JSON: {}", clip_path(path), n, *error);
    PromptSpec p;
    p.original = j;
    if (j.is_object() && j.contains("prompt") && j["prompt"].is_string()) {
      p.text = j["prompt"].get<std::string>();
    } else if (j.is_object() && j.contains("messages") && j["messages"].is_array()) {
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m.contains("content") ||
            !m["role"].is_string() || !m["content"].is_string())
          throw_input_error("generate", "{}:{}: each message needs string role and content",
                            clip_path(path), n);
        p.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
    } else if (j.is_object() && j.contains("input_ids") && j["input_ids"].is_array()) {
      for (const auto& v : j["input_ids"]) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
          throw_input_error("generate", "{}:{}: field 'input_ids': {} is not a token id",
                            clip_path(path), n, clip(v.dump()));
        p.ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
    } else {
      throw_input_error("generate",
                        "{}:{}: expected a JSON object with \"prompt\", \"messages\" or "
                        "\"input_ids\"",
                        path, n);
    }
    out.push_back(std::move(p));
  }
  return out;
}

int run_generate(GenerateOptions& o) {
  const int given = !o.prompt.empty() + !o.prompts_file.empty() + !o.prompt_ids.empty();
  if (given != 1)
    throw_input_error("generate", "give exactly one of --prompt, --prompts or --prompt-ids");
  GenerationSession s(o.setup);
  std::vector<PromptSpec> specs;
  if (!o.prompts_file.empty()) {
    specs = read_prompts(o.prompts_file);
  } else {
    PromptSpec p;
    if (!o.prompt_ids.empty()) p.ids = parse_ids(o.prompt_ids);
    p.text = o.prompt;
    p.original = o.prompt_ids.empty() ? nlohmann::json(o.prompt) : nlohmann::json(p.ids);
    specs.push_back(std::move(p));
  }
  std::vector<std::vector<int32_t>> prompts;
  for (const PromptSpec& p : specs)
    prompts.push_back(p.ids.empty() ? encode_prompt(s, p.text, p.messages, o.chat, o.system)
                                    : p.ids);
  const auto results = s.generate(prompts, to_generation_options(o.gen));
  for (size_t i = 0; i < results.size(); ++i) {
    const GenerationResult& r = results[i];
    if (o.json) {
      nlohmann::json j = {{"index", i},
                          {"prompt", specs[i].original},
                          {"text", r.text},
                          {"tokens", r.tokens},
                          {"finish_reason", r.finish_reason}};
      fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      if (results.size() > 1) fmt::print("=== {} ===\n", i);
      fmt::print("{}\n", s.tokenizer() ? r.text : fmt::format("{}", fmt::join(r.tokens, " ")));
    }
  }
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  add_generation_setup(app, o->setup);
  app.add_option("--prompt", o->prompt, "Prompt text");
  app.add_option("--prompts", o->prompts_file,
                 "JSONL file: rows {\"prompt\": str} or {\"messages\": [{role, content}]} or "
                 "{\"input_ids\": [...]}");
  app.add_option("--prompt-ids", o->prompt_ids, "Prompt as comma-separated token ids");
  app.add_flag("--chat", o->chat, "Render prompts through the model's chat template");
  app.add_option("--system", o->system, "System message (with --chat)");
  add_generation_options(app, o->gen);
  app.add_flag("--json", o->json,
               "One JSON line per prompt {index, prompt, text, tokens, "
               "finish_reason}");
  return [o] { return run_generate(*o); };
}

CommandRegistration reg{
    "generate", "Generate text with a KV cache (adapters, ensembles, chat template)", setup};

}  // namespace
}  // namespace fitlm::cli
