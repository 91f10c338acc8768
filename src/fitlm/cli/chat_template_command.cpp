// `fitlm chat-template`: render conversations with a model's own chat template, as
// transformers' apply_chat_template(tokenize=False) does. Batch mode (--jsonl) renders many
// conversations in one process for the @huggingface/jinja parity test.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/paths.h"
#include "fitlm/text/chat_template.h"

namespace fitlm::cli {
namespace {

using OJson = nlohmann::ordered_json;

struct ChatTemplateOptions {
  std::string model, messages, jsonl, extra;
  bool add_generation_prompt = false;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error("chat-template", "{}: cannot open file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

OJson parse_json(const std::string& text, const std::string& where) {
  return json_input::parse_ordered(text, "chat-template", where);
}

ChatTemplate load_template(const std::string& model) {
  const bool dir = paths::is_directory(model, "chat-template");
  // tokenizer_config.json is checked here first so that any JSON error in it (a number out of
  // range too) is an input error naming the file.
  const std::filesystem::path config =
      dir ? std::filesystem::path(model) / "tokenizer_config.json" : std::filesystem::path(model);
  if (paths::exists(config, "chat-template")) json_input::parse_file(config, "chat-template");
  return json_input::read_fields("chat-template", config.string(), [&] {
    return dir ? ChatTemplate::from_model_dir(model) : ChatTemplate::from_tokenizer_config(model);
  });
}

// A case is a list of messages, or {"messages": [...], "add_generation_prompt": bool, ...}
// where every other key is a template variable (tools, enable_thinking, ...).
std::string render_case(const ChatTemplate& tmpl, const OJson& c, const ChatTemplateOptions& o,
                        const OJson& extra_base, const std::string& where) {
  OJson extra = extra_base;
  bool agp = o.add_generation_prompt;
  const OJson* messages = &c;
  if (c.is_object()) {
    if (!c.contains("messages"))
      throw_input_error("chat-template", "{}: expected a 'messages' field", where);
    messages = &c["messages"];
    for (auto it = c.begin(); it != c.end(); ++it) {
      if (it.key() == "messages") continue;
      if (it.key() == "add_generation_prompt")
        agp = it.value().is_boolean() && it.value().get<bool>();
      else
        extra[it.key()] = it.value();
    }
  }
  if (!messages->is_array())
    throw_input_error("chat-template", "{}: messages must be a JSON array", where);
  return tmpl.render_json(*messages, agp, extra);
}

int run_chat_template(const ChatTemplateOptions& o) {
  if (o.messages.empty() == o.jsonl.empty())
    throw_input_error("chat-template", "give exactly one of --messages and --jsonl");
  const ChatTemplate tmpl = load_template(o.model);
  const OJson extra = o.extra.empty() ? OJson::object() : parse_json(o.extra, "--extra");
  if (!extra.is_object()) throw_input_error("chat-template", "--extra must be a JSON object");
  if (!o.messages.empty()) {
    const std::string text =
        render_case(tmpl, parse_json(read_file(o.messages), o.messages), o, extra, o.messages);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::ifstream in(o.jsonl, std::ios::binary);
  if (!in) throw_input_error("chat-template", "{}: cannot open file", o.jsonl);
  std::string line, out;
  for (size_t n = 1; std::getline(in, line); ++n) {
    const std::string where = o.jsonl + ":" + std::to_string(n);
    const OJson c = parse_json(line, where);
    // A template's own errors (raise_exception, type errors) are results to compare, not
    // failures of the batch; they print as {"error": message}.
    OJson result;
    try {
      result = render_case(tmpl, c, o, extra, where);
    } catch (const Error& e) {
      if (e.code() != ExitCode::kBadInput) throw;
      result = OJson{{"error", e.what()}};
    }
    out += result.dump(-1, ' ', false, OJson::error_handler_t::replace) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

RunFn setup_chat_template(CLI::App& app) {
  auto o = std::make_shared<ChatTemplateOptions>();
  app.footer(
      "--model: a model directory (chat_template.jinja or tokenizer_config.json) or a\n"
      "tokenizer_config.json file. Variables passed to the template are those of transformers'\n"
      "apply_chat_template: messages, add_generation_prompt, tools (none), documents (none),\n"
      "the special tokens (bos_token, eos_token, ...), plus --extra.\n"
      "--messages FILE: a JSON list of messages (or {\"messages\": [...], VAR: value, ...});\n"
      "prints the rendered text as is.\n"
      "--jsonl FILE: one such case per line; prints one JSON string per line, or\n"
      "{\"error\": MESSAGE} for a case the template rejects.");
  app.add_option("--model", o->model, "Model directory or tokenizer_config.json")->required();
  app.add_option("--messages", o->messages, "JSON file with one conversation");
  app.add_option("--jsonl", o->jsonl, "Batch mode: one conversation per line");
  app.add_flag("--add-generation-prompt", o->add_generation_prompt,
               "Append the assistant prompt (default for --jsonl lines that do not say)");
  app.add_option("--extra", o->extra, "Extra template variables as a JSON object");
  return [o] { return run_chat_template(*o); };
}

CommandRegistration registration{
    "chat-template", "Render conversations with a model's chat template", setup_chat_template};

}  // namespace
}  // namespace fitlm::cli
