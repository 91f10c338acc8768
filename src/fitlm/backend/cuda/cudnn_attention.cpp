#include "fitlm/backend/cuda/cudnn_attention.h"

#include <bit>
#include <limits>
#include <vector>

#include "fitlm/backend/backend.h"
#include "fitlm/backend/cuda/cuda_check.h"
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
  // Ragged form only: real lengths (int32 [b]) and segment starts in elements (int64 [b + 1]).
  kSeqQ,
  kSeqKV,
  kRaggedQ,      // q, o, dO, dQ, dQ accumulator
  kRaggedKV,     // k, v, dK, dV
  kRaggedStats,  // stats, dO·O row sums
  // Ragged GQA backward: full-head dK/dV before the head-group reduction, token-major in the
  // caller's workspace (a virtual one would make the engine keep [b, heads, s, d] f32 scratch,
  // b·s = bucket × T: several times the planned workspace).
  kDKFull,
  kDVFull,
};

// [b·s, heads·d] token-major, seen as [b, heads, s, d] (or transposed in the last two dims). In
// the ragged form the batch stride is unused: each entry starts at its ragged offset.
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
// Per-row f32 (stats, dO·O sums): dense [b, heads, s]; ragged token-major [T, heads].
Layout rows(const SdpaShape& s) {
  if (s.ragged) return {{s.batch, s.heads, s.seq, 1}, {s.seq * s.heads, 1, s.heads, 1}};
  return packed(s, s.heads, 1);
}
// The f32 dQ accumulator: dense [b, heads, s, d]; ragged token-major like dQ.
Layout dq_accum(const SdpaShape& s) {
  return s.ragged ? tokens(s, s.heads) : packed(s, s.heads, s.head_dim);
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

// The ragged-offset uid of a tensor group, or none in the dense form.
int64_t ragged(const SdpaShape& s, Uid which) {
  return s.ragged ? int64_t{which} : int64_t{-1};
}
int64_t seq_q(const SdpaShape& s) {
  return s.ragged ? int64_t{kSeqQ} : int64_t{-1};
}
int64_t seq_kv(const SdpaShape& s) {
  return s.ragged ? int64_t{kSeqKV} : int64_t{-1};
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

// Ragged form: keep row < seq_len_q and column < seq_len_kv of each batch entry, else kNegInf
// (cudnn_frontend's padding mask; it comes before the causal mask, as there).
int64_t padding(GraphBuilder& g, const SdpaShape& s, int64_t x) {
  if (!s.ragged) return x;
  const int64_t row = g.virtual_tensor(CUDNN_DATA_INT32, scores(s));
  const int64_t col = g.virtual_tensor(CUDNN_DATA_INT32, scores(s));
  const int64_t row_ok = g.virtual_tensor(CUDNN_DATA_BOOLEAN, scores(s));
  const int64_t col_ok = g.virtual_tensor(CUDNN_DATA_BOOLEAN, scores(s));
  const int64_t keep = g.virtual_tensor(CUDNN_DATA_BOOLEAN, scores(s));
  const int64_t y = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, row, -1, -1, CUDNN_DATA_INT32, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, col, -1, -1, CUDNN_DATA_INT32, 3);
  g.pointwise(CUDNN_POINTWISE_CMP_LT, row, row_ok, kSeqQ, -1, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_LT, col, col_ok, kSeqKV, -1, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, row_ok, keep, col_ok, -1, CUDNN_DATA_BOOLEAN);
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
// m/k: the extent overrides of the ragged form (-1: none). In the ragged form the full-head
// product is the non-virtual `full_uid`, token-major [T, heads·d] with the kv ragged offsets
// (cuDNN scales them by heads / kv_heads, as cudnn_frontend's sdpa_backward relies on).
void matmul_into_kv_heads(GraphBuilder& g, const SdpaShape& s, int64_t a, int64_t b, int64_t c,
                          int64_t m, int64_t k, int64_t full_uid) {
  if (s.heads == s.kv_heads) return g.matmul(a, b, c, m, -1, k);
  int64_t full = full_uid;
  if (s.ragged)
    g.tensor(full_uid, io_type(s), tokens(s, s.heads), false, kRaggedKV);
  else
    full = g.virtual_tensor(io_type(s), packed(s, s.heads, s.head_dim));
  g.matmul(a, b, full, m, -1, k);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, full, c);
}

// The tensors both passes bind: q, kᵀ, v (transposed for the backward's dO·Vᵀ), out, lse and
// the by-value scale and −inf; in the ragged form also the lengths and ragged offsets.
void declare_common(GraphBuilder& g, const SdpaShape& s, bool v_transposed) {
  const cudnnDataType_t io = io_type(s);
  if (s.ragged) {
    const Layout lens{{s.batch, 1, 1, 1}, {1, 1, 1, 1}};
    const Layout offsets{{s.batch + 1, 1, 1, 1}, {1, 1, 1, 1}};
    g.tensor(kSeqQ, CUDNN_DATA_INT32, lens);
    g.tensor(kSeqKV, CUDNN_DATA_INT32, lens);
    g.tensor(kRaggedQ, CUDNN_DATA_INT64, offsets);
    g.tensor(kRaggedKV, CUDNN_DATA_INT64, offsets);
    g.tensor(kRaggedStats, CUDNN_DATA_INT64, offsets);
  }
  g.tensor(kQ, io, tokens(s, s.heads), false, ragged(s, kRaggedQ));
  g.tensor(kK, io, tokens_t(s, s.kv_heads), false, ragged(s, kRaggedKV));
  g.tensor(kV, io, v_transposed ? tokens_t(s, s.kv_heads) : tokens(s, s.kv_heads), false,
           ragged(s, kRaggedKV));
  g.tensor(kO, io, tokens(s, s.heads), false, ragged(s, kRaggedQ));
  g.tensor(kStats, CUDNN_DATA_FLOAT, rows(s), false, ragged(s, kRaggedStats));
  g.tensor(kScale, CUDNN_DATA_FLOAT, kScalar, true);
  g.tensor(kNegInf, CUDNN_DATA_FLOAT, kScalar, true);
}

void build_forward(GraphBuilder& g, const SdpaShape& s) {
  declare_common(g, s, /*v_transposed=*/false);

  const int64_t qk = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(kQ, kK, qk, seq_q(s), seq_kv(s));
  const int64_t scaled = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), qk, kScale);
  const int64_t masked = causal(g, s, padding(g, s, scaled));
  const int64_t max = g.virtual_tensor(CUDNN_DATA_FLOAT, packed(s, s.heads, 1));
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, max);
  const int64_t shifted = pointwise_to_virtual(g, CUDNN_POINTWISE_SUB, scores(s), masked, max);
  const int64_t e = pointwise_to_virtual(g, CUDNN_POINTWISE_EXP, scores(s), shifted);
  const int64_t sum = g.virtual_tensor(CUDNN_DATA_FLOAT, packed(s, s.heads, 1));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  const int64_t log_sum = pointwise_to_virtual(g, CUDNN_POINTWISE_LOG, packed(s, s.heads, 1), sum);
  g.pointwise(CUDNN_POINTWISE_ADD, max, kStats, log_sum);  // lse = max + log Σ exp
  const int64_t p = pointwise_to_virtual(g, CUDNN_POINTWISE_DIV, scores(s), e, sum, io_type(s));
  g.matmul(p, kV, kO, seq_q(s), -1, seq_kv(s));
}

void build_backward(GraphBuilder& g, const SdpaShape& s) {
  const cudnnDataType_t io = io_type(s);
  declare_common(g, s, /*v_transposed=*/true);
  g.tensor(kDO, io, tokens(s, s.heads), false, ragged(s, kRaggedQ));
  g.tensor(kDQ, io, tokens(s, s.heads), false, ragged(s, kRaggedQ));
  g.tensor(kDK, io, tokens(s, s.kv_heads), false, ragged(s, kRaggedKV));
  g.tensor(kDV, io, tokens(s, s.kv_heads), false, ragged(s, kRaggedKV));
  g.tensor(kOne, CUDNN_DATA_FLOAT, kScalar, true);
  g.tensor(kSoftmaxSum, CUDNN_DATA_FLOAT, rows(s), false, ragged(s, kRaggedStats));
  g.tensor(kDQAccum, CUDNN_DATA_FLOAT, dq_accum(s), false, ragged(s, kRaggedQ));

  // D_i = Σ_d dO·O.
  const int64_t do_o = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, tokens(s, s.heads), kDO, kO);
  const int64_t row_sum = g.virtual_tensor(CUDNN_DATA_FLOAT, packed(s, s.heads, 1));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, do_o, row_sum);
  g.pointwise(CUDNN_POINTWISE_MUL, row_sum, kSoftmaxSum, kOne);

  // P = exp(QKᵀ·scale − lse), padded (ragged) and causal.
  const int64_t qk = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(kQ, kK, qk, seq_q(s), seq_kv(s));
  const int64_t scaled = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), qk, kScale);
  const int64_t centred =
      pointwise_to_virtual(g, CUDNN_POINTWISE_SUB, scores(s), padding(g, s, scaled), kStats);
  const int64_t p = pointwise_to_virtual(g, CUDNN_POINTWISE_EXP, scores(s), causal(g, s, centred));

  // dV = Pᵀ·dO.
  const int64_t p_t = g.virtual_tensor(io, scores_t(s));
  g.reshape(p, p_t);
  matmul_into_kv_heads(g, s, p_t, kDO, kDV, seq_kv(s), seq_q(s), kDVFull);

  // dS = P ∘ (dO·Vᵀ − D) · scale.
  const int64_t dp = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(kDO, kV, dp, seq_q(s), seq_kv(s));
  const int64_t dp_d = pointwise_to_virtual(g, CUDNN_POINTWISE_SUB, scores(s), dp, kSoftmaxSum);
  const int64_t ds_raw = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), dp_d, p);
  const int64_t ds = pointwise_to_virtual(g, CUDNN_POINTWISE_MUL, scores(s), ds_raw, kScale);

  // dK = dSᵀ·Q.
  const int64_t ds_t = g.virtual_tensor(io, scores_t(s));
  g.reshape(ds, ds_t);
  matmul_into_kv_heads(g, s, ds_t, kQ, kDK, seq_kv(s), seq_q(s), kDKFull);

  // dQ = dS·K through the f32 accumulator.
  const int64_t k = g.virtual_tensor(io, tokens(s, s.kv_heads), ragged(s, kRaggedKV));
  g.reshape(kK, k);
  g.matmul(ds, k, kDQAccum, seq_q(s), -1, seq_kv(s));
  g.pointwise(CUDNN_POINTWISE_IDENTITY, kDQAccum, kDQ);
}

// The caller's backward workspace (attention_workspace_elems f32): the dQ accumulator, the
// dO·O row sums, then the engine's own scratch (dense: it asks for about another dQ
// accumulator, its full-head dK/dV for GQA); ragged GQA: the full-head dK and dV (16-bit,
// together the size of a dQ accumulator) before the engine's (then small) scratch.
struct BackwardWorkspace {
  explicit BackwardWorkspace(const SdpaShape& s) {
    const int64_t t = s.tokens();
    dq_accum_elems = t * s.heads * s.head_dim;
    full_elems = s.ragged && s.heads != s.kv_heads ? dq_accum_elems : 0;
    full_offset_bytes = align((dq_accum_elems + t * s.heads) * 4);
    engine_offset_bytes = align(full_offset_bytes + 2 * full_elems * 2);
    total_elems = attention_workspace_elems(t, AttentionShape{s.heads, s.kv_heads, s.head_dim});
    engine_bytes = total_elems * 4 - engine_offset_bytes;
  }
  static int64_t align(int64_t bytes) { return (bytes + 255) / 256 * 256; }
  int64_t dq_accum_elems, full_elems, full_offset_bytes, engine_offset_bytes, total_elems,
      engine_bytes;
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
  if (meta_buffer_) cudaFree(meta_buffer_);
}

SdpaShape CudnnAttention::ragged_shape(int64_t n_seg, int64_t t, int heads, int kv_heads,
                                       int head_dim, bool f16) {
  // Power-of-two buckets of the segment count: a run with random segment lengths builds a
  // plan per bucket it meets (a handful), not one per count.
  const int64_t batch = static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(n_seg)));
  return SdpaShape{batch, t, heads, kv_heads, head_dim, f16, /*ragged=*/true};
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
    if (s.ragged && s.batch > kMaxSegments)
      throw cudnn::CudnnUnsupported("more than " + std::to_string(kMaxSegments) + " segments");
    // Measured on an H200 with cuDNN 9.14 (bench/NOTES.md, session 5): the variable-length
    // graphs build at head_dim 256 but the backward returns a wrong dQ and NaN dK/dV. 32–128
    // match the CPU; the dense graphs are right at 256 too.
    if (s.ragged && s.head_dim > 128)
      throw cudnn::CudnnUnsupported("variable-length graphs with head_dim " +
                                    std::to_string(s.head_dim) +
                                    " > 128 gave wrong gradients on cuDNN 9.14");
    if (s.ragged && !meta_buffer_) {
      const size_t n = kMaxSegments + 2;  // ≥ batch + 1, even: every array 16-byte aligned
      FITLM_CUDA_CHECK(cudaMalloc(&meta_buffer_, 3 * n * sizeof(int64_t) + n * sizeof(int32_t)));
      auto* offsets = static_cast<int64_t*>(meta_buffer_);
      meta_ = {reinterpret_cast<int32_t*>(offsets + 3 * n), offsets, offsets + n, offsets + 2 * n};
    }
    p = std::make_unique<Plans>();
    build_forward(p->forward_graph, s);
    build_backward(p->backward_graph, s);
    p->forward = p->forward_graph.build(handle_, /*prefer_deterministic=*/true);
    p->backward = p->backward_graph.build(handle_, /*prefer_deterministic=*/true);
    if (p->forward.workspace_bytes > static_cast<int64_t>(scratch_bytes_))
      throw cudnn::CudnnUnsupported(
          "the forward plan needs " + std::to_string(p->forward.workspace_bytes) +
          " bytes of scratch, more than the backend's " + std::to_string(scratch_bytes_));
    const BackwardWorkspace ws(s);
    if (p->backward.workspace_bytes > ws.engine_bytes)
      throw cudnn::CudnnUnsupported(
          "the backward plan needs " + std::to_string(p->backward.workspace_bytes) +
          " bytes of scratch, more than the planned " + std::to_string(ws.engine_bytes));
    ++plans_built_;
    log::info(
        "attention: cuDNN {} fused SDPA plan {} for {} {} x {} tokens, {}/{} heads x {} "
        "(forward: {}; backward: {}; scratch {} + {} bytes)",
        cudnnGetVersion(), plans_built_, s.ragged ? "ragged" : "dense", s.batch, s.seq, s.heads,
        s.kv_heads, s.head_dim, p->forward.engine, p->backward.engine, p->forward.workspace_bytes,
        p->backward.workspace_bytes);
    if (!p->backward.deterministic)
      log::info("attention: cuDNN offers no deterministic backward engine for this shape");
  } catch (const cudnn::CudnnUnsupported& e) {
    log::warn(
        "attention: cuDNN cannot run {} {} x {} tokens, {}/{} heads x {}: {}; using fitlm's "
        "kernels",
        s.ragged ? "ragged" : "dense", s.batch, s.seq, s.heads, s.kv_heads, s.head_dim, e.what());
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

bool CudnnAttention::deterministic_backward(const SdpaShape& s) {
  return plans(s).backward.deterministic;
}

void CudnnAttention::ragged_meta(const SdpaShape& s, const Tensor& cu_seqlens) {
  const int64_t n_seg = cu_seqlens.numel() - 1;
  FITLM_CHECK(n_seg >= 1 && n_seg <= s.batch, "cuda", "{} segments for a cuDNN bucket of {}", n_seg,
              s.batch);
  const int64_t hd = s.head_dim;
  launch_sdpa_ragged_meta(static_cast<const int32_t*>(cu_seqlens.data), static_cast<int>(n_seg),
                          meta_, static_cast<int>(s.batch), s.heads * hd, s.kv_heads * hd, s.heads,
                          stream_);
}

void CudnnAttention::forward(const SdpaShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& cu_seqlens, float scale, const Tensor& out,
                             const Tensor& lse) {
  const Plans& p = plans(s);
  float neg_inf = std::numeric_limits<float>::lowest();
  std::vector<int64_t> uids{kQ, kK, kV, kO, kStats, kScale, kNegInf};
  std::vector<void*> ptrs{q.data, k.data, v.data, out.data, lse.data, &scale, &neg_inf};
  if (s.ragged) {
    ragged_meta(s, cu_seqlens);
    uids.insert(uids.end(), {kSeqQ, kSeqKV, kRaggedQ, kRaggedKV, kRaggedStats});
    ptrs.insert(ptrs.end(),
                {meta_.seq_len, meta_.seq_len, meta_.off_q, meta_.off_kv, meta_.off_stats});
  }
  cudnn::execute(handle_, p.forward, uids, ptrs, scratch_);
}

void CudnnAttention::backward(const SdpaShape& s, const Tensor& dout, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& lse, const Tensor& cu_seqlens, float scale,
                              const Tensor& dq, const Tensor& dk, const Tensor& dv,
                              const Tensor& workspace) {
  const Plans& p = plans(s);
  const BackwardWorkspace ws(s);
  FITLM_CHECK(workspace.numel() >= ws.total_elems, "cuda",
              "cuDNN attention backward needs {} f32 of workspace, got {}", ws.total_elems,
              workspace.numel());
  float neg_inf = std::numeric_limits<float>::lowest(), one = 1.0f;
  float* dq_accum = static_cast<float*>(workspace.data);
  float* softmax_sum = dq_accum + ws.dq_accum_elems;
  void* engine_scratch = static_cast<char*>(workspace.data) + ws.engine_offset_bytes;
  // cudnn_frontend zeroes the dQ accumulator itself before cuDNN 9.6; from 9.6 on the engine does
  // (the frontend only reserves it). Do the same.
  static const bool zero_accum = cudnnGetVersion() < 90600;
  if (zero_accum)
    FITLM_CUDA_CHECK(cudaMemsetAsync(dq_accum, 0, ws.dq_accum_elems * sizeof(float), stream_));
  std::vector<int64_t> uids{kQ,  kK,  kV,     kO,      kDO,  kStats,      kDQ,
                            kDK, kDV, kScale, kNegInf, kOne, kSoftmaxSum, kDQAccum};
  std::vector<void*> ptrs{q.data,  k.data,  v.data, out.data, dout.data, lse.data,    dq.data,
                          dk.data, dv.data, &scale, &neg_inf, &one,      softmax_sum, dq_accum};
  if (s.ragged) {
    ragged_meta(s, cu_seqlens);
    uids.insert(uids.end(), {kSeqQ, kSeqKV, kRaggedQ, kRaggedKV, kRaggedStats});
    ptrs.insert(ptrs.end(),
                {meta_.seq_len, meta_.seq_len, meta_.off_q, meta_.off_kv, meta_.off_stats});
  }
  if (ws.full_elems) {
    char* full = static_cast<char*>(workspace.data) + ws.full_offset_bytes;
    uids.insert(uids.end(), {kDKFull, kDVFull});
    ptrs.insert(ptrs.end(), {full, full + ws.full_elems * 2});
  }
  cudnn::execute(handle_, p.backward, uids, ptrs, engine_scratch);
}

}  // namespace fitlm::cuda
