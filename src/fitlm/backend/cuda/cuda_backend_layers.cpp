// CudaBackend: layer ops, loss and optimizer — argument checks, then the family launchers.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <initializer_list>
#include <string>

#include "fitlm/backend/cuda/cuda_attention.cuh"
#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/backend/cuda/cuda_cross_entropy.cuh"
#include "fitlm/backend/cuda/cuda_embedding.cuh"
#include "fitlm/backend/cuda/cuda_optim.cuh"
#include "fitlm/backend/cuda/cuda_rmsnorm.cuh"
#include "fitlm/backend/cuda/cuda_rope.cuh"
#include "fitlm/backend/cuda/cuda_swiglu.cuh"
#include "fitlm/backend/cuda/cudnn_attention.h"
#include "fitlm/backend/cuda/cudnn_graph.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"

namespace fitlm {
namespace {

cuda::AttentionDims dims_of(const AttentionShape& s) {
  return {s.n_heads, s.n_kv_heads, s.head_dim, s.scale};
}

bool aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
}

void check_dtype(const Tensor& t, DType want, const char* what) {
  FITLM_CHECK(t.dtype == want, "cuda", "{} must be {}, got {}", what, dtype_name(want),
              dtype_name(t.dtype));
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* what) {
  FITLM_CHECK(a.dtype == b.dtype, "cuda", "{}: dtypes differ ({} vs {})", what, dtype_name(a.dtype),
              dtype_name(b.dtype));
}

}  // namespace

void CudaBackend::embedding_forward(const Tensor& ids, const Tensor& table, Tensor out) {
  check_dtype(ids, DType::kI32, "embedding ids");
  FITLM_CHECK(out.rows() == ids.numel() && out.cols() == table.cols(), "cuda",
              "embedding out {} for ids {} table {}", out.shape.str(), ids.shape.str(),
              table.shape.str());
  cuda::launch_embedding_forward(ids, table, out, d_flags_ + kFlagBadTokenId, stream_);
}

void CudaBackend::embedding_backward(const Tensor& ids, const Tensor& dout, Tensor dtable) {
  check_dtype(ids, DType::kI32, "embedding ids");
  // Repeated ids scatter into one row: f32 atomics, so the table gradient is an f32 master grad.
  check_dtype(dtable, DType::kF32, "embedding dtable");
  FITLM_CHECK(dout.rows() == ids.numel() && dout.cols() == dtable.cols(), "cuda",
              "embedding dout {} for ids {} dtable {}", dout.shape.str(), ids.shape.str(),
              dtable.shape.str());
  cuda::launch_embedding_backward(ids, dout, dtable, stream_);
}

void CudaBackend::rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor out,
                                  Tensor rstd) {
  check_same_dtype(x, out, "rmsnorm x/out");
  check_dtype(rstd, DType::kF32, "rmsnorm rstd");
  FITLM_CHECK(w.numel() == x.cols() && rstd.numel() == x.rows() && out.numel() == x.numel(), "cuda",
              "rmsnorm x {} w {} rstd {}", x.shape.str(), w.shape.str(), rstd.shape.str());
  cuda::launch_rmsnorm_forward(x, w, eps, out, rstd, stream_);
}

void CudaBackend::rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                                   const Tensor& rstd, Tensor dx, Tensor dw) {
  check_same_dtype(x, dout, "rmsnorm x/dout");
  check_same_dtype(x, dx, "rmsnorm x/dx");
  check_dtype(rstd, DType::kF32, "rmsnorm rstd");
  FITLM_CHECK(w.numel() == x.cols() && (dw.empty() || dw.numel() == x.cols()), "cuda",
              "rmsnorm backward x {} w {} dw {}", x.shape.str(), w.shape.str(), dw.shape.str());
  cuda::launch_rmsnorm_backward(dout, x, w, rstd, dx, dw, stream_);
}

void CudaBackend::rope(Tensor x, int n_heads, int head_dim, const Tensor& positions,
                       const Tensor& inv_freq, bool inverse) {
  FITLM_CHECK(x.cols() == int64_t{n_heads} * head_dim && head_dim % 2 == 0, "cuda",
              "rope on {} with {}x{}", x.shape.str(), n_heads, head_dim);
  check_dtype(positions, DType::kI32, "rope positions");
  check_dtype(inv_freq, DType::kF32, "rope inv_freq");
  FITLM_CHECK(positions.numel() == x.rows() && inv_freq.numel() == head_dim / 2, "cuda",
              "rope positions {} inv_freq {} for {}", positions.shape.str(), inv_freq.shape.str(),
              x.shape.str());
  cuda::launch_rope(x, n_heads, head_dim, positions, inv_freq, inverse, stream_);
}

namespace {

void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu,
                     const AttentionShape& sh, const Tensor& lse) {
  FITLM_CHECK(sh.n_heads > 0 && sh.n_kv_heads > 0 && sh.n_heads % sh.n_kv_heads == 0, "cuda",
              "attention heads {} / kv heads {}", sh.n_heads, sh.n_kv_heads);
  FITLM_CHECK(cuda::attention_kernels_support_head_dim(sh.head_dim), "cuda",
              "attention head_dim {}: the CUDA kernels support 32, 64, 80, 96, 128 and 256",
              sh.head_dim);
  FITLM_CHECK(q.dtype == DType::kBF16 || q.dtype == DType::kF16, "cuda",
              "attention runs on bf16/f16, got {}", dtype_name(q.dtype));
  check_same_dtype(q, k, "attention q/k");
  check_same_dtype(q, v, "attention q/v");
  const int64_t t = q.rows();
  FITLM_CHECK(q.cols() == int64_t{sh.n_heads} * sh.head_dim &&
                  k.cols() == int64_t{sh.n_kv_heads} * sh.head_dim && k.rows() == t &&
                  v.numel() == k.numel(),
              "cuda", "attention q {} k {} v {} for {}x{} / {} kv heads", q.shape.str(),
              k.shape.str(), v.shape.str(), sh.n_heads, sh.head_dim, sh.n_kv_heads);
  FITLM_CHECK(t < (int64_t{1} << 31) / sh.n_heads, "cuda", "attention over {} tokens", t);
  check_dtype(cu, DType::kI32, "cu_seqlens");
  FITLM_CHECK(cu.numel() >= 2, "cuda", "cu_seqlens needs at least 2 entries");
  check_dtype(lse, DType::kF32, "attention lse");
  FITLM_CHECK(lse.numel() == int64_t{sh.n_heads} * t, "cuda", "lse {} for {} heads × {}",
              lse.shape.str(), sh.n_heads, t);
  FITLM_CHECK(aligned16(q) && aligned16(k) && aligned16(v), "cuda",
              "attention inputs must be 16-byte aligned");
}

}  // namespace

// The attention shape as cudnn_attention_shape() reads it: when the model promises nothing about
// segment lengths (packed rows), segment_len carries −(number of segments) instead.
void CudaBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& cu_seqlens, const AttentionShape& sh, Tensor out,
                                    Tensor lse) {
  check_attention(q, k, v, cu_seqlens, sh, lse);
  check_same_dtype(q, out, "attention q/out");
  FITLM_CHECK(out.numel() == q.numel() && aligned16(out), "cuda", "attention out {}",
              out.shape.str());
  AttentionShape with_segments = sh;
  if (sh.segment_len == 0) with_segments.segment_len = -(cu_seqlens.numel() - 1);
  if (auto s = cudnn_attention_shape(q, with_segments))
    return cudnn_attention_->forward(*s, q, k, v, cu_seqlens, sh.scale, out, lse);
  cuda::launch_attention_forward(q, k, v, cu_seqlens, dims_of(sh), out, lse, stream_);
}

// sh.segment_len > 0: equal segments of that length (dense cuDNN graph); < 0: that many packed
// segments of unequal length (ragged cuDNN graph, see attention_forward).
std::optional<cuda::SdpaShape> CudaBackend::cudnn_attention_shape(const Tensor& q,
                                                                  const AttentionShape& sh) {
  if (sh.segment_len == 0 || cudnn_attention_off_) return std::nullopt;
  const int64_t t = q.rows();
  FITLM_CHECK(sh.segment_len < 0 || t % sh.segment_len == 0, "cuda", "{} tokens in segments of {}",
              t, sh.segment_len);
  if (!cudnn_attention_) {
    // FITLM_ATTENTION=kernels: never cuDNN (A/B runs); =cudnn: cuDNN or an error (tests). Read
    // once per backend, on its first attention call.
    const char* env = std::getenv("FITLM_ATTENTION");
    const std::string mode = env ? env : "";
    cudnn_attention_off_ = mode == "kernels";
    cudnn_attention_required_ = mode == "cudnn";
    if (cudnn_attention_off_) return std::nullopt;
    try {
      cudnn_attention_ =
          std::make_unique<cuda::CudnnAttention>(stream_, lt_workspace_, kLtWorkspaceBytes);
    } catch (const cuda::cudnn::CudnnUnsupported& e) {
      if (cudnn_attention_required_)
        throw_internal_error("cuda", "FITLM_ATTENTION=cudnn: {}", e.what());
      log::warn("attention: {}; using fitlm's kernels", e.what());
      cudnn_attention_off_ = true;
      return std::nullopt;
    }
  }
  const bool f16 = q.dtype == DType::kF16;
  const cuda::SdpaShape s =
      sh.segment_len > 0 ? cuda::SdpaShape{t / sh.segment_len, sh.segment_len, sh.n_heads,
                                           sh.n_kv_heads,      sh.head_dim,    f16}
                         : cuda::CudnnAttention::ragged_shape(-sh.segment_len, t, sh.n_heads,
                                                              sh.n_kv_heads, sh.head_dim, f16);
  if (cudnn_attention_->supports(s)) return s;
  FITLM_CHECK(!cudnn_attention_required_, "cuda",
              "FITLM_ATTENTION=cudnn but cuDNN cannot run this shape");
  return std::nullopt;
}

void CudaBackend::attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& out, const Tensor& lse,
                                     const Tensor& cu_seqlens, const AttentionShape& sh, Tensor dq,
                                     Tensor dk, Tensor dv, Tensor workspace) {
  check_attention(q, k, v, cu_seqlens, sh, lse);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dout, &out, &dq, &dk, &dv}) {
    check_same_dtype(q, *t, "attention backward");
    FITLM_CHECK(aligned16(*t), "cuda", "attention backward tensors must be 16-byte aligned");
  }
  FITLM_CHECK(dout.numel() == q.numel() && out.numel() == q.numel() && dq.numel() == q.numel() &&
                  dk.numel() == k.numel() && dv.numel() == v.numel(),
              "cuda", "attention backward shapes dq {} dk {} dv {}", dq.shape.str(), dk.shape.str(),
              dv.shape.str());
  if (!workspace.empty()) {
    check_dtype(workspace, DType::kF32, "attention workspace");
    FITLM_CHECK(workspace.numel() >= attention_workspace_elems(q.rows(), sh), "cuda",
                "attention workspace {} for {} tokens", workspace.shape.str(), q.rows());
  }
  AttentionShape with_segments = sh;
  if (sh.segment_len == 0) with_segments.segment_len = -(cu_seqlens.numel() - 1);
  if (auto s = cudnn_attention_shape(q, with_segments)) {
    if (!workspace.empty())
      return cudnn_attention_->backward(*s, dout, q, k, v, out, lse, cu_seqlens, sh.scale, dq, dk,
                                        dv, workspace);
    // Without its workspace cuDNN cannot run; fitlm's kernels can, if lse has their layout
    // ([heads, T]: one dense segment; ragged lse is [T, heads]).
    FITLM_CHECK(!s->ragged && s->batch == 1, "cuda",
                "attention backward over {} cuDNN segments needs its workspace", s->batch);
  }
  // FITLM_ATTENTION_NO_WORKSPACE=1 selects the direct-write dK/dV kernel (A/B in bench).
  static const bool no_ws = std::getenv("FITLM_ATTENTION_NO_WORKSPACE") != nullptr;
  cuda::launch_attention_backward(dout, q, k, v, out, lse, cu_seqlens, dims_of(sh), dq, dk, dv,
                                  no_ws ? Tensor{} : workspace, stream_);
}

void CudaBackend::swiglu_forward(const Tensor& gate, const Tensor& up, Tensor out) {
  FITLM_CHECK(gate.numel() == up.numel() && gate.numel() == out.numel(), "cuda",
              "swiglu {} {} -> {}", gate.shape.str(), up.shape.str(), out.shape.str());
  cuda::launch_swiglu_forward(gate, up, out, stream_);
}

void CudaBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                                  Tensor dgate, Tensor dup) {
  const int64_t n = gate.numel();
  FITLM_CHECK(dout.numel() == n && up.numel() == n && dgate.numel() == n && dup.numel() == n,
              "cuda", "swiglu backward shapes");
  cuda::launch_swiglu_backward(dout, gate, up, dgate, dup, stream_);
}

void CudaBackend::cross_entropy(Tensor logits, const Tensor& labels, Tensor losses,
                                float grad_scale, bool compute_grad) {
  check_dtype(labels, DType::kI32, "cross_entropy labels");
  check_dtype(losses, DType::kF32, "cross_entropy losses");
  FITLM_CHECK(labels.numel() == logits.rows() && losses.numel() == logits.rows(), "cuda",
              "cross_entropy logits {} labels {} losses {}", logits.shape.str(), labels.shape.str(),
              losses.shape.str());
  cuda::launch_cross_entropy(logits, labels, losses, grad_scale, compute_grad,
                             d_flags_ + kFlagBadLabel, stream_);
}

double CudaBackend::sum_squares(const Tensor& x) {
  cuda::launch_sum_squares(x, d_sum_ + 1, d_sum_, stream_);
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(h_sum_, d_sum_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return *h_sum_;
}

void CudaBackend::adamw_step(Tensor param, const Tensor& grad, Tensor m, Tensor v,
                             const AdamWParams& p, float grad_scale) {
  check_dtype(param, DType::kF32, "adamw param");
  check_dtype(m, DType::kF32, "adamw m");
  check_dtype(v, DType::kF32, "adamw v");
  const int64_t n = param.numel();
  FITLM_CHECK(grad.numel() == n && m.numel() == n && v.numel() == n, "cuda",
              "adamw param {} grad {} m {} v {}", param.shape.str(), grad.shape.str(),
              m.shape.str(), v.shape.str());
  const cuda::AdamWArgs args{p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.step};
  cuda::launch_adamw(param, grad, m, v, args, grad_scale, stream_);
}

}  // namespace fitlm
