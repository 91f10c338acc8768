// Hugging Face `tokenizer.json` tokenizers (BPE: byte-level and SentencePiece-style; Unigram:
// SentencePiece's, e.g. T5), producing exactly the ids that `tokenizers` / transformers.js
// produce; and SentencePiece Unigram `.model` files, read as transformers' T5Converter would
// convert them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fitlm {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (bos/eos/pad tokens,
  // add_bos_token/add_eos_token, chat_template is read by ChatTemplate). Without tokenizer.json,
  // DIR/spiece.model or DIR/tokenizer.model (SentencePiece) is read instead.
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // Whether DIR holds a file from_dir reads (tokenizer.json, spiece.model, tokenizer.model).
  static bool dir_has_tokenizer(const std::filesystem::path& dir);
  // Reads one tokenizer.json; config optional.
  static Tokenizer from_files(const std::filesystem::path& tokenizer_json,
                              const std::optional<std::filesystem::path>& tokenizer_config = {});
  // Reads a SentencePiece Unigram .model (sentencepiece_model.h says what it becomes); config
  // optional (its extra_ids, 100 by default, adds T5's <extra_id_N> tokens).
  static Tokenizer from_sentencepiece(
      const std::filesystem::path& model_file,
      const std::optional<std::filesystem::path>& tokenizer_config = {});
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special_tokens: apply the post-processor (e.g. BOS), as HF's encode() default does.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts,
                                                 bool add_special_tokens = true,
                                                 int threads = 0) const;
  // Applies clean_up_tokenization_spaces as tokenizer_config.json says (default true), like
  // transformers and transformers.js.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // As above, choosing the clean-up explicitly (false gives the lossless decode).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens,
                     bool clean_up_tokenization_spaces) const;

  std::string id_to_token(int32_t id) const;  // the vocab string ("Ġthe")
  std::optional<int32_t> token_to_id(std::string_view token) const;
  size_t vocab_size() const;  // including added tokens
  bool is_special(int32_t id) const;

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  std::string bos_token() const;  // "" when none
  std::string eos_token() const;
  // tokenizer_config.json clean_up_tokenization_spaces (true when absent).
  bool clean_up_tokenization_spaces() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  static Tokenizer from_json(const nlohmann::json& root, const std::string& source,
                             const std::optional<std::filesystem::path>& tokenizer_config);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fitlm
