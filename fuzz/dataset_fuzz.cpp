// A dataset file as `fitlm train` and `fitlm data inspect` read it. The first line picks the
// options, the rest is the file:
//   <format> <type> [train_on_inputs] [skip] [short] [notemplate]
// format: jsonl | json | csv (the file's extension; json may hold JSON Lines too), type: alpaca
// | sharegpt | messages | completion | pretokenized; `short` sets sequence_len to 16 (else 512),
// `notemplate` loads it as for a model without a chat template. Unknown words are ignored.
// Rows are tokenized with a small real byte-level BPE tokenizer and rendered with the ChatML
// template (both fixed here, not fuzzed: tokenizer_fuzz and chat_template_fuzz do that), then
// batched with and without packing.
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "fitlm/text/byte_level.h"
#include "fitlm/text/chat_template.h"
#include "fitlm/text/dataset.h"
#include "fitlm/text/pack.h"
#include "fitlm/text/tokenizer.h"
#include "fuzz_common.h"

using namespace fitlm;

namespace {

constexpr const char* kChatMl =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

// GPT-2 style: the 256 byte-level characters, a few merges, ChatML special tokens.
Tokenizer make_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  auto piece = [](std::string_view bytes) {
    std::string s;
    byte_level::encode(bytes, s);
    return s;
  };
  for (int b = 0; b < 256; ++b) vocab[piece(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json merges = nlohmann::json::array();
  int next = 256;
  for (const char* pair : {" |t", "h|e", " t|he", "i|n", " |a", "e|r", "o|n", " |s", "e|n"}) {
    const std::string p(pair);
    const size_t bar = p.find('|');
    const std::string a = piece(p.substr(0, bar)), b = piece(p.substr(bar + 1));
    merges.push_back(a + " " + b);
    vocab[a + b] = next++;
  }
  nlohmann::json added = nlohmann::json::array();
  for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", next++}, {"content", t}, {"special", true}});
  const nlohmann::json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  const nlohmann::json config = {{"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"}};
  const fuzz::ScratchDir& dir = fuzz::scratch();
  dir.write("tokenizer.json", tokenizer.dump());
  dir.write("tokenizer_config.json", config.dump());
  return Tokenizer::from_dir(dir.path());
}

struct Fixture {
  Tokenizer tokenizer = make_tokenizer();
  TokenizerCodec codec{tokenizer};
  ChatTemplate chatml{kChatMl, "", "<|im_end|>"};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::quiet_logs();
  static const Fixture fx;
  std::string_view input = fuzz::as_text(data, size);
  const size_t nl = input.find('\n');
  std::istringstream header(std::string(input.substr(0, nl)));
  const std::string_view text = nl == std::string_view::npos ? "" : input.substr(nl + 1);

  std::string format = "jsonl";
  DatasetOptions options;
  options.sequence_len = 512;
  options.type = DatasetType::kAlpaca;
  bool with_template = true;
  for (std::string word; header >> word;) {
    if (word == "jsonl" || word == "json" || word == "csv") format = word;
    for (const auto t : {DatasetType::kAlpaca, DatasetType::kShareGpt, DatasetType::kMessages,
                         DatasetType::kCompletion, DatasetType::kPretokenized})
      if (word == dataset_type_name(t)) options.type = t;
    if (word == "train_on_inputs") options.train_on_inputs = true;
    if (word == "skip") options.on_bad_row = OnBadRow::kSkip;
    if (word == "short") options.sequence_len = 16;
    if (word == "notemplate") with_template = false;
  }
  const auto path = fuzz::scratch().write("rows." + format, text);
  const ChatRenderFn render = with_template ? chat_render_fn(fx.chatml) : ChatRenderFn{};

  fuzz::expect_input_errors([&] {
    const Dataset ds = load_dataset(path, options, fx.codec, render);
    (void)ds.summary.to_string();
    for (const Example& e : ds.examples) {
      if (e.input_ids.size() != e.labels.size() ||
          static_cast<int64_t>(e.input_ids.size()) > options.sequence_len)
        fuzz::report_finding("dataset", "example shape", std::to_string(e.line).c_str());
    }
    for (const bool packing : {false, true}) {
      BatchOptions b;
      b.sequence_len = options.sequence_len;
      b.micro_batch_size = 2;
      b.sample_packing = packing;
      b.pad_id = fx.tokenizer.pad_id().value_or(0);
      Batcher batcher(ds.examples, b);
      for (int64_t i = 0, n = batcher.batches_in_epoch(0); i < n; ++i) (void)batcher.next();
    }
  });
  return 0;
}
