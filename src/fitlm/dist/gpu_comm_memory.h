// Device memory the GPU comm (backend/cuda/nccl_comm.h) allocates for itself, outside the
// arena: the staging buffer of its rank-order sums, (N − 1) blocks of max_chunk_bytes, and a
// few control bytes (every rank's call signature, two send/recv headers). Here, without CUDA,
// so that `fitlm plan` can print it in any build. NCCL's own internal buffers are not counted.
#pragma once

#include <cstddef>

namespace fitlm::dist {

inline constexpr size_t kGpuCommChunkBytes = size_t{32} << 20;  // NcclCommOptions' default
inline constexpr size_t kGpuCommSignatureBytes = 40;            // per rank
inline constexpr size_t kGpuCommHeaderBytes = 24;               // per send/recv header

constexpr size_t gpu_comm_reserved_bytes(int world, size_t max_chunk_bytes = kGpuCommChunkBytes) {
  return (world > 1 ? static_cast<size_t>(world - 1) : 0) * max_chunk_bytes +
         static_cast<size_t>(world) * kGpuCommSignatureBytes + 2 * kGpuCommHeaderBytes;
}

}  // namespace fitlm::dist
