// A chat template and what it renders: part 0 is the Jinja source (tokenizer_config.json's
// chat_template or chat_template.jinja), part 1 (optional) the messages as HF takes them (any
// JSON; a fixed conversation when absent), part 2 (optional) extra variables (a JSON object:
// tools, documents, enable_thinking, ...). Rendered with and without the generation prompt.
#include <nlohmann/json.hpp>
#include <string>

#include "fitlm/text/chat_template.h"
#include "fuzz_common.h"

using namespace fitlm;
using OJson = nlohmann::ordered_json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_parts(data, size);
  OJson messages = OJson::array({{{"role", "system"}, {"content", "You are terse."}},
                                 {{"role", "user"}, {"content", "Hi"}},
                                 {{"role", "assistant"}, {"content", "Hello."}},
                                 {{"role", "user"}, {"content", "Bye"}}});
  OJson extra = OJson::object();
  // Messages and variables reach the template as parsed JSON (dataset rows, `fitlm chat`), so
  // text that is not JSON is not an input of the template engine.
  if (parts.size() > 1) messages = OJson::parse(parts[1], nullptr, /*allow_exceptions=*/false);
  if (parts.size() > 2) extra = OJson::parse(parts[2], nullptr, /*allow_exceptions=*/false);
  if (messages.is_discarded() || extra.is_discarded()) return 0;

  fuzz::expect_input_errors([&] {
    const ChatTemplate tmpl(std::string(parts[0]), "<s>", "</s>");
    for (const bool add_generation_prompt : {false, true})
      fuzz::expect_input_errors(
          [&] { (void)tmpl.render_json(messages, add_generation_prompt, extra); });
  });
  return 0;
}
