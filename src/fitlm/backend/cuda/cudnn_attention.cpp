#include "fitlm/backend/cuda/cudnn_attention.h"

#include <limits>
#include <vector>

#include "fitlm/backend/backend.h"
#include "fitlm/backend/cuda/cudnn_graph.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"

namespace fitlm::cuda {

using cudnn::GraphBuilder;
using cudnn::Layout;

namespace {

// Unique ids of the tensors bound at execution.
enum Uid : int64_t {
  kQ = 1,
  kK,  // bound as Kᵀ
  kV,  // bound as V (forward) or Vᵀ (backward)
  kO,
  kStats,
  kDO,
  kDQ,
  kDK,
  kDV,
  kScale,
  kNegInf,
  kOne,
  kSoftmaxSum,  // backward: Σ_d dO·O per row, f32 in the caller's workspace
  kDQAccum,     // backward: f32 dQ accumulator in the caller's workspace
};

// [b·s, heads·d] token-major, seen as [b, heads, s, d] (or transposed in the last two dims).
Layout tokens(const SdpaShape& s, int heads) {
  const int64_t d = s.head_dim, hd = heads * d;
  return {{s.batch, heads, s.seq, d}, {s.seq * hd, d, hd, 1}};
}
Layout tokens_t(const SdpaShape& s, int heads) {
  const int64_t d = s.head_dim, hd = heads * d;
  return {{s.batch, heads, d, s.seq}, {s.seq * hd, d, 1, hd}};
}
Layout packed(const SdpaShape& s, int heads, int64_t inner) {  // [b, heads, s, inner] contiguous
  return {{s.batch, heads, s.seq, inner}, {heads * s.seq * inner, s.seq * inner, inner, 1}};
}
Layout rows(const SdpaShape& s) {
  return packed(s, s.heads, 1);
}
Layout scores(const SdpaShape& s) {
  return packed(s, s.heads, s.seq);
}
Layout scores_t(const SdpaShape& s) {
  const int64_t n = s.seq;
  return {{s.batch, s.heads, n, n}, {s.heads * n * n, n * n, 1, n}};
}
const Layout kScalar{{1, 1, 1, 1}, {1, 1, 1, 1}};

cudnnDataType_t io_type(const SdpaShape& s) {
  return s.f16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

// Top-left causal mask on scores x: keep column ≤ row, else the by-value kNegInf.
int64_t causal(GraphBuilder& g, const SdpaShape& s, int64_t x) {
  const int64_t row = g.virtual_tensor(CUDNN_DATA_INT32, scores(s));
  const int64_t col = g.virtual_tensor(CUDNN_DATA_INT32, scores(s));
  const int64_t keep = g.virtual_tensor(CUDNN_DATA_BOOLEAN, scores(s));
  const int64_t y = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, row, -1, -1, CUDNN_DATA_INT32, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, col, -1, -1, CUDNN_DATA_INT32, 3);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, keep, col, -1, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, y, kNegInf, keep);
  return y;
}

int64_t pointwise_to_virtual(GraphBuilder& g, cudnnPointwiseMode_t mode, const Layout& l, int64_t x,
                             int64_t b = -1, cudnnDataType_t dtype = CUDNN_DATA_FLOAT) {
  const int64_t y = g.virtual_tensor(dtype, l);
  g.pointwise(mode, x, y, b);
  return y;
}

// c = a·b, or with GQA (heads > kv_heads) a full-head product reduced over each head group.
void matmul_into_kv_heads(GraphBuilder& g, const SdpaShape& s, int64_t a, int64_t b, int64_t c) {
  if (s.heads == s.kv_heads) return g.matmul(a, b, c);
  const int64_t full = g.virtual_tensor(io_type(s), packed(s, s.heads, s.head_dim));
  g.matmul(a, b, full);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, full, c);
}

// The tensors both passes bind: q, kᵀ, v (transposed for the backward's dO·Vᵀ), out, lse and
// the by-value scale and −inf.
void declare_common(GraphBuilder& g, const SdpaShape& s, bool v_transposed) {
  const cudnnDataType_t io = io_type(s);
  g.tensor(kQ, io, tokens(s, s.heads));
  g.tensor(kK, io, tokens_t(s, s.kv_heads));
  g.tensor(kV, io, v_transposed ? tokens_t(s, s.kv_heads) : tokens(s, s.kv_heads));
  g.tensor(kO, io, tokens(s, s.heads));
  g.tensor(kStats, CUDNN_DATA_FLOAT, rows(s));
  g.tensor(kScale, CUDNN_DATA_FLOAT, kScalar, true);
  g.tensor(kNegInf, CUDNN_DATA_FLOAT, kScalar, true);
}

void build_forward(GraphBuilder& g, const SdpaShape& s) {
  declare_common(g, s, /*v_transposed=*/false);

  const int64_t qk = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(kQ, kK, qk);
  const int64_t scaled = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), qk, kScale);
  const int64_t masked = causal(g, s, scaled);
  const int64_t max = g.virtual_tensor(CUDNN_DATA_FLOAT, rows(s));
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, max);
  const int64_t shifted = pointwise_to_virtual(g, CUDNN_POINTWISE_SUB, scores(s), masked, max);
  const int64_t e = pointwise_to_virtual(g, CUDNN_POINTWISE_EXP, scores(s), shifted);
  const int64_t sum = g.virtual_tensor(CUDNN_DATA_FLOAT, rows(s));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  const int64_t log_sum = pointwise_to_virtual(g, CUDNN_POINTWISE_LOG, rows(s), sum);
  g.pointwise(CUDNN_POINTWISE_ADD, max, kStats, log_sum);  // lse = max + log Σ exp
  const int64_t p = pointwise_to_virtual(g, CUDNN_POINTWISE_DIV, scores(s), e, sum, io_type(s));
  g.matmul(p, kV, kO);
}

void build_backward(GraphBuilder& g, const SdpaShape& s) {
  const cudnnDataType_t io = io_type(s);
  declare_common(g, s, /*v_transposed=*/true);
  g.tensor(kDO, io, tokens(s, s.heads));
  g.tensor(kDQ, io, tokens(s, s.heads));
  g.tensor(kDK, io, tokens(s, s.kv_heads));
  g.tensor(kDV, io, tokens(s, s.kv_heads));
  g.tensor(kOne, CUDNN_DATA_FLOAT, kScalar, true);
  g.tensor(kSoftmaxSum, CUDNN_DATA_FLOAT, rows(s));
  g.tensor(kDQAccum, CUDNN_DATA_FLOAT, packed(s, s.heads, s.head_dim));

  // D_i = Σ_d dO·O.
  const int64_t do_o = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, tokens(s, s.heads), kDO, kO);
  const int64_t row_sum = g.virtual_tensor(CUDNN_DATA_FLOAT, rows(s));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, do_o, row_sum);
  g.pointwise(CUDNN_POINTWISE_MUL, row_sum, kSoftmaxSum, kOne);

  // P = exp(QKᵀ·scale − lse), causal.
  const int64_t qk = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(kQ, kK, qk);
  const int64_t scaled = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), qk, kScale);
  const int64_t centred = pointwise_to_virtual(g, CUDNN_POINTWISE_SUB, scores(s), scaled, kStats);
  const int64_t p = pointwise_to_virtual(g, CUDNN_POINTWISE_EXP, scores(s), causal(g, s, centred));

  // dV = Pᵀ·dO.
  const int64_t p_t = g.virtual_tensor(io, scores_t(s));
  g.reshape(p, p_t);
  matmul_into_kv_heads(g, s, p_t, kDO, kDV);

  // dS = P ∘ (dO·Vᵀ − D) · scale.
  const int64_t dp = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(kDO, kV, dp);
  const int64_t dp_d = pointwise_to_virtual(g, CUDNN_POINTWISE_SUB, scores(s), dp, kSoftmaxSum);
  const int64_t ds_raw = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), dp_d, p);
  const int64_t ds = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), ds_raw, kScale);

  // dK = dSᵀ·Q.
  const int64_t ds_t = g.virtual_tensor(io, scores_t(s));
  g.reshape(ds, ds_t);
  matmul_into_kv_heads(g, s, ds_t, kQ, kDK);

  // dQ = dS·K through the f32 accumulator.
  const int64_t k = g.virtual_tensor(io, tokens(s, s.kv_heads));
  g.reshape(kK, k);
  g.matmul(ds, k, kDQAccum);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, kDQAccum, kDQ);
}

// The caller's backward workspace (attention_workspace_elems f32): the dQ accumulator, the
// dO·O row sums, then the engine's own scratch (it asks for about another dQ accumulator).
struct BackwardWorkspace {
  explicit BackwardWorkspace(const SdpaShape& s) {
    const int64_t t = s.batch * s.seq;
    dq_accum_elems = t * s.heads * s.head_dim;
    engine_offset_bytes = ((dq_accum_elems + t * s.heads) * 4 + 255) / 256 * 256;
    total_elems = attention_workspace_elems(t, AttentionShape{s.heads, s.kv_heads, s.head_dim});
    engine_bytes = total_elems * 4 - engine_offset_bytes;
  }
  int64_t dq_accum_elems, engine_offset_bytes, total_elems, engine_bytes;
};

}  // namespace

struct CudnnAttention::Plans {
  GraphBuilder forward_graph, backward_graph;
  cudnn::ExecutionPlan forward, backward;
};

CudnnAttention::CudnnAttention(cudaStream_t stream, void* scratch, size_t scratch_bytes)
    : stream_(stream), scratch_(scratch), scratch_bytes_(scratch_bytes) {
  cudnn::check(cudnnCreate(&handle_), "create handle");
  cudnn::check(cudnnSetStream(handle_, stream_), "set stream");
}

CudnnAttention::~CudnnAttention() {
  plans_.clear();
  if (handle_) cudnnDestroy(handle_);
}

bool CudnnAttention::supports(const SdpaShape& s) {
  auto it = plans_.find(s);
  if (it != plans_.end()) return it->second != nullptr;
  // Unpacked batches of varying length would otherwise build plans (~0.1–1 s each) all run long.
  if (plans_.size() >= kMaxShapes) {
    if (plans_.size() == kMaxShapes)
      log::info("attention: {} cuDNN shapes planned; new shapes use fitlm's kernels", kMaxShapes);
    plans_[s] = nullptr;
    return false;
  }
  std::unique_ptr<Plans> p;
  try {
    p = std::make_unique<Plans>();
    build_forward(p->forward_graph, s);
    build_backward(p->backward_graph, s);
    p->forward = p->forward_graph.build(handle_);
    p->backward = p->backward_graph.build(handle_);
    if (p->forward.workspace_bytes > static_cast<int64_t>(scratch_bytes_))
      throw cudnn::CudnnUnsupported(
          "the forward plan needs " + std::to_string(p->forward.workspace_bytes) +
          " bytes of scratch, more than the backend's " + std::to_string(scratch_bytes_));
    const BackwardWorkspace ws(s);
    if (p->backward.workspace_bytes > ws.engine_bytes)
      throw cudnn::CudnnUnsupported(
          "the backward plan needs " + std::to_string(p->backward.workspace_bytes) +
          " bytes of scratch, more than the planned " + std::to_string(ws.engine_bytes));
    log::info(
        "attention: cuDNN {} fused SDPA for {} x {} tokens, {}/{} heads x {} ({}, {}; "
        "scratch {} + {} bytes)",
        cudnnGetVersion(), s.batch, s.seq, s.heads, s.kv_heads, s.head_dim, p->forward.engine,
        p->backward.engine, p->forward.workspace_bytes, p->backward.workspace_bytes);
  } catch (const cudnn::CudnnUnsupported& e) {
    log::warn(
        "attention: cuDNN cannot run {} x {} tokens, {}/{} heads x {}: {}; using fitlm's "
        "kernels",
        s.batch, s.seq, s.heads, s.kv_heads, s.head_dim, e.what());
    p.reset();
  }
  return (plans_[s] = std::move(p)) != nullptr;
}

CudnnAttention::Plans& CudnnAttention::plans(const SdpaShape& s) {
  const auto it = plans_.find(s);  // supports(s) built it
  FITLM_CHECK(it != plans_.end() && it->second, "cuda",
              "cuDNN attention used for an unsupported shape");
  return *it->second;
}

void CudnnAttention::forward(const SdpaShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                             float scale, const Tensor& out, const Tensor& lse) {
  const Plans& p = plans(s);
  float neg_inf = std::numeric_limits<float>::lowest();
  cudnn::execute(handle_, p.forward, {kQ, kK, kV, kO, kStats, kScale, kNegInf},
                 {q.data, k.data, v.data, out.data, lse.data, &scale, &neg_inf}, scratch_);
}

void CudnnAttention::backward(const SdpaShape& s, const Tensor& dout, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& lse, float scale, const Tensor& dq, const Tensor& dk,
                              const Tensor& dv, const Tensor& workspace) {
  const Plans& p = plans(s);
  const BackwardWorkspace ws(s);
  FITLM_CHECK(workspace.numel() >= ws.total_elems, "cuda",
              "cuDNN attention backward needs {} f32 of workspace, got {}", ws.total_elems,
              workspace.numel());
  float neg_inf = std::numeric_limits<float>::lowest(), one = 1.0f;
  float* dq_accum = static_cast<float*>(workspace.data);
  float* softmax_sum = dq_accum + ws.dq_accum_elems;
  void* engine_scratch = static_cast<char*>(workspace.data) + ws.engine_offset_bytes;
  cudnn::execute(
      handle_, p.backward,
      {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kScale, kNegInf, kOne, kSoftmaxSum, kDQAccum},
      {q.data, k.data, v.data, out.data, dout.data, lse.data, dq.data, dk.data, dv.data, &scale,
       &neg_inf, &one, softmax_sum, dq_accum},
      engine_scratch);
}

}  // namespace fitlm::cuda
