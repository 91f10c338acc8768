// CudaBackend: lifecycle, factory, memory and transfers, element-wise ops. Argument checks live
// here (host code, fmt messages); the kernels are in the per-family .cu files.
#include "fitlm/backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/backend/cuda/cuda_elementwise.cuh"
#include "fitlm/backend/cuda/cuda_memory.cuh"
#include "fitlm/backend/cuda/cuda_optim.cuh"
#include "fitlm/backend/cuda/cudnn_attention.h"
#include "fitlm/core/allocation_plan.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

float host_load(const void* src, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(src)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    case DType::kU8: return static_cast<const uint8_t*>(src)[i];
    case DType::kI32: return static_cast<float>(static_cast<const int32_t*>(src)[i]);
    case DType::kI64: return static_cast<float>(static_cast<const int64_t*>(src)[i]);
  }
  return 0.0f;
}

void host_store(void* dst, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(dst)[i] = v; break;
    case DType::kBF16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
    case DType::kF16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
    case DType::kU8: static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v); break;
    case DType::kI32: static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v); break;
    case DType::kI64: static_cast<int64_t*>(dst)[i] = static_cast<int64_t>(v); break;
  }
}

bool is_float(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

DType dtype_from_env() {
  const char* env = std::getenv("FITLM_CUDA_DTYPE");
  if (!env || !*env) return DType::kBF16;
  const std::string v = env;
  if (v == "bf16") return DType::kBF16;
  if (v == "f16" || v == "fp16") return DType::kF16;
  throw_input_error("cuda", "FITLM_CUDA_DTYPE must be bf16 or f16, got '{}'", v);
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  // No driver or no device is "zero devices", not an error: CPU-only machines ask too.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return make_cuda_backend(device_index, dtype_from_env());
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, DType compute_dtype) {
  const int n = cuda_device_count();
  if (device_index < 0 || device_index >= n)
    throw_input_error("cuda", "device cuda:{} requested, {} CUDA device(s) visible", device_index,
                      n);
  if (compute_dtype != DType::kBF16 && compute_dtype != DType::kF16)
    throw_input_error("cuda", "compute dtype must be bf16 or f16, got {}",
                      dtype_name(compute_dtype));
  return std::make_unique<CudaBackend>(device_index, compute_dtype);
}

size_t CudaBackend::reserved_bytes() {
  return cuda_fixed_workspace_bytes();
}

size_t cuda_fixed_workspace_bytes() {
  return CudaBackend::kLtWorkspaceBytes + 256 + CudaBackend::kCudnnReserveBytes +
         CudaBackend::kGroupPointerBytes + CudaBackend::kMoeCountsBytes;
}

CudaBackend::CudaBackend(int device_index, DType compute_dtype)
    : device_(device_index), compute_(compute_dtype) {
  FITLM_CUDA_CHECK(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  FITLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  if (compute_ == DType::kBF16 && prop.major < 8)
    throw_input_error("cuda", "{} (sm_{}{}) has no bf16 matrix units: use FITLM_CUDA_DTYPE=f16",
                      prop.name, prop.major, prop.minor);
  FITLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  FITLM_CUDA_CHECK(cudaStreamCreateWithFlags(&transfer_stream_, cudaStreamNonBlocking));
  FITLM_CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
  FITLM_CUDA_CHECK(cudaEventCreateWithFlags(&transfers_done_, cudaEventDisableTiming));
  for (cudaEvent_t& e : copy_done_)
    FITLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  FITLM_CUBLAS_CHECK(cublasLtCreate(&lt_));
  FITLM_CUDA_CHECK(cudaMalloc(&lt_workspace_, kLtWorkspaceBytes));
  FITLM_CUBLAS_CHECK(cublasCreate(&blas_));
  FITLM_CUBLAS_CHECK(cublasSetStream(blas_, stream_));  // resets the workspace: set it after
  FITLM_CUBLAS_CHECK(cublasSetWorkspace(blas_, lt_workspace_, kLtWorkspaceBytes));
  FITLM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&d_group_ptrs_), kGroupPointerBytes));
  FITLM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&d_moe_counts_), kMoeCountsBytes));
  FITLM_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_group_ptrs_),
                                  kGroupPointerBytes * slot_copied_.size()));
  for (cudaEvent_t& e : slot_copied_)
    FITLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  // [Σx² result][its per-block partials][error flags]
  constexpr size_t sum_bytes = sizeof(double) * (1 + cuda::kSumSquaresBlocks);
  FITLM_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&d_sum_), sum_bytes + kNumFlags * sizeof(int)));
  d_flags_ = reinterpret_cast<int*>(d_sum_ + 1 + cuda::kSumSquaresBlocks);
  FITLM_CUDA_CHECK(cudaMemset(d_sum_, 0, sum_bytes + kNumFlags * sizeof(int)));
  FITLM_CUDA_CHECK(
      cudaMallocHost(reinterpret_cast<void**>(&h_sum_), sizeof(double) + kNumFlags * sizeof(int)));
  h_flags_ = reinterpret_cast<int*>(h_sum_ + 1);
}

CudaBackend::~CudaBackend() {
  // Destructors must not throw: errors here are ignored (the context may already be torn down).
  if (stream_) cudaStreamSynchronize(stream_);
  cudnn_attention_.reset();
  if (h_sum_) cudaFreeHost(h_sum_);
  if (d_sum_) cudaFree(d_sum_);
  for (cudaEvent_t e : slot_copied_)
    if (e) cudaEventDestroy(e);
  if (h_group_ptrs_) cudaFreeHost(h_group_ptrs_);
  if (d_group_ptrs_) cudaFree(d_group_ptrs_);
  if (d_moe_counts_) cudaFree(d_moe_counts_);
  if (blas_) cublasDestroy(blas_);
  if (lt_workspace_) cudaFree(lt_workspace_);
  if (lt_) cublasLtDestroy(lt_);
  if (stream_) cudaStreamDestroy(stream_);
  if (transfer_stream_) cudaStreamSynchronize(transfer_stream_);
  if (transfer_stream_) cudaStreamDestroy(transfer_stream_);
  if (compute_ready_) cudaEventDestroy(compute_ready_);
  if (transfers_done_) cudaEventDestroy(transfers_done_);
  for (cudaEvent_t e : copy_done_)
    if (e) cudaEventDestroy(e);
}

std::string CudaBackend::name() const {
  return fmt::format("cuda:{} ({})", device_, dtype_name(compute_));
}

size_t CudaBackend::memory_in_use() {
  size_t free_b = 0, total_b = 0;
  FITLM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

size_t CudaBackend::memory_free() {
  size_t free_b = 0, total_b = 0;
  FITLM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return free_b;
}

std::string CudaBackend::device_description() {
  cudaDeviceProp prop{};
  FITLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  return fmt::format("cuda:{} {} (sm_{}{}, {} SMs, {}), {} storage", device_, prop.name, prop.major,
                     prop.minor, prop.multiProcessorCount, format_bytes(prop.totalGlobalMem),
                     dtype_name(compute_));
}

void CudaBackend::check_on_device(const Tensor& t, const char* what) const {
  if (t.device.kind != DeviceKind::kCUDA || t.device.index != device_)
    throw_internal_error("cuda", "{}: tensor {} is on {}, expected cuda:{}", what, t.shape.str(),
                         t.device.str(), device_);
}

Backend::HostMapped CudaBackend::allocate_host_mapped(size_t bytes) {
  HostMapped m;
  const cudaError_t err =
      cudaHostAlloc(&m.host, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("cuda",
                fmt::format("cannot pin {} of host memory for weights kept off the device: {}",
                            format_bytes(bytes), cudaGetErrorString(err)),
                ExitCode::kNoFit);
  }
  FITLM_CUDA_CHECK(cudaHostGetDevicePointer(&m.device, m.host, 0));
  return m;
}

void CudaBackend::deallocate_host_mapped(const HostMapped& m) {
  if (m.host) cudaFreeHost(m.host);
}

void* CudaBackend::allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(
        "cuda",
        fmt::format("cannot allocate {} on cuda:{} ({} free of {}): {}", format_bytes(bytes),
                    device_, format_bytes(free_b), format_bytes(total_b), cudaGetErrorString(err)),
        ExitCode::kNoFit);
  }
  return p;
}

void CudaBackend::deallocate(void* ptr) {
  FITLM_CUDA_CHECK(cudaFree(ptr));
}

void CudaBackend::upload(Tensor dst, const void* src, DType src_dtype) {
  check_on_device(dst, "upload");
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (src_dtype == dst.dtype) {
    FITLM_CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.bytes(), cudaMemcpyDefault, stream_));
  } else {
    FITLM_CHECK(is_float(dst.dtype), "cuda", "upload converts into float dtypes only, not {}",
                dtype_name(dst.dtype));
    std::vector<std::byte> staged(dst.bytes());
    for (int64_t i = 0; i < n; ++i)
      host_store(staged.data(), dst.dtype, i, host_load(src, src_dtype, i));
    FITLM_CUDA_CHECK(
        cudaMemcpyAsync(dst.data, staged.data(), dst.bytes(), cudaMemcpyDefault, stream_));
    FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));  // `staged` dies here
    return;
  }
  FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the caller may reuse `src` on return
}

void CudaBackend::download(const Tensor& src, float* dst) {
  check_on_device(src, "download");
  const int64_t n = src.numel();
  if (n == 0) return;
  if (src.dtype == DType::kF32) {
    FITLM_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, src.bytes(), cudaMemcpyDefault, stream_));
    FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  std::vector<std::byte> staged(src.bytes());
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(staged.data(), src.data, src.bytes(), cudaMemcpyDefault, stream_));
  FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int64_t i = 0; i < n; ++i) dst[i] = host_load(staged.data(), src.dtype, i);
}

void CudaBackend::synchronize() {
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(h_flags_, d_flags_, kNumFlags * sizeof(int), cudaMemcpyDefault, stream_));
  FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  FITLM_CUDA_CHECK(cudaStreamSynchronize(transfer_stream_));  // copy_async's too
  const bool bad_id = h_flags_[kFlagBadTokenId] != 0, bad_label = h_flags_[kFlagBadLabel] != 0;
  const bool bad_moe = h_flags_[kFlagBadMoeIndex] != 0;
  if (bad_id || bad_label || bad_moe) {
    FITLM_CUDA_CHECK(cudaMemsetAsync(d_flags_, 0, kNumFlags * sizeof(int), stream_));
    FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (bad_id)
      throw_input_error("model", "a token id is outside the vocabulary (embedding lookup)");
    if (bad_moe)
      throw_internal_error("cuda",
                           "a mixture-of-experts op got an expert or row index out of range "
                           "(moe_route_backward, gather_rows, moe_combine or moe_weight_grad)");
    throw_input_error("model", "a label is outside the vocabulary and is not -100");
  }
}

void CudaBackend::fill(Tensor x, float value) {
  check_on_device(x, "fill");
  FITLM_CHECK(is_float(x.dtype) || x.dtype == DType::kI32, "cuda", "fill on {}",
              dtype_name(x.dtype));
  cuda::launch_fill(x, value, stream_);
}

TransferTicket CudaBackend::copy_async(const Tensor& src, Tensor dst) {
  check_on_device(src, "copy_async src");
  check_on_device(dst, "copy_async dst");
  FITLM_CHECK(src.dtype == dst.dtype && src.numel() == dst.numel(), "cuda",
              "copy_async {} {} -> {} {}", dtype_name(src.dtype), src.shape.str(),
              dtype_name(dst.dtype), dst.shape.str());
  if (src.numel() == 0) return 0;
  FITLM_CUDA_CHECK(cudaEventRecord(compute_ready_, stream_));
  FITLM_CUDA_CHECK(cudaStreamWaitEvent(transfer_stream_, compute_ready_, 0));
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDefault, transfer_stream_));
  // Re-recorded after each copy: a wait on it covers every copy queued so far (one stream).
  FITLM_CUDA_CHECK(cudaEventRecord(transfers_done_, transfer_stream_));
  const TransferTicket ticket = ++last_ticket_;
  FITLM_CUDA_CHECK(cudaEventRecord(copy_done_[ticket % copy_done_.size()], transfer_stream_));
  return ticket;
}

void CudaBackend::wait_transfer(TransferTicket ticket) {
  if (ticket == 0) return;
  FITLM_CUDA_CHECK(cudaStreamWaitEvent(stream_, copy_done_[ticket % copy_done_.size()], 0));
}

void CudaBackend::wait_transfers() {
  FITLM_CUDA_CHECK(cudaStreamWaitEvent(stream_, transfers_done_, 0));
}

void CudaBackend::copy(const Tensor& src, Tensor dst) {
  check_on_device(src, "copy src");
  check_on_device(dst, "copy dst");
  FITLM_CHECK(src.numel() == dst.numel(), "cuda", "copy {} -> {}", src.shape.str(),
              dst.shape.str());
  if (src.dtype == dst.dtype) {
    if (src.data != dst.data && src.numel() > 0)
      FITLM_CUDA_CHECK(
          cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDefault, stream_));
    return;
  }
  FITLM_CHECK(is_float(src.dtype) && is_float(dst.dtype), "cuda", "copy {} -> {} unsupported",
              dtype_name(src.dtype), dtype_name(dst.dtype));
  cuda::launch_cast(src, dst, stream_);
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  FITLM_CHECK(a.numel() == b.numel() && a.numel() == out.numel(), "cuda", "add {} + {} -> {}",
              a.shape.str(), b.shape.str(), out.shape.str());
  cuda::launch_add(a, b, out, stream_);
}

void CudaBackend::axpy(float alpha, const Tensor& x, Tensor y) {
  FITLM_CHECK(x.numel() == y.numel(), "cuda", "axpy {} -> {}", x.shape.str(), y.shape.str());
  cuda::launch_axpy(alpha, x, y, stream_);
}

void CudaBackend::scale(Tensor x, float alpha) {
  cuda::launch_scale(x, alpha, stream_);
}

void CudaBackend::add_bias(Tensor x, const Tensor& bias) {
  FITLM_CHECK(bias.numel() == x.cols(), "cuda", "bias {} for {}", bias.shape.str(), x.shape.str());
  cuda::launch_add_bias(x, bias, stream_);
}

void CudaBackend::bias_backward(const Tensor& dout, Tensor dbias) {
  FITLM_CHECK(dbias.numel() == dout.cols(), "cuda", "dbias {} for {}", dbias.shape.str(),
              dout.shape.str());
  cuda::launch_bias_backward(dout, dbias, stream_);
}

void CudaBackend::dropout(const Tensor& x, Tensor out, float p, uint64_t seed) {
  FITLM_CHECK(x.numel() == out.numel() && p >= 0.0f && p < 1.0f, "cuda", "dropout {} -> {} p={}",
              x.shape.str(), out.shape.str(), p);
  cuda::launch_dropout(x, out, p, seed, stream_);
}

}  // namespace fitlm
