#include "fitlm/io/merge.h"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <optional>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/bnb4bit.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/merge_moe.h"
#include "fitlm/io/model_dir_files.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/io/safetensors_index.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "merge";

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
  report.dtype = o.dtype.value_or(io::checkpoint_dtype(config, base));
  const io::StDType out_st = io::to_st_dtype(report.dtype);

  // Target weight name -> (layer, projection).
  std::map<std::string, std::pair<int, Projection>> targets;
  // A sparse layer (mixture of experts) has no dense MLP projections: gate/up/down targets
  // adapt only the dense layers (lora_for_model), so they are not looked for there.
  for (int l = 0; l < config.num_layers; ++l)
    for (Projection p : lora.targets)
      if (!(config.sparse_layer(l) && projection_in_mlp(p)))
        targets[fmt::format("model.layers.{}.{}.weight", l, projection_module(p))] = {l, p};

  // The routers and experts the adapter targets: base tensor name -> its part of a ΔW, computed
  // once per (layer, target) and kept until every base tensor it spans has taken its part.
  const std::map<std::string, io::MoeMergeTarget> moe_targets =
      io::moe_merge_targets(config, lora, base);
  std::map<std::pair<int, MoeTarget>, std::vector<float>> moe_deltas;
  std::vector<std::string> moe_used;  // the adapter tensors the deltas read

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
    // A 4-bit base (bitsandbytes layout) merges into a 16-bit model, as PEFT's merge on a
    // dequantized base: the companion tensors of a 4-bit weight are not copied.
    const size_t dot_weight = name.find(".weight.");
    if (dot_weight != std::string::npos &&
        io::is_bnb4bit_weight(base, name.substr(0, dot_weight + 7)))
      continue;
    const bool four_bit = io::is_bnb4bit_weight(base, name);
    io::SafetensorsTensorInfo info = base.info(name);
    std::optional<io::Bnb4bitWeight> q4;
    if (four_bit) {
      q4 = io::read_bnb4bit_weight(base, name);
      info.dtype = io::to_st_dtype(q4->dtype);
      info.shape = q4->shape;
    }
    const auto it = targets.find(name);
    const auto moe_it = moe_targets.find(name);
    const bool is_float = io::st_dtype_is_float_loadable(info.dtype);
    if (!four_bit && it == targets.end() && moe_it == moe_targets.end() &&
        (!is_float || info.dtype == out_st)) {
      // Untouched and already in the output dtype (or not a float): borrow the mapped bytes.
      entries.push_back(
          io::SafetensorsEntry::from_bytes(name, info.dtype, info.shape, base.bytes(name).data()));
      continue;
    }
    auto& w = *owned.emplace_back(std::make_unique<std::vector<float>>(info.numel()));
    if (q4)
      io::dequantize_bnb4bit(*q4, w);
    else
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
    if (moe_it != moe_targets.end()) {
      const io::MoeMergeTarget& m = moe_it->second;
      if (!(Shape(info.shape) == m.shape))
        throw_input_error(kComponent, "{}: weight '{}' has shape {}, the adapter implies {}",
                          model_dir.string(), name, Shape(info.shape).str(), m.shape.str());
      auto [d, fresh] = moe_deltas.try_emplace({m.layer, m.target});
      if (fresh) d->second = io::moe_lora_delta(config, lora, adapter, m.layer, m.target, moe_used);
      for (int64_t x = 0; x < m.shape.numel(); ++x)  // W += ΔW's part (its scale included)
        w[static_cast<size_t>(x)] += d->second[static_cast<size_t>(m.offset + x)];
      ++report.merged;
    }
    entries.push_back(io::SafetensorsEntry::from_f32(name, out_st, info.shape, w.data()));
  }
  adapter_used += moe_used.size();
  const size_t want = targets.size() + moe_targets.size();
  if (report.merged != static_cast<int>(want))
    throw_input_error(kComponent, "{}: {} of {} LoRA target weights are missing from {}",
                      model_dir.string(), want - report.merged, want, model_dir.string());
  if (adapter_used < adapter.tensors().size())
    log::warn("{}: {} tensors not merged (not LoRA A/B of a target)", adapter_path.string(),
              adapter.tensors().size() - adapter_used);

  fs::create_directories(out_dir);
  report.written = io::write_sharded(out_dir, entries, o.max_shard_bytes);
  nlohmann::json cfg = config.to_json();
  cfg.erase("quantization_config");  // the merged model is 16-bit
  cfg["torch_dtype"] = io::torch_dtype_name(report.dtype);
  if (cfg.contains("dtype")) cfg["dtype"] = io::torch_dtype_name(report.dtype);  // transformers v5
  io::write_file_atomic(out_dir / "config.json", cfg.dump(2) + "\n");
  report.copied = io::copy_side_files(model_dir, out_dir);
  return report;
}

}  // namespace fitlm
