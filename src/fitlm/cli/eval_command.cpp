// `fitlm eval`: token-weighted mean loss and perplexity of a model (+ adapter) on scored rows.
#include <algorithm>
#include <cmath>

#include "fitlm/cli/command_registry.h"
#include "fitlm/cli/model_session.h"
#include "fitlm/cli/scored_rows.h"
#include "fitlm/core/log.h"

namespace fitlm::cli {
namespace {

struct EvalOptions {
  ModelOptions model;
  std::string data;
  int64_t batch_tokens = 4096;
  bool json = false;
};

int run_eval(const EvalOptions& o) {
  const auto rows = read_scored_rows(o.data);
  int64_t longest = 0;
  for (const auto& r : rows) longest = std::max<int64_t>(longest, r.input_ids.size());
  RunShape shape;
  shape.max_tokens = std::max(o.batch_tokens, longest);
  ModelSession s = open_model(o.model, TrainMode::kFrozen, shape);
  LossResult total;
  for (const HostBatch& b : pack_rows(rows, shape.max_tokens)) {
    const LossResult r = s.model->forward_loss(b);
    total.loss_sum += r.loss_sum;
    total.tokens += r.tokens;
  }
  const double loss = total.tokens ? total.loss_sum / static_cast<double>(total.tokens) : NAN;
  if (o.json) {
    fmt::print("{{\"loss\": {:.9g}, \"tokens\": {}, \"ppl\": {:.9g}}}\n", loss, total.tokens,
               std::exp(loss));
  } else {
    fmt::print("loss {:.6f}  ppl {:.4f}  over {} scored tokens in {} rows\n", loss,
               std::exp(loss), total.tokens, rows.size());
  }
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  o->model.add_to(app);
  app.add_option("--data", o->data,
                 "JSONL rows {\"input_ids\": [...], \"labels\": [...]} (labels optional, -100 = "
                 "not scored; aligned with input_ids, the model shifts by one)")
      ->required();
  app.add_option("--batch-tokens", o->batch_tokens, "Tokens per forward pass")
      ->capture_default_str();
  app.add_flag("--json", o->json, "Print one JSON line {loss, tokens, ppl}");
  return [o] { return run_eval(*o); };
}

CommandRegistration reg{"eval", "Score a model (and adapter) on a dataset: mean loss, perplexity",
                        setup};

}  // namespace
}  // namespace fitlm::cli
