// CudaBackend: the class behind make_cuda_backend(). Internal to src/fitlm/backend/cuda (it
// names CUDA types); the rest of fitlm sees only Backend. Member functions live in
// cuda_backend.cpp (lifecycle, memory, element-wise), cuda_backend_layers.cpp (layers, loss,
// optimizer), cuda_backend_moe.cpp (mixture of experts) and cuda_gemm.cpp; they check arguments and
// call the kernel launchers declared in the per-family .cuh files.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "fitlm/backend/backend.h"

namespace fitlm {

namespace cuda {
class CudnnAttention;
struct SdpaShape;
}  // namespace cuda

// Device-side error flags that kernels raise instead of faulting; synchronize() reports them.
enum CudaErrorFlag : int {
  kFlagBadTokenId = 0,
  kFlagBadLabel = 1,
  kFlagBadMoeIndex = 2,  // an expert or row index of the MoE ops out of range
  kNumFlags = 4
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device_index, DType compute_dtype);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;
  Device device() const override { return Device{DeviceKind::kCUDA, device_}; }
  DType compute_dtype() const override { return compute_; }
  cudaStream_t stream() const { return stream_; }

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;
  HostMapped allocate_host_mapped(size_t bytes) override;
  size_t host_mapping_bytes(size_t host_bytes) const override {
    return cuda_host_mapping_bytes(host_bytes);
  }
  void deallocate_host_mapped(const HostMapped& m) override;
  void upload(Tensor dst, const void* src, DType src_dtype) override;
  void download(const Tensor& src, float* dst) override;
  void synchronize() override;
  size_t memory_in_use() override;
  size_t memory_free() override;
  std::string device_description() override;
  size_t reserved_bytes() override;

  void fill(Tensor x, float value) override;
  void copy(const Tensor& src, Tensor dst) override;
  TransferTicket copy_async(const Tensor& src, Tensor dst) override;
  void wait_transfers() override;
  void wait_transfer(TransferTicket ticket) override;
  void add(const Tensor& a, const Tensor& b, Tensor out) override;
  void axpy(float alpha, const Tensor& x, Tensor y) override;
  void scale(Tensor x, float alpha) override;
  void add_bias(Tensor x, const Tensor& bias) override;
  void bias_backward(const Tensor& dout, Tensor dbias) override;
  void dropout(const Tensor& x, Tensor out, float p, uint64_t seed) override;

  void dequantize4(const Quant4Tensor& q, Tensor out) override;
  void dequantize4_many(const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work) override;

  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c, float alpha,
            float beta) override;
  void gemm_grouped(const std::vector<GemmGroup>& groups, bool trans_a, bool trans_b, float alpha,
                    float beta) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, Tensor out) override;
  void embedding_backward(const Tensor& ids, const Tensor& dout, Tensor dtable) override;
  void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor out,
                       Tensor rstd) override;
  void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor dx, Tensor dw) override;
  void rope(Tensor x, int n_heads, int head_dim, const Tensor& positions, const Tensor& inv_freq,
            bool inverse) override;
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, const AttentionShape& shape, Tensor out,
                         Tensor lse) override;
  void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens,
                          const AttentionShape& shape, Tensor dq, Tensor dk, Tensor dv,
                          Tensor workspace) override;
  void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor dgate,
                       Tensor dup) override;
  void moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs, Tensor weights,
                 Tensor experts) override;
  void moe_route_backward(const Tensor& probs, const Tensor& weights, const Tensor& experts,
                          const Tensor& dweights, bool renormalize, const Tensor& extra_dprobs,
                          Tensor dlogits) override;
  // Sorts on the device; synchronizes once to bring the counts to the host.
  void moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row, Tensor pair_of_row,
                   Tensor row_of, std::vector<int64_t>& counts) override;
  void gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                   Tensor dst) override;
  void moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights, Tensor y,
                   bool accumulate) override;
  void moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                       Tensor dweights) override;
  void cross_entropy(Tensor logits, const Tensor& labels, Tensor losses, float grad_scale,
                     bool compute_grad) override;

  double sum_squares(const Tensor& x) override;
  void adamw_step(Tensor param, const Tensor& grad, Tensor m, Tensor v, const AdamWParams& p,
                  float grad_scale) override;

  static constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // Hopper's recommended size
  // gemm_grouped's pointer arrays (A, B, C per group): one call takes up to this many groups.
  static constexpr size_t kMaxGemmGroups = 1024;
  static constexpr size_t kGroupPointerBytes = 3 * kMaxGemmGroups * sizeof(void*);
  static constexpr size_t kMoeCountsBytes = 512 * sizeof(int32_t);  // cuda::kMoeMaxExperts
  // Device memory cuDNN takes for its handle and loaded attention kernels (measured under
  // 10 MiB on an H100 with cuDNN 9.14: planned 16.38 GiB, measured 16.39 GiB).
  static constexpr size_t kCudnnReserveBytes = size_t{16} << 20;

 private:
  void check_dequantize4(const Quant4Tensor& q, const Tensor& out) const;
  void check_on_device(const Tensor& t, const char* what) const;
  // The cuDNN attention shape for this call, when the caller promised equal segments and cuDNN
  // can run it (FITLM_ATTENTION=kernels turns the cuDNN path off, for A/B runs).
  std::optional<cuda::SdpaShape> cudnn_attention_shape(const Tensor& q, const AttentionShape& sh);

  int device_;
  DType compute_;
  cudaStream_t stream_ = nullptr;
  // copy_async's queue, and the events that order it after the compute stream and back.
  cudaStream_t transfer_stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;
  cudaEvent_t transfers_done_ = nullptr;
  // copy_async's tickets: copy n records copy_done_[n % size] after itself. A wait on an old
  // ticket whose event a later copy re-recorded waits for that later copy: later, never wrong
  // (one in-order stream), and the callers keep at most a few copies outstanding.
  std::array<cudaEvent_t, 8> copy_done_{};
  TransferTicket last_ticket_ = 0;
  cublasLtHandle_t lt_ = nullptr;
  // cuBLAS (not Lt) for its grouped GEMM, on stream_ and with lt_workspace_ (used in turn).
  cublasHandle_t blas_ = nullptr;
  // gemm_grouped's pointer arrays: device, and a ring of pinned host slots they are copied
  // from, each reused only after its copy has run (slot_copied_).
  void** d_group_ptrs_ = nullptr;
  int32_t* d_moe_counts_ = nullptr;  // moe_permute's counts, kMoeMaxExperts of them
  void** h_group_ptrs_ = nullptr;
  std::array<cudaEvent_t, 8> slot_copied_{};
  size_t next_slot_ = 0;
  void* lt_workspace_ = nullptr;
  double* d_sum_ = nullptr;  // sum_squares accumulator (device)
  double* h_sum_ = nullptr;  // pinned
  int* d_flags_ = nullptr;   // CudaErrorFlag slots (device)
  int* h_flags_ = nullptr;   // pinned
  // cuBLASLt heuristic result per problem (m, n, k, ops, dtypes, alignment): the heuristic
  // query costs tens of microseconds, more than a small GEMM itself.
  using GemmKey = std::tuple<int64_t, int64_t, int64_t, int, int, int, int, int, int>;
  std::map<GemmKey, cublasLtMatmulAlgo_t> algo_cache_;
  std::unique_ptr<cuda::CudnnAttention> cudnn_attention_;  // made on first use
  bool cudnn_attention_off_ = false, cudnn_attention_required_ = false;
};

}  // namespace fitlm
