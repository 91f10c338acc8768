// NcclComm: the Comm of GPU ranks, one process per GPU, over NCCL. No CUDA or NCCL type here
// (Pimpl), so the registry and strategy code include it without CUDA headers.
//
// Sums are not ncclAllReduce / ncclReduceScatter: NCCL's rings and trees add in an order that
// depends on the algorithm, the world and the size, which breaks comm.h's ordering guarantee.
// A reduce-scatter is instead an all-to-all of blocks (grouped ncclSend / ncclRecv): each rank
// receives every other rank's copy of the block it owns into a staging buffer, and a kernel
// adds the copies in rank order in f32 and rounds once (cuda_rank_order_sum.cuh). all_reduce_sum
// is reduce_scatter_sum_blocks followed by all_gather_blocks over core/shard.h's blocks, so per
// rank it moves 2·(N−1)/N of the tensor, a ring all-reduce's volume. The copies (all_gather,
// broadcast, send/recv, the all-gather half of an all-reduce) are NCCL's own byte copies.
//
// Staging: one device buffer of (N − 1) × NcclCommOptions::max_chunk_bytes, allocated at
// construction (reserved_bytes(); the planner counts it, plus a few KiB of control buffers).
// Larger blocks go through it in rounds. NCCL's own buffers (per peer and channel) are not in it.
//
// Stream: every NCCL call and the sum kernel run on the CUDA backend's stream, so they are
// ordered with the compute before and after them. For now each operation then waits for its
// own completion on the host (below); overlapping communication with compute comes later.
//
// Calls are checked: before each collective the ranks all-gather what they are calling (op,
// dtype, sizes: 40 bytes a rank, latency only), so a rank that calls something else gets a clear
// error on every rank instead of a hang (NcclCommOptions::check_calls turns it off).
//
// Faults: the NCCL communicator is non-blocking (ncclConfig_t::blocking = 0). Every operation is
// waited for by a watchdog that polls ncclCommGetAsyncError and a CUDA event on the stream,
// sleeping between polls; past the timeout (NcclCommOptions::timeout_s, or FITLM_COMM_TIMEOUT_S
// when set) it aborts the communicator (ncclCommAbort) and throws fitlm::Error naming this rank,
// the operation and its sizes. The communicator is then unusable: every later call throws.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "fitlm/backend/backend.h"
#include "fitlm/dist/comm.h"
#include "fitlm/dist/gpu_comm_memory.h"

namespace fitlm::dist {

struct NcclCommOptions {
  // Bytes of one rank's block per round of a sum; the staging buffer is (N − 1) × this. Every
  // rank must use the same value. Tests set it small to exercise the chunked paths.
  size_t max_chunk_bytes = dist::kGpuCommChunkBytes;
  // Seconds an operation may take before the watchdog aborts the communicator. The variable
  // FITLM_COMM_TIMEOUT_S, when set, overrides it. barrier_long waits comm_io_timeout_s(it).
  double timeout_s = 60;
  // Seconds ncclCommInitRankConfig may wait for every rank to arrive (ranks start unevenly).
  double init_timeout_s = 300;
  // Exchange call signatures before each collective (see above).
  bool check_calls = true;
  // Wait (with the watchdog) for each operation before returning. Off, the tensor operations
  // only enqueue their work on the stream and return: for benchmarks of the device time; a
  // failure then shows only when the caller synchronizes, without the watchdog. Scalars,
  // barrier, send, recv and the signature check always wait.
  bool wait_each_op = true;
};

class NcclComm final : public Comm {
 public:
  struct Impl;
  explicit NcclComm(std::unique_ptr<Impl> impl);
  // Finalizes and destroys the NCCL communicator; aborts it instead while an exception unwinds
  // (a peer may be stuck, and finalizing would wait for it).
  ~NcclComm() override;

  int rank() const override;
  int world_size() const override;
  int local_rank() const override;
  int local_world_size() const override;
  std::string name() const override { return "nccl"; }
  DeviceKind device_kind() const override { return DeviceKind::kCUDA; }
  // Aborts the NCCL communicator, then ends the job through the bootstrap comm when this one
  // owns it (MpiComm: MPI_Abort), else exits this process (the launcher ends the others).
  [[noreturn]] void abort(int exit_code) override;

  // Device bytes this comm allocated at construction (staging and control buffers).
  size_t reserved_bytes() const;
  // Seconds the watchdog allows an operation.
  double timeout_s() const;
  // The ncclComm_t, for benchmarks and tests that call NCCL directly on the same ranks.
  void* native_handle() const;

 protected:
  void do_all_reduce_sum(Tensor buf) override;
  void do_reduce_scatter_sum(const Tensor& in, Tensor out) override;
  void do_all_gather(const Tensor& in, Tensor out) override;
  void do_reduce_scatter_sum_blocks(Tensor buf) override;
  void do_all_gather_blocks(Tensor buf) override;
  void do_broadcast(Tensor buf, int root) override;
  void do_send(const Tensor& t, int peer) override;
  void do_recv(Tensor t, int peer) override;
  void do_barrier() override;
  void do_barrier_long() override;
  double do_all_reduce_sum(double v) override;
  double do_all_reduce_max(double v) override;

 private:
  std::unique_ptr<Impl> impl_;
};

// What make_nccl_comm must know of this process when no bootstrap Comm tells it.
struct NcclRanks {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
};

using NcclUniqueId = std::array<uint8_t, 128>;

// A fresh NCCL unique id (ncclGetUniqueId): rank 0 makes it, every rank passes the same one.
NcclUniqueId nccl_unique_id();

// The GPU comm of `cuda_backend`'s device (a CUDA backend: make_cuda_backend(local_rank)).
// Collective over the ranks: every rank calls it at the same time.
// (a) Rank 0's id is broadcast over `bootstrap` (an MpiComm under mpirun, a SingleComm for one
//     process, or another NcclComm), which must outlive the call only; ranks as it says.
std::unique_ptr<NcclComm> make_nccl_comm(Backend& cuda_backend, Comm& bootstrap,
                                         NcclCommOptions options = {});
// (b) The same, and the NcclComm keeps `bootstrap` alive (and ends the job through it on abort).
std::unique_ptr<NcclComm> make_nccl_comm(Backend& cuda_backend, std::unique_ptr<Comm> bootstrap,
                                         NcclCommOptions options = {});
// (c) Every rank already holds rank 0's id (a TCP rendezvous, tcp_rendezvous.h).
std::unique_ptr<NcclComm> make_nccl_comm(Backend& cuda_backend, const NcclRanks& ranks,
                                         const NcclUniqueId& id, NcclCommOptions options = {});

// The staging bytes a comm of `world` ranks allocates: for the planner, before one exists.
size_t nccl_comm_reserved_bytes(int world, const NcclCommOptions& options = {});

}  // namespace fitlm::dist
