// `fitlm score-generations`: accuracy of generated answers on labelled rows, by exact match or by
// the first choice letter A–E (multiple-choice evaluation as in the seeds' VQA tasks).
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/generation_options.h"
#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/infer/generation_session.h"

namespace fitlm::cli {
namespace {

struct ScoreOptions {
  GenerationSetup setup;
  GenerationCliOptions gen;
  std::string data, match = "exact", system, predictions;
  bool chat = false;
};

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

// The first choice letter A–E: a leading letter not followed by another letter ("B", "B)",
// "B. cat"), else the first standalone capital A–E ("The answer is C."). "" when none.
std::string extract_choice(const std::string& text) {
  const std::string t = trim(text);
  auto is_letter = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; };
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c < 'A' || c > 'E') continue;
    const bool left = i == 0 || !is_letter(t[i - 1]);
    const bool right = i + 1 == t.size() || !is_letter(t[i + 1]);
    if (left && right) return std::string(1, c);
  }
  return "";
}

namespace {

int run_score(ScoreOptions& o) {
  std::ifstream in(o.data);
  if (!in) throw_input_error("score-generations", "cannot open {}", o.data);
  GenerationSession s(o.setup);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> answers;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (trim(line).empty()) continue;
    nlohmann::json j;
    if (auto error = json_input::try_parse(line, j))
      throw_input_error("score-generations", "{}:{}: not valid JSON: {}", clip_path(o.data), n,
                        *error);
    if (!j.is_object() || !j.contains("answer"))
      throw_input_error("score-generations", "{}:{}: expected an object with \"answer\"",
                        clip_path(o.data), n);
    std::vector<ChatMessage> messages;
    std::string prompt;
    if (j.contains("messages") && j["messages"].is_array()) {
      for (const auto& m : j["messages"]) {
        auto text = [&](const char* key) -> std::string {
          if (!m.is_object() || !m.contains(key)) return "";
          if (!m[key].is_string())
            throw_input_error("score-generations", "{}:{}: field 'messages[].{}' must be a string",
                              clip_path(o.data), n, key);
          return m[key].get<std::string>();
        };
        messages.push_back({text("role"), text("content")});
      }
    } else if (j.contains("prompt") && j["prompt"].is_string()) {
      prompt = j["prompt"].get<std::string>();
    } else {
      throw_input_error("score-generations", "{}:{}: needs \"prompt\" or \"messages\"", o.data, n);
    }
    prompts.push_back(encode_prompt(s, prompt, std::move(messages), o.chat, o.system));
    answers.push_back(j["answer"].is_string() ? j["answer"].get<std::string>()
                                              : j["answer"].dump());
  }
  const auto results = s.generate(prompts, to_generation_options(o.gen));
  std::ofstream pred;
  if (!o.predictions.empty()) pred.open(o.predictions);
  int64_t correct = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string got =
        o.match == "choice" ? extract_choice(results[i].text) : trim(results[i].text);
    const std::string want = o.match == "choice" ? extract_choice(answers[i]) : trim(answers[i]);
    const bool ok = !want.empty() && got == want;
    correct += ok;
    if (pred)
      pred << nlohmann::json{{"index", i},
                             {"output", results[i].text},
                             {"extracted", got},
                             {"answer", answers[i]},
                             {"correct", ok}}
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
           << "\n";
  }
  const double acc = results.empty() ? 0.0 : static_cast<double>(correct) / results.size();
  fmt::print(
      "{}\n",
      nlohmann::json{
          {"accuracy", acc}, {"correct", correct}, {"total", results.size()}, {"match", o.match}}
          .dump());
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<ScoreOptions>();
  o->gen.max_new_tokens = 32;
  add_generation_setup(app, o->setup);
  app.add_option("--data", o->data,
                 "JSONL rows {\"prompt\": str | \"messages\": [...], \"answer\": str}")
      ->required();
  app.add_option("--match", o->match, "exact (trimmed text) or choice (first letter A-E)")
      ->check(CLI::IsMember({"exact", "choice"}))
      ->capture_default_str();
  app.add_flag("--chat", o->chat, "Render prompts through the chat template (messages always are)");
  app.add_option("--system", o->system, "System message (chat prompts)");
  app.add_option("--predictions", o->predictions, "Write each output and verdict to this JSONL");
  add_generation_options(app, o->gen);
  return [o] { return run_score(*o); };
}

CommandRegistration reg{"score-generations",
                        "Generation accuracy on labelled rows (exact match or choice letter)",
                        setup};

}  // namespace
}  // namespace fitlm::cli
