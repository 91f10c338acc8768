// `fitlm merge`: a PEFT LoRA adapter folded into its base model, written as a HF model directory.
#include "fitlm/cli/command_registry.h"
#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"
#include "fitlm/io/merge.h"

namespace fitlm::cli {
namespace {

struct MergeCliOptions {
  std::string model, adapter, out, dtype, max_shard_size = "5GB";
};

int run_merge(const MergeCliOptions& o) {
  MergeOptions m;
  if (o.dtype == "bf16") m.dtype = DType::kBF16;
  if (o.dtype == "f16") m.dtype = DType::kF16;
  if (o.dtype == "f32") m.dtype = DType::kF32;
  m.max_shard_bytes = parse_byte_size(o.max_shard_size);
  const MergeReport r = merge_lora(o.model, o.adapter, o.out, m);
  fmt::print("merged {} LoRA weights into {} ({}): {} safetensors file(s){}{}\n", r.merged, o.out,
             dtype_name(r.dtype), r.written.size(), r.copied.empty() ? "" : "; copied ",
             fmt::join(r.copied, ", "));
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<MergeCliOptions>();
  app.add_option("--model", o->model, "Base Hugging Face model directory")->required();
  app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory")->required();
  app.add_option("--out", o->out, "Output model directory")->required();
  app.add_option("--dtype", o->dtype, "Stored dtype of the merged model (default: the base's)")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}));
  app.add_option("--max-shard-size", o->max_shard_size,
                 "Largest safetensors shard (e.g. 5GB, 500MiB); larger models get an index")
      ->capture_default_str();
  return [o] { return run_merge(*o); };
}

CommandRegistration reg{"merge", "Merge a LoRA adapter into its base model (HF model directory)",
                        setup};

}  // namespace
}  // namespace fitlm::cli
