// `fitlm chat`: an interactive conversation over stdin. The whole conversation is rendered
// through the model's chat template each turn and prefilled again (simple and exact; the
// decoder's cache is reset per turn rather than extended).
#include <unistd.h>

#include <iostream>

#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/generation_options.h"
#include "fitlm/core/error.h"
#include "fitlm/infer/generation_session.h"

namespace fitlm::cli {
namespace {

struct ChatOptions {
  GenerationSetup setup;
  GenerationCliOptions gen;
  std::string system;
};

int run_chat(ChatOptions& o) {
  o.setup.max_batch = 1;
  GenerationSession s(o.setup);
  if (!s.tokenizer()) throw_input_error("chat", "{} has no tokenizer.json", s.model_dir().string());
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  const bool tty = isatty(0);
  if (tty) fmt::print(stderr, "fitlm chat: /reset clears the conversation, /exit or EOF ends\n");
  std::string line;
  for (uint64_t turn = 0;; ++turn) {
    if (tty) fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      messages.resize(o.system.empty() ? 0 : 1);
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({"user", line});
    // A fresh draw each turn, still reproducible: the seed is --seed + turn.
    const auto r = s.generate({s.encode_chat(messages)}, to_generation_options(o.gen, turn));
    fmt::print("{}\n", r[0].text);
    std::fflush(stdout);
    messages.push_back({"assistant", r[0].text});
  }
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  o->gen.max_new_tokens = 512;
  add_generation_setup(app, o->setup);
  app.add_option("--system", o->system, "System message");
  add_generation_options(app, o->gen);
  return [o] { return run_chat(*o); };
}

CommandRegistration reg{"chat", "Interactive chat over stdin with the model's chat template",
                        setup};

}  // namespace
}  // namespace fitlm::cli
