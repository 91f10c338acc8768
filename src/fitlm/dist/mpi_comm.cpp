#include "fitlm/dist/mpi_comm.h"

// The C API only: OpenMPI's C++ bindings are deprecated and not warning-free.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/core/shard.h"
#include "fitlm/dist/call_signature.h"
#include "fitlm/dist/rank_order_sum.h"

namespace fitlm::dist {
namespace {

constexpr const char* kComponent = "dist";
// Tags keep the pairwise exchanges inside collectives apart from send/recv messages.
constexpr int kCollectiveTag = 1;
constexpr int kP2pTag = 2;
constexpr int kSignatureTag = 3;

using Clock = std::chrono::steady_clock;

// MpiComms alive in this process, and whether one of them initialized MPI (then the last one
// finalizes it). Construction and destruction happen on one thread.
int g_live = 0;
bool g_initialized_here = false;

using Op = CallOp;
using Signature = CallSignature;

std::string rank_list(std::vector<int> ranks) {
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  if (ranks.size() == 1) return fmt::format("rank {}", ranks[0]);
  return fmt::format("ranks {}", fmt::join(ranks, ", "));
}

}  // namespace

struct MpiComm::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  size_t max_chunk = 0;                 // bytes per MPI call
  std::vector<std::byte> scratch;       // the ranks' copies of one block: size × chunk
  std::vector<const void*> pieces;      // pointers into scratch, rank order
  std::vector<int64_t> offsets, sizes;  // one block per rank, in elements
  double timeout = 60;                  // seconds one wait may last; 0: no limit
  // The wait in progress: its requests, the rank each one waits for, and their bytes.
  Signature current{};  // the operation, for the timeout message
  std::vector<MPI_Request> requests;
  std::vector<int> request_peers;
  size_t request_bytes = 0;

  // Turns an MPI error code into fitlm::Error naming this rank, the op and the call.
  void check(int rc, const char* op, std::string_view call) {
    if (rc == MPI_SUCCESS) return;
    requests.clear();  // the wait in progress is over
    request_peers.clear();
    request_bytes = 0;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
    throw_internal_error(
        kComponent, "rank {} of {}: {} failed in {}: {}", rank, size, call, op,
        len > 0 ? std::string(text, static_cast<size_t>(len)) : fmt::format("MPI error {}", rc));
  }

  int count(size_t bytes) const {
    FITLM_CHECK(bytes <= static_cast<size_t>(INT_MAX), kComponent, "{} bytes in one call", bytes);
    return static_cast<int>(bytes);
  }

  // A non-blocking call, part of the wait in progress, waiting for rank `peer`.
  MPI_Request* post(int peer, size_t bytes) {
    request_peers.push_back(peer);
    request_bytes += bytes;
    return &requests.emplace_back(MPI_REQUEST_NULL);
  }

  // Waits until every posted request has completed, polling: back to back for the first 100 µs
  // (most waits end within microseconds, and a syscall between polls made small collectives
  // twice as slow as the blocking calls), then yielding until 1 ms (a rank waiting on a busy
  // core lets the one it waits for run; a large message gets 1 ns a byte more, since its
  // transfer moves only while MPI is polled), then sleeping, growing to 1 ms between polls, so
  // a long wait costs no CPU.
  // Past `timeout_s` (0: no limit) it ends the job (timed_out). `call` names the MPI calls.
  void wait(const char* op, const char* call, int step, double timeout_s) {
    const int n = static_cast<int>(requests.size());
    int done = 0;
    check(MPI_Testall(n, requests.data(), &done, MPI_STATUSES_IGNORE), op, call);
    const auto start = Clock::now();
    const auto spin_until = start + std::chrono::microseconds(100);
    const auto yield_until =
        start + std::chrono::milliseconds(1) + std::chrono::nanoseconds(request_bytes);
    auto deadline =
        start + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(timeout_s > 0 ? std::min(timeout_s, 1e9) : 1.0));
    int sleep_us = 10;
    auto last = start;
    while (!done) {
      const auto now = Clock::now();
      // A gap between polls far over the 1 ms sleep: this process was not running (stopped,
      // e.g. SIGSTOP and then SIGCONT from mpirun ending the job). Not time spent waiting for
      // the others, so it does not count.
      if (now - last > std::chrono::milliseconds(500)) deadline += now - last;
      last = now;
      if (timeout_s > 0 && now > deadline) timed_out(op, call, step, timeout_s);
      if (now < spin_until) {
        // poll again at once
      } else if (now < yield_until) {
        sched_yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
        sleep_us = std::min(1000, 2 * sleep_us);
      }
      check(MPI_Testall(n, requests.data(), &done, MPI_STATUSES_IGNORE), op, call);
    }
    requests.clear();
    request_peers.clear();
    request_bytes = 0;
  }

  // A rank did not answer within the timeout. It may be stuck for good (a loop, a deadlock,
  // SIGSTOP), so no clean shutdown can include it: print why and end every rank through mpirun.
  [[noreturn]] void timed_out(const char* op, const char* call, int step, double timeout_s) {
    std::vector<int> waiting;
    for (size_t i = 0; i < requests.size(); ++i) {
      int flag = 0;
      if (MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || !flag)
        waiting.push_back(request_peers[i]);
    }
    if (waiting.empty()) waiting = request_peers;
    const std::string where = step > 0 ? fmt::format("{} step {}", call, step) : call;
    std::fprintf(stderr,
                 "error: [%s] rank %d of %d: %s waited %g s for %s (%s): a rank died or hangs; "
                 "ending the job (exit %d; FITLM_COMM_TIMEOUT_S sets the timeout)\n",
                 kComponent, rank, size, current.op != 0 ? describe(current).c_str() : op,
                 timeout_s, rank_list(waiting).c_str(), where.c_str(),
                 static_cast<int>(ExitCode::kRankFailed));
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, static_cast<int>(ExitCode::kRankFailed));
    std::_Exit(static_cast<int>(ExitCode::kRankFailed));  // MPI_Abort does not return
  }

  // Every rank's signature; throws on every rank when they are not all the same call. Point to
  // point with every other rank (40 bytes each) rather than MPI_Iallgather, so that a rank that
  // never arrives is named by the ranks that wait for it.
  std::vector<Signature> exchange(const Signature& mine, const char* op, double timeout_s) {
    current = mine;
    std::vector<Signature> all(static_cast<size_t>(size));
    all[rank] = mine;
    for (int s = 1; s < size; ++s) {
      const int src = (rank - s + size) % size;
      check(MPI_Irecv(&all[src], sizeof(Signature), MPI_BYTE, src, kSignatureTag, comm,
                      post(src, sizeof(Signature))),
            op, "MPI_Irecv of a call signature");
    }
    for (int s = 1; s < size; ++s) {
      const int dst = (rank + s) % size;
      check(MPI_Isend(&all[rank], sizeof(Signature), MPI_BYTE, dst, kSignatureTag, comm,
                      post(dst, sizeof(Signature))),
            op, "MPI_Isend of the call signature");
    }
    wait(op, "the exchange of call signatures", 0, timeout_s);
    std::string others;
    int differing = 0;
    for (int r = 1; r < size; ++r) {
      if (same_call(all[r], all[0])) continue;
      if (++differing <= 4) others += fmt::format("; rank {} calls {}", r, describe(all[r]));
    }
    if (differing > 4) others += fmt::format("; and {} more ranks differ", differing - 4);
    if (differing > 0)
      throw_internal_error(kComponent,
                           "rank {} of {}: the ranks disagree on the collective: rank 0 calls "
                           "{}{} (every rank must make the same calls with the same sizes)",
                           rank, size, describe(all[0]), others);
    return all;
  }
  std::vector<Signature> exchange(const Signature& mine, const char* op) {
    return exchange(mine, op, timeout);
  }

  // Step `step` of a pairwise exchange: sends to `dst` and receives from `src` at once.
  void sendrecv(const void* send, size_t send_bytes, int dst, void* recv, size_t recv_bytes,
                int src, const char* op, int step) {
    check(MPI_Irecv(recv, count(recv_bytes), MPI_BYTE, src, kCollectiveTag, comm,
                    post(src, recv_bytes)),
          op, "MPI_Irecv");
    check(MPI_Isend(send, count(send_bytes), MPI_BYTE, dst, kCollectiveTag, comm,
                    post(dst, send_bytes)),
          op, "MPI_Isend");
    wait(op, "MPI_Isend/MPI_Irecv", step, timeout);
  }

  // Rank r receives every rank's copy of its block r of `in` (offsets/sizes: one block per
  // rank, each at most one chunk) and writes their rank-order sum to `out`. Pairwise: in step s
  // each rank sends to rank + s and receives from rank − s, so no step waits in a cycle. Its
  // own copy goes to scratch first, so `out` may be its own block of `in`.
  void reduce_blocks(const std::byte* in, std::byte* out, DType dtype, const char* op) {
    const size_t esz = dtype_size(dtype);
    const size_t mine = static_cast<size_t>(sizes[rank]) * esz;
    if (scratch.size() < mine * size) scratch.resize(mine * size);
    std::byte* slots = scratch.data();
    if (mine > 0) std::memcpy(slots + rank * mine, in + offsets[rank] * esz, mine);
    for (int s = 1; s < size; ++s) {
      const int dst = (rank + s) % size, src = (rank - s + size) % size;
      sendrecv(in + offsets[dst] * esz, static_cast<size_t>(sizes[dst]) * esz, dst,
               slots + src * mine, mine, src, op, s);
    }
    pieces.resize(static_cast<size_t>(size));
    for (int r = 0; r < size; ++r) pieces[r] = slots + r * mine;
    sum_in_rank_order(pieces, dtype, sizes[rank], out);
  }

  // offsets/sizes for round `o` of the core/shard.h blocks of n elements: elements
  // [o, o + chunk) of every rank's block, clipped to the block (short and empty blocks take part
  // in the rounds they have elements for).
  void set_block_round(int64_t n, int64_t o, int64_t chunk) {
    for (int r = 0; r < size; ++r) {
      const ShardBlock b = shard_block(n, r, size);
      offsets[r] = b.offset + std::min(o, b.size);
      sizes[r] = std::clamp<int64_t>(b.size - o, 0, chunk);
    }
  }

  // Every rank sends its block of `buf` to every other rank: afterwards all blocks are
  // everywhere. The send and receive regions of a step are different blocks.
  void gather_blocks(std::byte* buf, size_t esz, const char* op) {
    for (int s = 1; s < size; ++s) {
      const int dst = (rank + s) % size, src = (rank - s + size) % size;
      sendrecv(buf + offsets[rank] * esz, static_cast<size_t>(sizes[rank]) * esz, dst,
               buf + offsets[src] * esz, static_cast<size_t>(sizes[src]) * esz, src, op, s);
    }
  }
};

std::unique_ptr<MpiComm> MpiComm::init(MpiCommOptions options) {
  if (options.max_chunk_bytes < 8 || options.max_chunk_bytes > static_cast<size_t>(INT_MAX))
    throw_internal_error(kComponent, "MpiComm: max_chunk_bytes {} is not in [8, 2^31 - 1]",
                         options.max_chunk_bytes);
  if (!(options.timeout_s >= 0) || !std::isfinite(options.timeout_s))
    throw_internal_error(kComponent, "MpiComm: timeout_s {} is not >= 0", options.timeout_s);
  int finalized = 0, initialized = 0;
  MPI_Finalized(&finalized);
  if (finalized)
    throw_internal_error(kComponent, "MpiComm: MPI was finalized; it cannot start again");
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
      throw_internal_error(kComponent, "MpiComm: MPI_Init_thread failed");
    g_initialized_here = true;
  }
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_SERIALIZED)
    throw_internal_error(kComponent,
                         "MpiComm: MPI provides thread level {}; fitlm needs "
                         "MPI_THREAD_SERIALIZED ({})",
                         provided, MPI_THREAD_SERIALIZED);

  auto impl = std::make_unique<Impl>();
  impl->max_chunk = options.max_chunk_bytes;
  impl->timeout = comm_timeout_s(options.timeout_s, /*zero_is_no_limit=*/true);
  // A fatal error handler until ours is set: a failure here ends the job through mpirun.
  MPI_Comm_dup(MPI_COMM_WORLD, &impl->comm);
  MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
  impl->check(MPI_Comm_rank(impl->comm, &impl->rank), "init", "MPI_Comm_rank");
  impl->check(MPI_Comm_size(impl->comm, &impl->size), "init", "MPI_Comm_size");
  // The ranks sharing this node's memory, ordered by world rank.
  MPI_Comm node = MPI_COMM_NULL;
  impl->check(
      MPI_Comm_split_type(impl->comm, MPI_COMM_TYPE_SHARED, impl->rank, MPI_INFO_NULL, &node),
      "init", "MPI_Comm_split_type");
  impl->check(MPI_Comm_rank(node, &impl->local_rank), "init", "MPI_Comm_rank (node)");
  impl->check(MPI_Comm_size(node, &impl->local_size), "init", "MPI_Comm_size (node)");
  MPI_Comm_free(&node);
  impl->offsets.resize(static_cast<size_t>(impl->size));
  impl->sizes.resize(static_cast<size_t>(impl->size));
  ++g_live;
  return std::unique_ptr<MpiComm>(new MpiComm(std::move(impl)));
}

MpiComm::MpiComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MpiComm::~MpiComm() {
  if (std::uncaught_exceptions() > 0) return;  // see mpi_comm.h: no MPI_Finalize now
  MPI_Comm_free(&impl_->comm);
  if (--g_live == 0 && g_initialized_here) MPI_Finalize();
}

int MpiComm::rank() const {
  return impl_->rank;
}
int MpiComm::world_size() const {
  return impl_->size;
}
int MpiComm::local_rank() const {
  return impl_->local_rank;
}
int MpiComm::local_world_size() const {
  return impl_->local_size;
}

void MpiComm::abort(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::abort();  // MPI_Abort does not return; in case it does
}

void MpiComm::do_all_reduce_sum(Tensor buf) {
  Impl& m = *impl_;
  m.exchange(call_signature(Op::kAllReduceSum, buf, 0), "all_reduce_sum");
  if (m.size == 1) return;
  const size_t esz = dtype_size(buf.dtype);
  const int64_t n = buf.numel();
  // Chunks of at most one block per rank, each block at most max_chunk bytes. The blocks of a
  // chunk differ by at most one element (n need not divide by the world size). The split
  // changes which rank adds an element, never the order of its adds.
  const int64_t block = std::max<int64_t>(1, static_cast<int64_t>(m.max_chunk / esz));
  auto* base = static_cast<std::byte*>(buf.data);
  for (int64_t c0 = 0; c0 < n; c0 += block * m.size) {
    const int64_t len = std::min(block * m.size, n - c0);
    int64_t off = c0;
    for (int r = 0; r < m.size; ++r) {
      m.offsets[r] = off;
      m.sizes[r] = len / m.size + (r < len % m.size ? 1 : 0);
      off += m.sizes[r];
    }
    m.reduce_blocks(base, base + m.offsets[m.rank] * esz, buf.dtype, "all_reduce_sum");
    m.gather_blocks(base, esz, "all_reduce_sum");
  }
}

void MpiComm::do_reduce_scatter_sum(const Tensor& in, Tensor out) {
  Impl& m = *impl_;
  m.exchange(call_signature(Op::kReduceScatterSum, in, out.numel()), "reduce_scatter_sum");
  const size_t esz = dtype_size(in.dtype);
  const int64_t n = out.numel();
  const int64_t block = std::max<int64_t>(1, static_cast<int64_t>(m.max_chunk / esz));
  for (int64_t o = 0; o < n; o += block) {
    const int64_t len = std::min(block, n - o);
    for (int r = 0; r < m.size; ++r) {
      m.offsets[r] = r * n + o;
      m.sizes[r] = len;
    }
    m.reduce_blocks(static_cast<const std::byte*>(in.data),
                    static_cast<std::byte*>(out.data) + o * esz, in.dtype, "reduce_scatter_sum");
  }
}

void MpiComm::do_all_gather(const Tensor& in, Tensor out) {
  Impl& m = *impl_;
  m.exchange(call_signature(Op::kAllGather, in, out.numel()), "all_gather");
  const size_t bytes = in.bytes();
  auto* dst_base = static_cast<std::byte*>(out.data);
  const auto* src = static_cast<const std::byte*>(in.data);
  if (bytes > 0 && dst_base + m.rank * bytes != src)
    std::memcpy(dst_base + m.rank * bytes, src, bytes);
  for (size_t o = 0; o < bytes; o += m.max_chunk) {
    const size_t len = std::min(m.max_chunk, bytes - o);
    for (int s = 1; s < m.size; ++s) {
      const int to = (m.rank + s) % m.size, from = (m.rank - s + m.size) % m.size;
      m.sendrecv(src + o, len, to, dst_base + from * bytes + o, len, from, "all_gather", s);
    }
  }
}

// The blocks of core/shard.h, in rounds of at most one chunk per block (set_block_round).
void MpiComm::do_reduce_scatter_sum_blocks(Tensor buf) {
  Impl& m = *impl_;
  m.exchange(call_signature(Op::kReduceScatterBlocks, buf, 0), "reduce_scatter_sum_blocks");
  if (m.size == 1) return;
  const size_t esz = dtype_size(buf.dtype);
  const int64_t n = buf.numel(), stride = shard_stride(n, m.size);
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(m.max_chunk / esz));
  auto* base = static_cast<std::byte*>(buf.data);
  for (int64_t o = 0; o < stride; o += chunk) {
    m.set_block_round(n, o, chunk);
    m.reduce_blocks(base, base + m.offsets[m.rank] * esz, buf.dtype, "reduce_scatter_sum_blocks");
  }
}

void MpiComm::do_all_gather_blocks(Tensor buf) {
  Impl& m = *impl_;
  m.exchange(call_signature(Op::kAllGatherBlocks, buf, 0), "all_gather_blocks");
  if (m.size == 1) return;
  const size_t esz = dtype_size(buf.dtype);
  const int64_t n = buf.numel(), stride = shard_stride(n, m.size);
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(m.max_chunk / esz));
  for (int64_t o = 0; o < stride; o += chunk) {
    m.set_block_round(n, o, chunk);
    m.gather_blocks(static_cast<std::byte*>(buf.data), esz, "all_gather_blocks");
  }
}

void MpiComm::do_broadcast(Tensor buf, int root) {
  Impl& m = *impl_;
  m.exchange(call_signature(Op::kBroadcast, buf, root), "broadcast");
  auto* p = static_cast<std::byte*>(buf.data);
  // MPI_Ibcast relays through other ranks; the root is the rank a timeout names.
  for (size_t o = 0; o < buf.bytes(); o += m.max_chunk) {
    const size_t len = std::min(m.max_chunk, buf.bytes() - o);
    m.check(MPI_Ibcast(p + o, m.count(len), MPI_BYTE, root, m.comm, m.post(root, len)), "broadcast",
            "MPI_Ibcast");
    m.wait("broadcast", "MPI_Ibcast, from the root or a rank relaying it", 0, m.timeout);
  }
}

// A send is a header (dtype, element count, chunk size) and the data in chunks, so that the
// receiver can check what arrives and, on a mismatch, still take every chunk off the wire
// (the sender does not hang) before it throws.
void MpiComm::do_send(const Tensor& t, int peer) {
  Impl& m = *impl_;
  const int64_t header[3] = {static_cast<int64_t>(t.dtype), t.numel(),
                             static_cast<int64_t>(m.max_chunk)};
  m.current = call_signature(Op::kSend, t, peer);
  m.check(MPI_Isend(header, 3, MPI_INT64_T, peer, kP2pTag, m.comm, m.post(peer, sizeof header)),
          "send", "MPI_Isend");
  m.wait("send", "MPI_Isend of the header", 0, m.timeout);
  const auto* p = static_cast<const std::byte*>(t.data);
  for (size_t o = 0; o < t.bytes(); o += m.max_chunk) {
    const size_t len = std::min(m.max_chunk, t.bytes() - o);
    m.check(MPI_Isend(p + o, m.count(len), MPI_BYTE, peer, kP2pTag, m.comm, m.post(peer, len)),
            "send", "MPI_Isend");
    m.wait("send", "MPI_Isend", 0, m.timeout);
  }
}

void MpiComm::do_recv(Tensor t, int peer) {
  Impl& m = *impl_;
  m.current = call_signature(Op::kRecv, t, peer);
  int64_t header[3] = {0, 0, 0};
  m.check(MPI_Irecv(header, 3, MPI_INT64_T, peer, kP2pTag, m.comm, m.post(peer, sizeof header)),
          "recv", "MPI_Irecv");
  m.wait("recv", "MPI_Irecv of the header", 0, m.timeout);
  const int64_t dtype = header[0], numel = header[1], chunk = header[2];
  const bool known = dtype >= 0 && dtype <= static_cast<int64_t>(DType::kI64) && numel >= 0 &&
                     chunk >= 8 && chunk <= INT_MAX;
  if (!known)
    throw_internal_error(kComponent, "rank {}: recv from rank {}: unreadable header", m.rank, peer);
  const size_t bytes = static_cast<size_t>(numel) * dtype_size(static_cast<DType>(dtype));
  const bool match = dtype == static_cast<int64_t>(t.dtype) && numel == t.numel();
  if (!match && m.scratch.size() < std::min(bytes, static_cast<size_t>(chunk)))
    m.scratch.resize(std::min(bytes, static_cast<size_t>(chunk)));
  auto* p = static_cast<std::byte*>(t.data);
  for (size_t o = 0; o < bytes; o += static_cast<size_t>(chunk)) {
    const size_t len = std::min(static_cast<size_t>(chunk), bytes - o);
    std::byte* to = match ? p + o : m.scratch.data();
    m.check(MPI_Irecv(to, m.count(len), MPI_BYTE, peer, kP2pTag, m.comm, m.post(peer, len)), "recv",
            "MPI_Irecv");
    m.wait("recv", "MPI_Irecv", 0, m.timeout);
  }
  if (!match)
    throw_internal_error(
        kComponent, "rank {}: recv from rank {}: it sent {} × {}, expected {} × {}", m.rank, peer,
        dtype_name(static_cast<DType>(dtype)), numel, dtype_name(t.dtype), t.numel());
}

// The signature exchange is an all-gather: no rank leaves it before every rank has entered.
void MpiComm::do_barrier() {
  impl_->exchange(Signature{static_cast<int64_t>(Op::kBarrier), 0, 0, 0, 0}, "barrier");
}

void MpiComm::do_barrier_long() {
  impl_->exchange(Signature{static_cast<int64_t>(Op::kBarrierLong), 0, 0, 0, 0}, "barrier_long",
                  comm_io_timeout_s(impl_->timeout));
}

double MpiComm::do_all_reduce_sum(double v) {
  const auto all = impl_->exchange(Signature{static_cast<int64_t>(Op::kScalarSum), 0, 0, 0, v},
                                   "all_reduce_sum");
  double sum = all[0].value;
  for (size_t r = 1; r < all.size(); ++r) sum += all[r].value;
  return sum;
}

double MpiComm::do_all_reduce_max(double v) {
  const auto all = impl_->exchange(Signature{static_cast<int64_t>(Op::kScalarMax), 0, 0, 0, v},
                                   "all_reduce_max");
  double max = -std::numeric_limits<double>::infinity();
  for (const Signature& s : all) {
    if (std::isnan(s.value)) return std::numeric_limits<double>::quiet_NaN();
    max = std::max(max, s.value);
  }
  return max;
}

}  // namespace fitlm::dist
