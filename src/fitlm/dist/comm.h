// Comm: how the ranks of a job exchange tensors. fitlm runs one process per device (rank-based
// SPMD, DESIGN.md principle 4); data parallel and ZeRO are strategies written over this
// interface, and each implementation (single, MPI on CPUs, NCCL on GPUs) sits behind it. No MPI
// or CUDA type appears here, so strategy code compiles without either.
//
// Ordering guarantee. fitlm checks an N-rank run against one process, bit for bit, so every
// result must be identical on every rank and from run to run, whatever the launcher, the
// network or the message timing. Sums therefore have a fixed order: element e of a sum is
//   ((x_0[e] + x_1[e]) + x_2[e]) + ... + x_{N-1}[e]      (x_r: rank r's input)
// added in f32 (bf16/f16 inputs are widened to f32, added in that order and rounded once to
// their storage type), the order a single process gets by looping over the ranks' inputs. An
// implementation must not hand sums to a library whose reduction order depends on the
// algorithm it picks (MPI_Allreduce, NCCL's rings and trees) unless it proves the same bits.
//
// Every rank must call the same collectives in the same order with the same sizes and dtypes
// (SPMD). Each call validates its arguments and throws fitlm::Error ("[dist] ...") on a
// mismatch; an implementation that can compare the ranks' calls (MpiComm does) also throws, on
// every rank, when they disagree.
#pragma once

#include <string>
#include <vector>

#include "fitlm/core/tensor.h"

namespace fitlm::dist {

// The timeout of Comm::barrier_long for a comm whose operations time out after `timeout_s`
// (0: never): max(timeout_s, FITLM_COMM_IO_TIMEOUT_S), the variable defaulting to 1800 s;
// 0 (either one) waits forever. Throws an input error on a malformed variable.
double comm_io_timeout_s(double timeout_s);

class Comm {
 public:
  virtual ~Comm() = default;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  virtual int rank() const = 0;              // 0 .. world_size() - 1
  virtual int world_size() const = 0;        // number of ranks in the job
  virtual int local_rank() const = 0;        // rank among the ranks on this node (picks the GPU)
  virtual int local_world_size() const = 0;  // ranks on this node
  virtual std::string name() const = 0;      // "single", "mpi": for logs and errors
  // The device whose memory the tensors must live in (MpiComm: the CPU).
  virtual DeviceKind device_kind() const = 0;

  // Sum over the ranks, in place: afterwards `buf` holds the rank-order sum on every rank.
  // f32, bf16, f16.
  void all_reduce_sum(Tensor buf);
  // `in` holds world_size() blocks of out.numel() elements; rank r gets the rank-order sum of
  // every rank's block r in `out`. in.numel() must be world_size() × out.numel(). `out` may be
  // block rank() of `in` itself (in place), otherwise the two must not overlap. f32, bf16, f16.
  void reduce_scatter_sum(const Tensor& in, Tensor out);
  // out = concatenation of every rank's `in`, rank 0 first; out.numel() must be world_size() ×
  // in.numel(). `in` may be block rank() of `out` itself (in place), otherwise the two must not
  // overlap. Any dtype (a byte copy).
  void all_gather(const Tensor& in, Tensor out);
  // Every rank gets `root`'s `buf`. Any dtype.
  void broadcast(Tensor buf, int root);
  // Point to point: `peer` must call recv (send) with the same dtype and element count.
  // send may block until the peer receives, so order pairs to avoid waiting in a cycle.
  void send(const Tensor& t, int peer);
  void recv(Tensor t, int peer);
  // In place, over the blocks of core/shard.h (rank r owns shard_block(buf.numel(), r, N)), for
  // sharded strategies whose tensors need not divide by the world size:
  // afterwards block rank() of `buf` holds the rank-order sum of every rank's block rank(); the
  // other blocks are unspecified (f32, bf16, f16) ...
  void reduce_scatter_sum_blocks(Tensor buf);
  // ... and afterwards every block r of `buf` holds rank r's block r (any dtype).
  void all_gather_blocks(Tensor buf);
  void barrier();
  // A barrier at which the other ranks wait while one does long I/O (rank 0 writing a
  // checkpoint or the final model, which may take minutes for a big model). Its timeout is
  // comm_io_timeout_s(the comm's timeout) instead of the comm's own (MpiComm, NcclComm: the
  // wait that ends the job when a rank hangs).
  void barrier_long();
  // Scalars, for loss sums and global gradient norms: the sum in rank order (in double), and
  // the maximum (NaN when any rank's value is NaN, so one diverged rank is seen by all).
  double all_reduce_sum(double v);
  double all_reduce_max(double v);
  // Every rank's `v`, rank 0 first, on every rank (reports: per-rank memory). One scalar
  // all-reduce per rank: for a few values, not for tensors.
  std::vector<double> all_gather_scalars(double v);

  // Ends every rank of the job now with `exit_code`. For a rank that must stop alone (a bad
  // input, a failed check) while the others may be waiting for it inside a collective.
  [[noreturn]] virtual void abort(int exit_code) = 0;

 protected:
  Comm() = default;
  // The operations, called after the public functions have validated their arguments
  // (dtypes, sizes, devices, ranks, overlaps) on this rank.
  virtual void do_all_reduce_sum(Tensor buf) = 0;
  virtual void do_reduce_scatter_sum(const Tensor& in, Tensor out) = 0;
  virtual void do_all_gather(const Tensor& in, Tensor out) = 0;
  virtual void do_reduce_scatter_sum_blocks(Tensor buf) = 0;
  virtual void do_all_gather_blocks(Tensor buf) = 0;
  virtual void do_broadcast(Tensor buf, int root) = 0;
  virtual void do_send(const Tensor& t, int peer) = 0;
  virtual void do_recv(Tensor t, int peer) = 0;
  virtual void do_barrier() = 0;
  virtual void do_barrier_long() = 0;
  virtual double do_all_reduce_sum(double v) = 0;
  virtual double do_all_reduce_max(double v) = 0;

 private:
  void check_tensor(const Tensor& t, const char* op, const char* what, bool summed) const;
  void check_peer(int peer, const char* op, const char* what) const;
};

}  // namespace fitlm::dist
