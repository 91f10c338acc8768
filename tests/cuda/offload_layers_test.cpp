// Offloaded layers on CUDA (RunShape::offload_layers): every layer's weights in pinned host
// memory, copied into one of two device buffers on the transfer stream while the layer before
// computes (Backend::copy_async). The copy changes where the bytes are read from, not what the
// kernels compute, so a model with offloaded layers must give exactly the resident model's
// losses and LoRA gradients, bit for bit: a copy that ran late, or into the buffer a layer was
// still reading, would show up as different numbers. 16-bit and 4-bit bases, with and without
// recompute, five layers (so both buffers are reused several times, and the first and last
// layer share one), two micro-batches. The same for offloaded activations (the layer inputs).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "cuda_test_util.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "random_model_dir.h"

using namespace fitlm;
namespace fs = std::filesystem;

namespace {

struct Outputs {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;
};

Outputs run(Backend& be, const fs::path& dir, std::optional<Base4Layout> base4, bool recompute,
            bool offload, bool offload_activations = false) {
  RunShape shape;
  shape.max_tokens = 120;
  shape.logits_chunk = 64;
  shape.with_optimizer = true;
  shape.base4 = base4;
  shape.recompute = recompute ? RecomputePolicy::kFull : RecomputePolicy::kSave;
  shape.offload_layers = offload;
  shape.offload_activations = offload_activations;
  LoraConfig lora;
  lora.r = 8;
  lora.alpha = 16;
  Transformer m(be, read_model_config(dir), TrainMode::kLora, lora, shape);
  load_model_weights(m, dir);
  m.init_lora(5);
  // B = 0 after init would leave A's gradient zero: give every adapter values.
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 0.05f);
  for (Param& p : m.params()) {
    std::vector<float> h(static_cast<size_t>(p.full_master().numel()));
    for (float& v : h) v = n(rng);
    be.upload(p.full_master(), h.data(), DType::kF32);
    if (p.full_master().data != p.value.data) be.copy(p.full_master(), p.value);
  }
  Outputs out;
  std::mt19937 ids(9);
  for (const std::vector<int32_t>& cu : {std::vector<int32_t>{0, 37, 101, 120}, {0, 64}}) {
    TokenBatch b;
    b.cu_seqlens = cu;
    for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(ids() % 1003));
    b.labels = b.input_ids;
    out.losses.push_back(m.forward_backward(b, 1.0f / static_cast<float>(cu.back())).loss_sum);
  }
  for (Param& p : m.params()) {
    out.grads.emplace_back(static_cast<size_t>(p.grad.numel()));
    be.download(p.grad, out.grads.back().data());
  }
  return out;
}

TEST(CudaOffloadLayers, OffloadedLayersComputeExactlyAsResidentOnes) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = cuda_test::write_random_model("offload_exact");
  auto be = make_cuda_backend(0, DType::kBF16);
  for (const std::optional<Base4Layout>& base4 :
       {std::optional<Base4Layout>{}, std::optional<Base4Layout>{Base4Layout{}}})
    for (bool recompute : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "base4=" << base4.has_value() << " recompute=" << recompute);
      const Outputs want = run(*be, dir, base4, recompute, false);
      const Outputs got = run(*be, dir, base4, recompute, true);
      EXPECT_EQ(got.losses, want.losses);
      ASSERT_EQ(got.grads.size(), want.grads.size());
      for (size_t i = 0; i < got.grads.size(); ++i) EXPECT_EQ(got.grads[i], want.grads[i]) << i;
      for (double l : got.losses) EXPECT_TRUE(std::isfinite(l));
    }
  fs::remove_all(dir);
}

// Offloaded activations (RunShape::offload_activations): each layer's input leaves for host
// memory on the transfer stream while the next layer computes, and comes back one layer ahead in
// backward. An input read before its copy back completed, or overwritten before its copy out
// completed, changes the gradients: they must equal the resident run's bit for bit, alone and
// with offloaded weights sharing the transfer stream.
TEST(CudaOffloadActivations, OffloadedInputsComputeExactlyAsResidentOnes) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = cuda_test::write_random_model("offload_act");
  auto be = make_cuda_backend(0, DType::kBF16);
  for (const std::optional<Base4Layout>& base4 :
       {std::optional<Base4Layout>{}, std::optional<Base4Layout>{Base4Layout{}}})
    for (bool recompute : {false, true})
      for (bool weights : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "base4=" << base4.has_value() << " recompute="
                                          << recompute << " weights offloaded=" << weights);
        const Outputs want = run(*be, dir, base4, recompute, false);
        const Outputs got = run(*be, dir, base4, recompute, weights, /*offload_activations=*/true);
        EXPECT_EQ(got.losses, want.losses);
        ASSERT_EQ(got.grads.size(), want.grads.size());
        for (size_t i = 0; i < got.grads.size(); ++i) EXPECT_EQ(got.grads[i], want.grads[i]) << i;
      }
  fs::remove_all(dir);
}

}  // namespace
