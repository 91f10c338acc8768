// `fitlm dump`: one batch's logits, loss and every gradient into a safetensors file, for parity
// checks against a reference implementation and for debugging.
#include <algorithm>

#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/model_session.h"
#include "fitlm/cli/scored_rows.h"
#include "fitlm/core/error.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors.h"

namespace fitlm::cli {
namespace {

struct DumpOptions {
  ModelOptions model;
  std::string data, out, mode = "lora";
  bool recompute = false;
  int64_t logits_chunk = 1024;
};

int run_dump(const DumpOptions& o) {
  const auto rows = read_scored_rows(o.data);
  int64_t total = 0;
  for (const auto& r : rows) total += static_cast<int64_t>(r.input_ids.size());
  RunShape shape;
  shape.max_tokens = total;
  shape.logits_chunk = o.logits_chunk;
  shape.recompute = o.recompute ? RecomputePolicy::kFull : RecomputePolicy::kSave;
  const TrainMode mode = o.mode == "full" ? TrainMode::kFull : TrainMode::kLora;
  if (mode == TrainMode::kLora && o.model.adapter_dir.empty())
    throw_input_error("dump", "--mode lora needs --adapter (a fresh LoRA has B = 0)");
  ModelSession s = open_model(o.model, mode, shape);
  const HostBatch batch = pack_rows(rows, total).front();
  const std::vector<float> logits = s.model->logits(batch);
  s.model->zero_grads();
  // Mean over scored tokens, as HF's loss: grad_scale = 1 / tokens (counted by a first pass).
  const LossResult probe = s.model->forward_loss(batch);
  const LossResult r = s.model->forward_backward(
      batch, probe.tokens ? 1.0f / static_cast<float>(probe.tokens) : 0.0f);

  io::SafetensorsWriter w;
  const int64_t v = s.model->config().vocab_size;
  w.add_f32("logits", io::StDType::kF32, {total, v}, logits.data());
  const float loss[2] = {static_cast<float>(r.loss_sum / std::max<int64_t>(1, r.tokens)),
                         static_cast<float>(r.tokens)};
  w.add_f32("loss_and_tokens", io::StDType::kF32, {2}, loss);
  std::vector<std::vector<float>> host;
  host.reserve(s.model->params().size());
  for (const Param& p : s.model->params()) {
    // In the layout the PEFT file has (an expert LoRA B permuted), as the adapter was read.
    std::vector<float> g(static_cast<size_t>(p.grad.numel()));
    s.backend->download(p.grad, g.data());
    host.push_back(to_peft_layout(p, std::move(g)));
    const Shape shape = peft_shape(p);
    w.add_f32("grad." + p.name, io::StDType::kF32,
              {shape.dims.begin(), shape.dims.begin() + shape.ndim}, host.back().data());
  }
  w.write(o.out);
  fmt::print("loss {:.6f} over {} tokens; {} gradients written to {}\n", loss[0], r.tokens,
             s.model->params().size(), o.out);
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<DumpOptions>();
  o->model.add_to(app);
  app.add_option("--data", o->data, "JSONL rows {input_ids, labels}; all rows form one batch")
      ->required();
  app.add_option("--out", o->out, "Output .safetensors file")->required();
  app.add_option("--mode", o->mode, "lora (needs --adapter) or full")
      ->check(CLI::IsMember({"lora", "full"}))
      ->capture_default_str();
  app.add_flag("--recompute", o->recompute, "Recompute each layer in backward");
  app.add_option("--logits-chunk", o->logits_chunk, "Rows of logits per loss chunk")
      ->capture_default_str();
  return [o] { return run_dump(*o); };
}

CommandRegistration reg{"dump", "Write one batch's logits, loss and gradients (parity checks)",
                        setup};

}  // namespace
}  // namespace fitlm::cli
