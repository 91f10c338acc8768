// MpiComm: the Comm of CPU ranks started by mpirun, over OpenMPI's C API. The MPI types stay in
// mpi_comm.cpp, so including this header needs no MPI headers.
//
// Sums are not MPI_Allreduce / MPI_Reduce_scatter: their reduction order depends on the
// algorithm OpenMPI picks for the size and the world, which breaks comm.h's ordering
// guarantee. Instead each rank owns a block of the buffer, receives every rank's copy of it
// (pairwise exchanges) and adds them in rank order (rank_order_sum.h); an all-reduce then
// all-gathers the owned blocks. Per rank and n elements that sends and receives
// 2·(N−1)/N·n elements (the volume of a ring all-reduce) in 2·(N−1) pairwise steps per chunk
// of N × MpiCommOptions::max_chunk_bytes, plus (N−1)/N·n local adds; host scratch is N × one
// chunk. Not MPI's fastest all-reduce, but the bits do not depend on it.
//
// Before each collective the ranks exchange what they are calling (op, dtype, sizes: 40 bytes
// to and from every other rank, latency only), so a rank that calls something else or other sizes
// gets a clear error on every rank instead of a hang or garbage.
//
// Failures: the communicator returns errors (MPI_ERRORS_RETURN) and each becomes fitlm::Error
// naming this rank, the op and the peer. A rank that dies is detected by mpirun, which ends
// the job; the other ranks do not need to notice it themselves. A rank that hangs (a loop, a
// deadlock, SIGSTOP) is seen by the ranks waiting for it: every wait is non-blocking calls
// (MPI_Isend / MPI_Irecv / MPI_Ibcast) polled with MPI_Testall, back to back, then yielding,
// then sleeping up to 1 ms between polls; a wait past MpiCommOptions::timeout_s prints one line
// naming this rank, the op and its sizes, the MPI step and the rank(s) it waited for (in a
// pairwise step also a rank that itself waits for the hung one), and calls MPI_Abort (exit code
// ExitCode::kRankFailed, 5), since a hung rank cannot take part in a clean shutdown. Time this
// rank itself was stopped does not count. barrier_long waits comm_io_timeout_s(timeout_s)
// instead (comm.h). MPI_Init and the communicator's setup still block.
#pragma once

#include <cstddef>
#include <memory>

#include "fitlm/dist/comm.h"

namespace fitlm::dist {

struct MpiCommOptions {
  // Largest message of one MPI call, in bytes (at most 2^31 − 1: MPI counts are int). Larger
  // tensors go in chunks; it also bounds the scratch of a sum (world size × this). Every rank
  // must use the same value. Tests set it small to exercise the chunked paths.
  size_t max_chunk_bytes = size_t{64} << 20;
  // Seconds one wait for other ranks may last before this rank ends the job (see Failures);
  // 0: no limit. The variable FITLM_COMM_TIMEOUT_S, when set, overrides it (as for NcclComm).
  double timeout_s = 60;
};

class MpiComm final : public Comm {
 public:
  // Initializes MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED: calls from any one thread at a
  // time) unless it already is, and duplicates MPI_COMM_WORLD so that fitlm's messages never
  // match anyone else's. Several MpiComms may be alive at once; the last one destroyed
  // finalizes MPI if an MpiComm initialized it. MPI cannot start again once finalized.
  static std::unique_ptr<MpiComm> init(MpiCommOptions options = {});
  // Frees the communicator and finalizes MPI as above. While an exception unwinds through it,
  // it does neither: MPI_Finalize waits for every rank, and the others may be blocked in a
  // collective waiting for this one; the process then exits without finalizing, and mpirun
  // ends the job (after the exception's message has been printed).
  ~MpiComm() override;

  int rank() const override;
  int world_size() const override;
  int local_rank() const override;
  int local_world_size() const override;
  std::string name() const override { return "mpi"; }
  DeviceKind device_kind() const override { return DeviceKind::kCPU; }
  [[noreturn]] void abort(int exit_code) override;  // MPI_Abort on MPI_COMM_WORLD

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
  struct Impl;
  explicit MpiComm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fitlm::dist
