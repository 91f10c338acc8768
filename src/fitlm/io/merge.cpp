#include "fitlm/io/merge.h"

#include <fmt/format.h>

#include <map>
#include <memory>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/io/safetensors_index.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "merge";

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

DType default_dtype(const ModelConfig& c, const io::ShardedSafetensors& base) {
  std::string td;
  for (const char* key : {"torch_dtype", "dtype"})  // transformers v4 / v5 spellings
    if (td.empty() && c.raw.contains(key) && c.raw[key].is_string()) td = c.raw[key];
  if (td == "bfloat16") return DType::kBF16;
  if (td == "float16") return DType::kF16;
  if (td == "float32") return DType::kF32;
  const auto core = io::to_core_dtype(base.info("model.embed_tokens.weight").dtype);
  return core && io::st_dtype_is_float_loadable(base.info("model.embed_tokens.weight").dtype)
             ? *core
             : DType::kF32;
}

const char* torch_dtype_name(DType t) {
  return t == DType::kBF16 ? "bfloat16" : t == DType::kF16 ? "float16" : "float32";
}

}  // namespace

MergeReport merge_lora(const std::filesystem::path& model_dir,
                       const std::filesystem::path& adapter_dir,
                       const std::filesystem::path& out_dir, const MergeOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (paths::exists(out_dir, kComponent) && fs::equivalent(out_dir, model_dir, ec))
    throw_input_error(kComponent, "--out {} is the base model directory; choose a new one",
                      clip_path(out_dir.string()));
  const ModelConfig config = read_model_config(model_dir);
  check_model_weights(config, model_dir);

  const LoraConfig lora = read_peft_config(adapter_dir);
  const io::ShardedSafetensors base = io::ShardedSafetensors::open(model_dir);
  const auto adapter_path = adapter_dir / "adapter_model.safetensors";
  const io::SafetensorsFile adapter = io::SafetensorsFile::open(adapter_path);

  MergeReport report;
  report.dtype = o.dtype.value_or(default_dtype(config, base));
  const io::StDType out_st = io::to_st_dtype(report.dtype);

  // Target weight name -> (layer, projection).
  std::map<std::string, std::pair<int, Projection>> targets;
  for (int l = 0; l < config.num_layers; ++l)
    for (Projection p : lora.targets)
      targets[fmt::format("model.layers.{}.{}.weight", l, projection_module(p))] = {l, p};

  auto adapter_name = [&](int l, Projection p, bool is_b) {
    std::string name = peft_tensor_name(l, p, is_b);
    if (adapter.contains(name)) return name;
    std::string alt = name;  // older PEFT files keep the adapter name
    alt.replace(alt.rfind(".weight"), 7, ".default.weight");
    if (adapter.contains(alt)) return alt;
    throw_input_error(kComponent, "{}: tensor '{}' is missing", adapter_path.string(), name);
  };

  CpuBackend cpu;                                          // host GEMM for B·A (OpenBLAS)
  std::vector<std::unique_ptr<std::vector<float>>> owned;  // alive until write_sharded returns
  std::vector<io::SafetensorsEntry> entries;
  size_t adapter_used = 0;
  for (const std::string& name : base.names()) {
    const io::SafetensorsTensorInfo& info = base.info(name);
    const auto it = targets.find(name);
    const bool is_float = io::st_dtype_is_float_loadable(info.dtype);
    if (it == targets.end() && (!is_float || info.dtype == out_st)) {
      // Untouched and already in the output dtype (or not a float): borrow the mapped bytes.
      entries.push_back(
          io::SafetensorsEntry::from_bytes(name, info.dtype, info.shape, base.bytes(name).data()));
      continue;
    }
    auto& w = *owned.emplace_back(std::make_unique<std::vector<float>>(info.numel()));
    base.read_f32(name, w.data());
    if (it != targets.end()) {
      const auto [l, p] = it->second;
      const std::string an = adapter_name(l, p, false), bn = adapter_name(l, p, true);
      const auto& ai = adapter.info(an);
      const auto& bi = adapter.info(bn);
      if (info.shape.size() != 2 || ai.shape != std::vector<int64_t>{lora.r, info.shape[1]} ||
          bi.shape != std::vector<int64_t>{info.shape[0], lora.r})
        throw_input_error(kComponent,
                          "{}: '{}' {} and '{}' {} do not fit weight '{}' {} with r = {}",
                          adapter_path.string(), an, Shape(ai.shape).str(), bn,
                          Shape(bi.shape).str(), name, Shape(info.shape).str(), lora.r);
      std::vector<float> a(ai.numel()), b(bi.numel());
      adapter.read_f32(an, a.data());
      adapter.read_f32(bn, b.data());
      // Merged in f32 from the stored base values; rounded once, on write, to the out dtype.
      const Tensor ta(a.data(), DType::kF32, Shape(ai.shape));
      const Tensor tb(b.data(), DType::kF32, Shape(bi.shape));
      const Tensor tw(w.data(), DType::kF32, Shape(info.shape));
      cpu.gemm(tb, false, ta, false, tw, lora.scale(), 1.0f);  // W += s·B·A
      adapter_used += 2;
      ++report.merged;
    }
    entries.push_back(io::SafetensorsEntry::from_f32(name, out_st, info.shape, w.data()));
  }
  if (report.merged != static_cast<int>(targets.size()))
    throw_input_error(kComponent, "{}: {} of {} LoRA target weights are missing from {}",
                      model_dir.string(), targets.size() - report.merged, targets.size(),
                      model_dir.string());
  if (adapter_used < adapter.tensors().size())
    log::warn("{}: {} tensors not merged (not LoRA A/B of a target)", adapter_path.string(),
              adapter.tensors().size() - adapter_used);

  fs::create_directories(out_dir);
  report.written = io::write_sharded(out_dir, entries, o.max_shard_bytes);
  nlohmann::json cfg = config.to_json();
  cfg["torch_dtype"] = torch_dtype_name(report.dtype);
  if (cfg.contains("dtype")) cfg["dtype"] = torch_dtype_name(report.dtype);  // transformers v5
  io::write_file_atomic(out_dir / "config.json", cfg.dump(2) + "\n");
  for (const char* f : kSideFiles)
    if (fs::exists(model_dir / f)) {
      fs::copy_file(model_dir / f, out_dir / f, fs::copy_options::overwrite_existing);
      report.copied.push_back(f);
    }
  return report;
}

}  // namespace fitlm
