#include "fitlm/io/model_dir_files.h"

#include "fitlm/io/safetensors_index.h"

namespace fitlm::io {
namespace {

// Files a model directory carries besides its weights; copied as they are when present.
constexpr const char* kSideFiles[] = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
};

}  // namespace

std::vector<std::string> copy_side_files(const std::filesystem::path& from,
                                         const std::filesystem::path& to) {
  namespace fs = std::filesystem;
  std::vector<std::string> copied;
  for (const char* f : kSideFiles)
    if (fs::exists(from / f)) {
      fs::copy_file(from / f, to / f, fs::copy_options::overwrite_existing);
      copied.push_back(f);
    }
  return copied;
}

DType checkpoint_dtype(const ModelConfig& c, const ShardedSafetensors& st) {
  for (const char* key : {"torch_dtype", "dtype"})  // transformers v4 / v5 spellings
    if (c.raw.contains(key) && c.raw[key].is_string())
      if (const auto t = dtype_from_torch_name(c.raw[key].get<std::string>())) return *t;
  const auto& info = st.info("model.embed_tokens.weight");
  const auto core = to_core_dtype(info.dtype);
  return core && st_dtype_is_float_loadable(info.dtype) ? *core : DType::kF32;
}

const char* torch_dtype_name(DType t) {
  return t == DType::kBF16 ? "bfloat16" : t == DType::kF16 ? "float16" : "float32";
}

std::optional<DType> dtype_from_torch_name(const std::string& s) {
  if (s == "bfloat16") return DType::kBF16;
  if (s == "float16") return DType::kF16;
  if (s == "float32") return DType::kF32;
  return std::nullopt;
}

}  // namespace fitlm::io
