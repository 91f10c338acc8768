// A tokenizer directory: part 0 is tokenizer.json, part 1 (optional) tokenizer_config.json,
// part 2 (optional) a text. The tokenizer is loaded as Tokenizer::from_dir and the chat
// template looked up as datasets do; the text is encoded and decoded both ways, and its bytes
// are also decoded as token ids (ids from a pretokenized dataset or a user's prompt file).
#include <cstring>
#include <string>
#include <vector>

#include "fitlm/text/chat_template.h"
#include "fitlm/text/tokenizer.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  const auto parts = fuzz::split_parts(data, size);
  const fuzz::ScratchDir& dir = fuzz::scratch();
  dir.write("tokenizer.json", parts[0]);
  if (parts.size() > 1)
    dir.write("tokenizer_config.json", parts[1]);
  else
    dir.remove("tokenizer_config.json");
  const std::string_view text = parts.size() > 2 ? parts[2] : std::string_view("Hello world!");

  fuzz::expect_input_errors([&] { (void)ChatTemplate::find_in_model_dir(dir.path()); });
  fuzz::expect_input_errors([&] {
    const Tokenizer tok = Tokenizer::from_dir(dir.path());
    (void)tok.bos_id(), (void)tok.eos_id(), (void)tok.pad_id();
    (void)tok.bos_token(), (void)tok.eos_token();
    for (const bool special : {true, false}) {
      const std::vector<int32_t> ids = tok.encode(text, special);
      (void)tok.decode(ids, false);
      (void)tok.decode(ids, true, false);
      for (const int32_t id : ids) {
        if (static_cast<size_t>(id) >= tok.vocab_size())
          fuzz::report_finding("encode", "id >= vocab_size", std::to_string(id).c_str());
        (void)tok.id_to_token(id);
        (void)tok.is_special(id);
      }
    }
    (void)tok.token_to_id(text);
    // The text's bytes as int32 ids: any value, also negative and far beyond the vocab.
    std::vector<int32_t> raw(text.size() / 4);
    if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * 4);
    fuzz::expect_input_errors([&] { (void)tok.decode(raw, false); });
    fuzz::expect_input_errors([&] { (void)tok.decode(raw, true, true); });
    for (const int32_t id : raw) {
      fuzz::expect_input_errors([&] { (void)tok.id_to_token(id); });
      fuzz::expect_input_errors([&] { (void)tok.is_special(id); });
    }
  });
  return 0;
}
