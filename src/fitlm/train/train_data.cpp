#include "fitlm/train/train_data.h"

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/text/chat_template.h"
#include "fitlm/text/dataset_split.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "train";

// The codec of pretokenized data when the model has no tokenizer: there is no text to encode,
// and ids are checked against the model's embedding (vocab_size) instead of a vocabulary.
class EmbeddingIdsCodec final : public TextCodec {
 public:
  explicit EmbeddingIdsCodec(const ModelConfig& c) : c_(c) {}
  std::vector<int32_t> encode(std::string_view, bool) const override {
    throw_internal_error(kComponent, "pretokenized data has no text to encode");
  }
  std::string decode(std::span<const int32_t>) const override { return {}; }
  bool is_special(int32_t) const override { return false; }
  std::optional<int32_t> eos_id() const override {
    if (c_.eos_token_ids.empty()) return std::nullopt;
    return c_.eos_token_ids.front();
  }
  std::optional<int32_t> pad_id() const override { return std::nullopt; }
  size_t vocab_size() const override { return static_cast<size_t>(c_.vocab_size); }

 private:
  const ModelConfig& c_;
};

}  // namespace

TrainData load_train_data(const TrainConfig& c, const ModelConfig& model_config) {
  const std::filesystem::path model_dir = c.base_model;
  // Pretokenized data needs no tokenizer: without tokenizer.json its ids are checked against
  // the embedding. Every other type tokenizes text.
  bool all_pretokenized = true;
  for (const auto* list : {&c.datasets, &c.test_datasets})
    for (const DatasetSource& s : *list) all_pretokenized &= s.type == DatasetType::kPretokenized;
  std::optional<Tokenizer> tok;
  if (!all_pretokenized || Tokenizer::dir_has_tokenizer(model_dir)) {
    if (!Tokenizer::dir_has_tokenizer(model_dir))
      throw_input_error(kComponent,
                        "{}: base_model {} has no tokenizer.json (nor spiece.model), which "
                        "datasets that are not pretokenized need to be tokenized",
                        clip_path(c.config_path.string()), clip_path(model_dir.string()));
    tok.emplace(Tokenizer::from_dir(model_dir));
    check_tokenizer_fits(*tok, model_config, model_dir);
  }
  std::optional<TokenizerCodec> tok_codec;
  if (tok) tok_codec.emplace(*tok);

  const EmbeddingIdsCodec ids_codec(model_config);
  const TextCodec& codec = tok_codec ? static_cast<const TextCodec&>(*tok_codec) : ids_codec;
  // The net names tokenizer_config.json for JSON type errors the template reader lets escape.
  const std::optional<ChatTemplate> tmpl =
      all_pretokenized
          ? std::nullopt
          : json_input::read_fields(kComponent, (model_dir / "tokenizer_config.json").string(),
                                    [&] { return ChatTemplate::find_in_model_dir(model_dir); });
  const ChatRenderFn render = tmpl ? chat_render_fn(*tmpl) : ChatRenderFn{};
  auto load_all = [&](const std::vector<DatasetSource>& sources) {
    std::vector<Example> out;
    for (const DatasetSource& s : sources) {
      DatasetOptions o;
      o.type = s.type;
      o.sequence_len = c.sequence_len;
      o.train_on_inputs = c.train_on_inputs;
      o.on_bad_row = parse_on_bad_row(c.on_bad_row);
      o.file_format = s.file_format;
      Dataset d = load_dataset(s.path, o, codec, render);
      log::info("dataset {}: {}", s.path.string(), d.summary.to_string());
      for (auto& e : d.examples) out.push_back(std::move(e));
    }
    return out;
  };
  TrainData data;
  data.train = load_all(c.datasets);
  if (!c.test_datasets.empty()) {
    data.eval = load_all(c.test_datasets);
  } else if (c.val_set_size > 0 && data.train.size() >= 2) {
    const SplitIndices s =
        split_by_fraction(static_cast<int64_t>(data.train.size()), c.val_set_size, c.seed);
    data.eval = select_indices(data.train, s.eval);
    data.train = select_indices(data.train, s.train);
  }
  if (data.train.empty())
    throw_input_error(kComponent, "no training examples left after loading the datasets");
  data.pad_id = codec.pad_id().value_or(codec.eos_id().value_or(0));
  return data;
}

BatchOptions batch_options(const TrainConfig& c, int32_t pad_id, bool shuffle) {
  BatchOptions o;
  o.sequence_len = c.sequence_len;
  o.micro_batch_size = c.micro_batch_size;
  o.sample_packing = c.sample_packing;
  o.pad_to_sequence_len = c.pad_to_sequence_len;
  o.pad_id = pad_id;
  o.shuffle = shuffle;
  o.seed = c.seed;
  return o;
}

}  // namespace fitlm::train
