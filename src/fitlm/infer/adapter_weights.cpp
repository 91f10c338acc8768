#include "fitlm/infer/adapter_weights.h"

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm {
namespace {

// The incremental decoder applies LoRA to the attention and dense projections only; an adapter
// on the router or experts would be silently left out, so it is refused.
void refuse_moe_targets(const LoraConfig& lora, const std::string& what) {
  if (lora.moe_targets.empty()) return;
  throw_input_error("adapter",
                    "{}: LoRA on the router or experts ({}) is not applied by the incremental "
                    "decoder yet; merge the adapter into the model first (fitlm merge) and "
                    "generate from the merged model",
                    clip_path(what), moe_target_parameter(lora.moe_targets.front()));
}

}  // namespace

AdapterWeights AdapterWeights::from_model(const Transformer& model) {
  AdapterWeights w;
  w.scale = model.lora().scale();
  w.r = model.lora().r;
  const int n = model.config().num_layers;
  w.layers.resize(static_cast<size_t>(n));
  if (model.mode() != TrainMode::kLora) return w;
  // Adapters cast per layer have no value that outlives their layer's turn.
  if (model.arena().contains(kLoraLayer))
    throw_internal_error("adapter",
                         "adapters cast per layer (16-bit LoRA training) cannot serve a decoder; "
                         "load the saved adapter instead");
  refuse_moe_targets(model.lora(), "the model's adapter");
  for (int l = 0; l < n; ++l)
    for (Projection p : kAllProjections) {
      const LinearWeights& lw = model.layer(l)[p];
      w.layers[l][static_cast<int>(p)] = {lw.lora_a, lw.lora_b};
    }
  return w;
}

LoadedAdapter::LoadedAdapter(Backend& be, const ModelConfig& c, const std::filesystem::path& dir)
    : lora_(read_peft_config(dir)) {
  refuse_moe_targets(lora_, dir.string());
  const auto path = dir / "adapter_model.safetensors";
  const io::SafetensorsFile st = io::SafetensorsFile::open(path);
  AllocationPlan plan;
  for (int l = 0; l < c.num_layers; ++l)
    for (Projection p : lora_.targets) {
      const auto [out, in] = projection_shape(c, p);
      plan.add(peft_tensor_name(l, p, false), "adapter", Shape{lora_.r, in}, be.compute_dtype());
      plan.add(peft_tensor_name(l, p, true), "adapter", Shape{out, lora_.r}, be.compute_dtype());
    }
  plan.finalize();
  arena_ = std::make_unique<Arena>(be, std::move(plan));
  weights_.scale = lora_.scale();
  weights_.r = lora_.r;
  weights_.layers.resize(static_cast<size_t>(c.num_layers));
  size_t used = 0;
  for (const BufferSpec& spec : arena_->plan().buffers()) {
    std::string name = spec.name;
    if (!st.contains(name)) {  // older PEFT files keep the adapter name
      std::string alt = name;
      alt.replace(alt.rfind(".weight"), 7, ".default.weight");
      if (st.contains(alt)) name = alt;
    }
    if (!st.contains(name))
      throw_input_error("adapter", "{}: tensor '{}' is missing", path.string(), spec.name);
    const auto& info = st.info(name);
    if (!(Shape(info.shape) == spec.shape))
      throw_input_error("adapter", "{}: tensor '{}' has shape {}, the model expects {}",
                        path.string(), name, Shape(info.shape).str(), spec.shape.str());
    const auto core = io::to_core_dtype(info.dtype);
    if (!core || !io::st_dtype_is_float_loadable(info.dtype))
      throw_input_error("adapter", "{}: tensor '{}' must be F32, BF16 or F16", path.string(), name);
    be.upload(arena_->get(spec.name), st.bytes(name).data(), *core);
    ++used;
  }
  if (used < st.tensors().size())
    log::warn("{}: {} tensors not used by the model", path.string(), st.tensors().size() - used);
  for (int l = 0; l < c.num_layers; ++l)
    for (Projection p : lora_.targets)
      weights_.layers[l][static_cast<int>(p)] = {arena_->get(peft_tensor_name(l, p, false)),
                                                 arena_->get(peft_tensor_name(l, p, true))};
}

}  // namespace fitlm
