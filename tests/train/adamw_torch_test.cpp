// Our AdamW step (adamw_update: clipping + decoupled decay + bias correction) against
// torch.optim.AdamW + clip_grad_norm_ (PyTorch at /usr/bin/python3) on random tensors.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "fitlm/backend/backend.h"
#include "fitlm/train/optimizer.h"

namespace fitlm::train {
namespace {

constexpr const char* kScript = R"(
import sys, numpy as np, torch
d = sys.argv[1]; n = int(sys.argv[2]); steps = int(sys.argv[3])
p0 = torch.tensor(np.fromfile(d + '/p.bin', dtype=np.float32))
q0 = torch.tensor(np.fromfile(d + '/q.bin', dtype=np.float32))
g = np.fromfile(d + '/g.bin', dtype=np.float32).reshape(steps, 2, n)
p = torch.nn.Parameter(p0.clone()); q = torch.nn.Parameter(q0.clone())
opt = torch.optim.AdamW([{'params': [p], 'weight_decay': 0.1}, {'params': [q], 'weight_decay': 0.0}],
                        lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
for s in range(steps):
    p.grad = torch.tensor(g[s, 0]); q.grad = torch.tensor(g[s, 1])
    torch.nn.utils.clip_grad_norm_([p, q], 1.0)
    opt.step()
np.concatenate([p.detach().numpy(), q.detach().numpy()]).astype(np.float32).tofile(d + '/out.bin')
)";

TEST(AdamW, MatchesTorch) {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null") != 0)
    GTEST_SKIP() << "PyTorch not available";
  namespace fs = std::filesystem;
  const fs::path d = fs::temp_directory_path() / ("fitlm_adamw_" + std::to_string(::getpid()));
  fs::create_directories(d);
  const int n = 1000, steps = 4;
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> p(n), q(n), g(static_cast<size_t>(steps) * 2 * n);
  for (float& x : p) x = nd(rng);
  for (float& x : q) x = nd(rng);
  for (float& x : g) x = nd(rng) * 0.1f;  // norm ~4.5 > 1: clipping is exercised
  auto dump = [&](const char* name, const std::vector<float>& v) {
    std::ofstream(d / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  };
  dump("p.bin", p);
  dump("q.bin", q);
  dump("g.bin", g);
  std::ofstream(d / "ref.py") << kScript;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + (d / "ref.py").string() + " " + d.string() + " " +
                         std::to_string(n) + " " + std::to_string(steps))
                            .c_str()),
            0);

  auto be = make_backend("cpu");
  std::vector<float> pm(n, 0), pv(n, 0), qm(n, 0), qv(n, 0), gp(n), gq(n);
  auto t = [&](std::vector<float>& v) { return Tensor(v.data(), DType::kF32, Shape{n}); };
  std::vector<Param> params(2);
  params[0] = {"p", t(p), t(p), t(gp), t(pm), t(pv), true, {0, n}};
  params[1] = {"q", t(q), t(q), t(gq), t(qm), t(qv), false, {0, n}};
  for (int s = 0; s < steps; ++s) {
    std::copy_n(g.begin() + (2 * s) * n, n, gp.begin());
    std::copy_n(g.begin() + (2 * s + 1) * n, n, gq.begin());
    AdamWParams h;
    h.lr = 1e-2f;
    h.beta1 = 0.9f;
    h.beta2 = 0.95f;
    h.eps = 1e-8f;
    h.weight_decay = 0.1f;
    h.step = s + 1;
    adamw_update(*be, params, h, 1.0);
  }
  std::vector<float> ref(2 * n);
  std::ifstream(d / "out.bin", std::ios::binary)
      .read(reinterpret_cast<char*>(ref.data()), static_cast<std::streamsize>(ref.size() * 4));
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], ref[i], 1e-6f) << i;
    EXPECT_NEAR(q[i], ref[n + i], 1e-6f) << i;
  }
  fs::remove_all(d);
}

}  // namespace
}  // namespace fitlm::train
