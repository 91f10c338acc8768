// Pipeline stages on CUDA (RunShape::stage): the five-layer model split into 2 and 3 stages in
// one process, hidden states and gradients handed over by device copies (what a Comm's send/recv
// moves between GPUs), each stage running the 1F1B schedule. The stages run the same kernels on
// the same values as the whole model, so losses and every LoRA gradient must equal the whole
// model's bit for bit, in bf16, with and without recompute, for a 16-bit and a 4-bit base.
#include <gtest/gtest.h>

#include <map>

#include "../model/random_checkpoint.h"
#include "cuda_test_util.h"
#include "fitlm/dist/pipeline_schedule.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/model/transformer.h"
#include "random_model_dir.h"

using namespace fitlm;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kTokens = 96;

std::unique_ptr<Transformer> make(Backend& be, const fs::path& dir,
                                  std::optional<Base4Layout> base4, bool recompute,
                                  std::optional<RunShape::Stage> stage) {
  RunShape shape;
  shape.max_tokens = kTokens;
  shape.logits_chunk = 64;
  shape.with_optimizer = true;
  shape.base4 = base4;
  shape.recompute = recompute ? RecomputePolicy::kFull : RecomputePolicy::kSave;
  shape.stage = stage;
  LoraConfig lora;
  lora.r = 8;
  lora.alpha = 16;
  auto m = std::make_unique<Transformer>(be, read_model_config(dir), TrainMode::kLora, lora, shape);
  load_model_weights(*m, dir);
  test::randomize_params_by_name(be, *m, 0.05f);  // by name: a stage gets the whole model's
  return m;
}

std::vector<TokenBatch> micro_batches() {
  std::mt19937 ids(9);
  std::vector<TokenBatch> out;
  for (const std::vector<int32_t>& cu :
       {std::vector<int32_t>{0, 37, 96}, {0, 64}, {0, 96}, {0, 20, 41, 80}}) {
    TokenBatch b;
    b.cu_seqlens = cu;
    for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(ids() % 1003));
    b.labels = b.input_ids;
    out.push_back(b);
  }
  return out;
}

struct Outputs {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> grads;
};

void collect(Backend& be, Transformer& m, Outputs& out) {
  for (Param& p : m.params()) {
    std::vector<float>& g = out.grads[p.name];
    g.resize(static_cast<size_t>(p.grad.numel()));
    be.download(p.grad, g.data());
  }
}

Outputs run_pipeline(Backend& be, std::vector<std::unique_ptr<Transformer>>& stages,
                     const std::vector<TokenBatch>& micro) {
  const int n = static_cast<int>(stages.size());
  const int mb = static_cast<int>(micro.size());
  std::vector<std::vector<dist::PipelineOp>> program;
  for (int s = 0; s < n; ++s) program.push_back(dist::one_f_one_b(s, n, mb));
  std::vector<size_t> pc(static_cast<size_t>(n), 0);
  Outputs out;
  out.losses.assign(micro.size(), 0.0);
  // Device-to-device copies stand in for send/recv; a producer's output buffer is reused by its
  // next pass, so each hand-over happens right before the consumer's op, as with blocking comms.
  std::vector<std::map<int, std::vector<float>>> hidden(n), grad(n);
  for (bool moved = true; moved;) {
    moved = false;
    for (int s = 0; s < n; ++s) {
      if (pc[s] == program[s].size()) continue;
      const dist::PipelineOp op = program[s][pc[s]];
      const TokenBatch& b = micro[static_cast<size_t>(op.micro)];
      const int64_t t = static_cast<int64_t>(b.input_ids.size());
      Transformer& m = *stages[s];
      if (op.forward && s > 0 && !hidden[s - 1].count(op.micro)) continue;
      if (!op.forward && !grad[s + 1].count(op.micro)) continue;
      auto take = [&](const Tensor& t_dev) {
        std::vector<float> h(static_cast<size_t>(t_dev.numel()));
        be.download(t_dev, h.data());
        return h;
      };
      if (op.forward) {
        if (s > 0)
          be.upload(m.stage_input(op.slot, t), hidden[s - 1][op.micro].data(), DType::kF32);
        if (s + 1 == n) {
          out.losses[static_cast<size_t>(op.micro)] =
              m.forward_backward(b, 1.0f / static_cast<float>(t)).loss_sum;
          grad[s][op.micro] = take(m.stage_gradient(t));
        } else {
          m.stage_forward(b, op.slot, true);
          hidden[s][op.micro] = take(m.stage_output(t));
        }
      } else {
        be.upload(m.stage_gradient(t), grad[s + 1][op.micro].data(), DType::kF32);
        m.stage_backward(b, op.slot);
        grad[s][op.micro] = take(m.stage_gradient(t));
      }
      ++pc[s];
      moved = true;
    }
  }
  for (int s = 0; s < n; ++s) EXPECT_EQ(pc[s], program[s].size());
  for (auto& m : stages) collect(be, *m, out);
  return out;
}

TEST(CudaPipelineStages, StagesComputeExactlyWhatTheWholeModelComputes) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = cuda_test::write_random_model("pipeline");
  auto be = make_cuda_backend(0, DType::kBF16);
  const std::vector<TokenBatch> micro = micro_batches();
  for (const std::optional<Base4Layout>& base4 :
       {std::optional<Base4Layout>{}, std::optional<Base4Layout>{Base4Layout{}}})
    for (bool recompute : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "base4=" << base4.has_value() << " recompute=" << recompute);
      Outputs want;
      {
        auto whole = make(*be, dir, base4, recompute, std::nullopt);
        for (const TokenBatch& b : micro)
          want.losses.push_back(
              whole->forward_backward(b, 1.0f / static_cast<float>(b.input_ids.size())).loss_sum);
        collect(*be, *whole, want);
      }
      for (const std::vector<int>& sizes : {std::vector<int>{3, 2}, {2, 2, 1}}) {
        std::vector<std::unique_ptr<Transformer>> stages;
        int first = 0;
        for (size_t s = 0; s < sizes.size(); ++s) {
          const int in_flight =
              dist::one_f_one_b_in_flight(static_cast<int>(s), static_cast<int>(sizes.size()), 4);
          stages.push_back(make(*be, dir, base4, recompute,
                                RunShape::Stage{first, first + sizes[s], in_flight}));
          first += sizes[s];
        }
        const Outputs got = run_pipeline(*be, stages, micro);
        EXPECT_EQ(got.losses, want.losses) << sizes.size() << " stages";
        ASSERT_EQ(got.grads.size(), want.grads.size());
        for (const auto& [name, g] : want.grads) EXPECT_EQ(got.grads.at(name), g) << name;
      }
    }
  fs::remove_all(dir);
}

}  // namespace
