#include "fitlm/backend/cuda/nccl_comm.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <thread>
#include <vector>

#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/backend/cuda/cuda_rank_order_sum.cuh"
#include "fitlm/core/error.h"
#include "fitlm/core/shard.h"
#include "fitlm/dist/call_signature.h"
#include "fitlm/dist/gpu_comm_memory.h"

namespace fitlm::dist {
namespace {

constexpr const char* kComponent = "dist";

using Op = CallOp;
using Signature = CallSignature;

// The header of a send: what the receiver checks before it takes the data.
struct P2pHeader {
  int64_t dtype = 0, numel = 0, chunk = 0;
};

// Device bytes beside the staging buffer: every rank's signature and two send/recv headers
// (what dist/gpu_comm_memory.h counts for the planner).
size_t control_bytes(int world) {
  static_assert(sizeof(Signature) == dist::kGpuCommSignatureBytes &&
                sizeof(P2pHeader) == dist::kGpuCommHeaderBytes);
  return static_cast<size_t>(world) * sizeof(Signature) + 2 * sizeof(P2pHeader);
}

size_t staging_slot_elems(size_t max_chunk, size_t esz) {
  return std::max<size_t>(1, max_chunk / esz);
}

void check_options(const NcclCommOptions& o) {
  if (o.max_chunk_bytes < 16)
    throw_internal_error(kComponent, "NcclComm: max_chunk_bytes {} is under 16", o.max_chunk_bytes);
  if (!(o.timeout_s > 0) || !(o.init_timeout_s > 0))
    throw_internal_error(kComponent, "NcclComm: timeouts must be positive ({} s, init {} s)",
                         o.timeout_s, o.init_timeout_s);
}

using Clock = std::chrono::steady_clock;

}  // namespace

size_t nccl_comm_reserved_bytes(int world, const NcclCommOptions& options) {
  return dist::gpu_comm_reserved_bytes(world, options.max_chunk_bytes);
}

struct NcclComm::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  size_t max_chunk = 0;
  double timeout = 60;
  bool check_calls = true;
  bool wait_each_op = true;
  bool aborted = false;
  std::unique_ptr<Comm> bootstrap;  // when this comm owns it (make_nccl_comm (b))
  std::byte* staging = nullptr;     // (size − 1) slots of max_chunk bytes
  std::byte* d_control = nullptr;   // control_bytes(size): signatures, then two headers
  std::byte* h_control = nullptr;   // pinned mirror
  cudaEvent_t done = nullptr;
  std::vector<int64_t> offsets, sizes;  // one piece per rank, in elements

  Signature* d_sig() const { return reinterpret_cast<Signature*>(d_control); }
  Signature* h_sig() const { return reinterpret_cast<Signature*>(h_control); }
  P2pHeader* d_hdr(int k) const {
    return reinterpret_cast<P2pHeader*>(d_control + size * sizeof(Signature)) + k;
  }
  P2pHeader* h_hdr(int k) const {
    return reinterpret_cast<P2pHeader*>(h_control + size * sizeof(Signature)) + k;
  }

  ~Impl() {
    if (comm != nullptr && !aborted) {
      if (std::uncaught_exceptions() > 0) {
        ncclCommAbort(comm);
      } else {
        // Finalize flushes this rank's work; on a healthy comm it returns at once.
        ncclResult_t st = ncclCommFinalize(comm);
        const auto deadline = Clock::now() + std::chrono::duration<double>(timeout);
        while (st == ncclInProgress && Clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          if (ncclCommGetAsyncError(comm, &st) != ncclSuccess) st = ncclInternalError;
        }
        if (st == ncclSuccess)
          ncclCommDestroy(comm);
        else
          ncclCommAbort(comm);
      }
    }
    if (done != nullptr) cudaEventDestroy(done);
    if (staging != nullptr) cudaFree(staging);
    if (d_control != nullptr) cudaFree(d_control);
    if (h_control != nullptr) cudaFreeHost(h_control);
  }

  std::string who() const { return fmt::format("rank {} of {}", rank, size); }

  // Aborts the communicator (once) and throws, naming this rank and the operation.
  [[noreturn]] void fail(const std::string& what, const std::string& why) {
    if (comm != nullptr && !aborted) {
      aborted = true;
      ncclCommAbort(comm);
    }
    throw_internal_error(kComponent, "{}: {} {}; aborted the NCCL communicator", who(), what, why);
  }

  void check_usable(const std::string& what) const {
    if (aborted)
      throw_internal_error(kComponent,
                           "{}: {}: the NCCL communicator was aborted by an earlier "
                           "failure",
                           who(), what);
  }

  std::string nccl_text(ncclResult_t r) const {
    const char* last = ncclGetLastError(comm);
    return fmt::format("{}{}{}", ncclGetErrorString(r), last && *last ? ": " : "",
                       last ? last : "");
  }

  // A non-blocking communicator returns ncclInProgress while it is still enqueuing; wait until
  // it has (or fails), bounded by the timeout.
  void check(ncclResult_t r, const std::string& what, const char* call) {
    if (r == ncclSuccess) return;
    if (r != ncclInProgress) fail(what, fmt::format("failed in {}: {}", call, nccl_text(r)));
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout);
    for (int polls = 0;; ++polls) {
      ncclResult_t st = ncclSuccess;
      const ncclResult_t q = ncclCommGetAsyncError(comm, &st);
      if (q != ncclSuccess) fail(what, fmt::format("ncclCommGetAsyncError: {}", nccl_text(q)));
      if (st == ncclSuccess) return;
      if (st != ncclInProgress) fail(what, fmt::format("failed in {}: {}", call, nccl_text(st)));
      if (Clock::now() > deadline)
        fail(what, fmt::format("was not enqueued by {} within {} s: a rank died or hangs", call,
                               timeout));
      pause(polls);
    }
  }

  // Short yields first (most waits end within microseconds), then sleeps growing to 1 ms, so a
  // long wait costs no CPU.
  static void pause(int polls) {
    if (polls < 64)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 10 * (polls - 63))));
  }

  // The watchdog: waits until the stream has run everything enqueued so far, polling NCCL for
  // asynchronous errors; past the timeout it aborts the communicator and throws.
  void wait(const std::string& what) {
    FITLM_CUDA_CHECK(cudaEventRecord(done, stream));
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(timeout);
    for (int polls = 0;; ++polls) {
      const cudaError_t e = cudaEventQuery(done);
      ncclResult_t st = ncclSuccess;
      const ncclResult_t q = ncclCommGetAsyncError(comm, &st);
      if (q != ncclSuccess) fail(what, fmt::format("ncclCommGetAsyncError: {}", nccl_text(q)));
      if (st != ncclSuccess && st != ncclInProgress)
        fail(what, fmt::format("failed: {}", nccl_text(st)));
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady)
        fail(what, fmt::format("failed on the device: {}", cudaGetErrorString(e)));
      if (Clock::now() > deadline)
        fail(what, fmt::format("did not finish in {} s: a rank died or hangs", timeout));
      pause(polls);
    }
  }

  // Every rank's signature (rank order); throws on every rank when they are not all the same
  // call. Waits for the exchange (and so for the work enqueued before it).
  const Signature* exchange(const Signature& mine, const std::string& what) {
    check_usable(what);
    h_sig()[rank] = mine;
    FITLM_CUDA_CHECK(cudaMemcpyAsync(d_sig() + rank, h_sig() + rank, sizeof(Signature),
                                     cudaMemcpyHostToDevice, stream));
    check(ncclAllGather(d_sig() + rank, d_sig(), sizeof(Signature), ncclUint8, comm, stream), what,
          "ncclAllGather of the call signatures");
    FITLM_CUDA_CHECK(cudaMemcpyAsync(h_sig(), d_sig(), size * sizeof(Signature),
                                     cudaMemcpyDeviceToHost, stream));
    wait(what);
    const Signature* all = h_sig();
    std::string others;
    int differing = 0;
    for (int r = 1; r < size; ++r) {
      if (same_call(all[r], all[0])) continue;
      if (++differing <= 4) others += fmt::format("; rank {} calls {}", r, describe(all[r]));
    }
    if (differing > 4) others += fmt::format("; and {} more ranks differ", differing - 4);
    if (differing > 0)
      throw_internal_error(kComponent,
                           "{}: the ranks disagree on the collective: rank 0 calls {}{} (every "
                           "rank must make the same calls with the same sizes)",
                           who(), describe(all[0]), others);
    return all;
  }

  // The start of a tensor collective: its description, and the signature check when on.
  std::string begin(const Signature& s) {
    std::string what = describe(s);
    check_usable(what);
    if (check_calls && size > 1) exchange(s, what);
    return what;
  }

  void finish(const std::string& what) {
    if (wait_each_op) wait(what);
  }

  // One round of a sum. Rank r's piece is sizes[r] elements at offsets[r] of `in`: every rank
  // sends its copy of rank p's piece to rank p and receives every other rank's copy of its own
  // piece into a staging slot; the kernel then writes their rank-order sum to `out`.
  void reduce_round(const std::byte* in, std::byte* out, DType dtype, const std::string& what) {
    const size_t esz = dtype_size(dtype);
    const int64_t slot = static_cast<int64_t>(staging_slot_elems(max_chunk, esz));
    const int64_t mine = sizes[rank];
    if (size > 1) {
      check(ncclGroupStart(), what, "ncclGroupStart");
      for (int s = 1; s < size; ++s) {
        const int dst = (rank + s) % size, src = (rank - s + size) % size;
        if (sizes[dst] > 0)
          check(ncclSend(in + offsets[dst] * esz, static_cast<size_t>(sizes[dst]) * esz, ncclUint8,
                         dst, comm, stream),
                what, "ncclSend");
        if (mine > 0) {
          std::byte* to = staging + (src < rank ? src : src - 1) * slot * esz;
          check(ncclRecv(to, static_cast<size_t>(mine) * esz, ncclUint8, src, comm, stream), what,
                "ncclRecv");
        }
      }
      check(ncclGroupEnd(), what, "ncclGroupEnd");
    }
    cuda::launch_rank_order_sum(dtype, in + offsets[rank] * esz, rank, staging, slot, size, out,
                                mine, stream);
  }

  // Every rank's piece (offsets/sizes) of `buf` to every other rank. When all pieces are equal
  // and in rank order from 0 this is NCCL's in-place all-gather, otherwise grouped send/recv.
  void gather_pieces(std::byte* buf, size_t esz, const std::string& what) {
    if (size == 1) return;
    bool uniform = true;
    for (int r = 0; r < size; ++r)
      uniform = uniform && sizes[r] == sizes[0] && offsets[r] == offsets[0] + r * sizes[0];
    if (uniform) {
      if (sizes[0] == 0) return;
      const size_t bytes = static_cast<size_t>(sizes[0]) * esz;
      check(ncclAllGather(buf + offsets[rank] * esz, buf + offsets[0] * esz, bytes, ncclUint8, comm,
                          stream),
            what, "ncclAllGather");
      return;
    }
    check(ncclGroupStart(), what, "ncclGroupStart");
    for (int s = 1; s < size; ++s) {
      const int dst = (rank + s) % size, src = (rank - s + size) % size;
      if (sizes[rank] > 0)
        check(ncclSend(buf + offsets[rank] * esz, static_cast<size_t>(sizes[rank]) * esz, ncclUint8,
                       dst, comm, stream),
              what, "ncclSend");
      if (sizes[src] > 0)
        check(ncclRecv(buf + offsets[src] * esz, static_cast<size_t>(sizes[src]) * esz, ncclUint8,
                       src, comm, stream),
              what, "ncclRecv");
    }
    check(ncclGroupEnd(), what, "ncclGroupEnd");
  }

  // reduce_scatter_sum_blocks without the signature and the wait: the core/shard.h blocks of
  // `buf`, in rounds of at most one staging slot per block.
  void reduce_blocks(Tensor buf, const std::string& what) {
    const size_t esz = dtype_size(buf.dtype);
    const int64_t n = buf.numel(), stride = shard_stride(n, size);
    const int64_t chunk = static_cast<int64_t>(staging_slot_elems(max_chunk, esz));
    auto* base = static_cast<std::byte*>(buf.data);
    for (int64_t o = 0; o < stride; o += chunk) {
      for (int r = 0; r < size; ++r) {
        const ShardBlock b = shard_block(n, r, size);
        offsets[r] = b.offset + std::min(o, b.size);
        sizes[r] = std::clamp<int64_t>(b.size - o, 0, chunk);
      }
      reduce_round(base, base + offsets[rank] * esz, buf.dtype, what);
    }
  }

  // all_gather_blocks without the signature and the wait: one exchange of the whole blocks.
  void gather_blocks(Tensor buf, const std::string& what) {
    const int64_t n = buf.numel();
    for (int r = 0; r < size; ++r) {
      const ShardBlock b = shard_block(n, r, size);
      offsets[r] = b.offset;
      sizes[r] = b.size;
    }
    gather_pieces(static_cast<std::byte*>(buf.data), dtype_size(buf.dtype), what);
  }
};

NcclComm::NcclComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclComm::~NcclComm() = default;

int NcclComm::rank() const {
  return impl_->rank;
}
int NcclComm::world_size() const {
  return impl_->size;
}
int NcclComm::local_rank() const {
  return impl_->local_rank;
}
int NcclComm::local_world_size() const {
  return impl_->local_size;
}
size_t NcclComm::reserved_bytes() const {
  return nccl_comm_reserved_bytes(impl_->size,
                                  NcclCommOptions{.max_chunk_bytes = impl_->max_chunk});
}
double NcclComm::timeout_s() const {
  return impl_->timeout;
}
void* NcclComm::native_handle() const {
  return impl_->comm;
}

void NcclComm::abort(int exit_code) {
  if (impl_->comm != nullptr && !impl_->aborted) {
    impl_->aborted = true;
    ncclCommAbort(impl_->comm);
  }
  if (impl_->bootstrap) impl_->bootstrap->abort(exit_code);
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

void NcclComm::do_all_reduce_sum(Tensor buf) {
  Impl& m = *impl_;
  const std::string what = m.begin(call_signature(Op::kAllReduceSum, buf, 0));
  if (m.size == 1) return;
  m.reduce_blocks(buf, what);
  m.gather_blocks(buf, what);
  m.finish(what);
}

void NcclComm::do_reduce_scatter_sum(const Tensor& in, Tensor out) {
  Impl& m = *impl_;
  const std::string what = m.begin(call_signature(Op::kReduceScatterSum, in, out.numel()));
  const size_t esz = dtype_size(in.dtype);
  const int64_t n = out.numel();
  const int64_t chunk = static_cast<int64_t>(staging_slot_elems(m.max_chunk, esz));
  for (int64_t o = 0; o < n; o += chunk) {
    const int64_t len = std::min(chunk, n - o);
    for (int r = 0; r < m.size; ++r) {
      m.offsets[r] = r * n + o;
      m.sizes[r] = len;
    }
    m.reduce_round(static_cast<const std::byte*>(in.data),
                   static_cast<std::byte*>(out.data) + o * esz, in.dtype, what);
  }
  m.finish(what);
}

void NcclComm::do_all_gather(const Tensor& in, Tensor out) {
  Impl& m = *impl_;
  const std::string what = m.begin(call_signature(Op::kAllGather, in, out.numel()));
  if (in.bytes() > 0)
    m.check(ncclAllGather(in.data, out.data, in.bytes(), ncclUint8, m.comm, m.stream), what,
            "ncclAllGather");
  m.finish(what);
}

void NcclComm::do_reduce_scatter_sum_blocks(Tensor buf) {
  Impl& m = *impl_;
  const std::string what = m.begin(call_signature(Op::kReduceScatterBlocks, buf, 0));
  if (m.size == 1) return;
  m.reduce_blocks(buf, what);
  m.finish(what);
}

void NcclComm::do_all_gather_blocks(Tensor buf) {
  Impl& m = *impl_;
  const std::string what = m.begin(call_signature(Op::kAllGatherBlocks, buf, 0));
  if (m.size == 1) return;
  m.gather_blocks(buf, what);
  m.finish(what);
}

void NcclComm::do_broadcast(Tensor buf, int root) {
  Impl& m = *impl_;
  const std::string what = m.begin(call_signature(Op::kBroadcast, buf, root));
  if (m.size > 1 && buf.bytes() > 0)
    m.check(ncclBroadcast(buf.data, buf.data, buf.bytes(), ncclUint8, root, m.comm, m.stream), what,
            "ncclBroadcast");
  m.finish(what);
}

// A send is a header (dtype, element count, chunk size) and the data in chunks of at most
// max_chunk bytes, so that a receiver expecting something else can still take every chunk
// (the sender does not hang) before it throws. No signature exchange: only two ranks take part.
void NcclComm::do_send(const Tensor& t, int peer) {
  Impl& m = *impl_;
  const std::string what = describe(call_signature(Op::kSend, t, peer));
  m.check_usable(what);
  *m.h_hdr(0) = {static_cast<int64_t>(t.dtype), t.numel(), static_cast<int64_t>(m.max_chunk)};
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(m.d_hdr(0), m.h_hdr(0), sizeof(P2pHeader), cudaMemcpyHostToDevice, m.stream));
  m.check(ncclSend(m.d_hdr(0), sizeof(P2pHeader), ncclUint8, peer, m.comm, m.stream), what,
          "ncclSend");
  const auto* p = static_cast<const std::byte*>(t.data);
  for (size_t o = 0; o < t.bytes(); o += m.max_chunk) {
    const size_t len = std::min(m.max_chunk, t.bytes() - o);
    m.check(ncclSend(p + o, len, ncclUint8, peer, m.comm, m.stream), what, "ncclSend");
  }
  m.wait(what);  // always: the next send rewrites the pinned header its copy reads
}

void NcclComm::do_recv(Tensor t, int peer) {
  Impl& m = *impl_;
  const std::string what = describe(call_signature(Op::kRecv, t, peer));
  m.check_usable(what);
  m.check(ncclRecv(m.d_hdr(1), sizeof(P2pHeader), ncclUint8, peer, m.comm, m.stream), what,
          "ncclRecv");
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(m.h_hdr(1), m.d_hdr(1), sizeof(P2pHeader), cudaMemcpyDeviceToHost, m.stream));
  m.wait(what);
  const P2pHeader h = *m.h_hdr(1);
  const bool known =
      h.dtype >= 0 && h.dtype <= static_cast<int64_t>(DType::kI64) && h.numel >= 0 && h.chunk >= 16;
  if (!known) m.fail(what, fmt::format("got an unreadable header from rank {}", peer));
  const size_t bytes = static_cast<size_t>(h.numel) * dtype_size(static_cast<DType>(h.dtype));
  const size_t chunk = static_cast<size_t>(h.chunk);
  const bool match = h.dtype == static_cast<int64_t>(t.dtype) && h.numel == t.numel();
  // A mismatch is drained into the staging buffer, (N − 1) × this rank's chunk bytes.
  const size_t drain = static_cast<size_t>(m.size - 1) * m.max_chunk;
  if (!match && std::min(bytes, chunk) > drain)
    m.fail(what, fmt::format("rank {} sent {} × {} in chunks of {} bytes, expected {} × {}, and "
                             "this rank cannot take them off the wire",
                             peer, dtype_name(static_cast<DType>(h.dtype)), h.numel, chunk,
                             dtype_name(t.dtype), t.numel()));
  auto* p = static_cast<std::byte*>(t.data);
  for (size_t o = 0; o < bytes; o += chunk) {
    const size_t len = std::min(chunk, bytes - o);
    m.check(ncclRecv(match ? p + o : m.staging, len, ncclUint8, peer, m.comm, m.stream), what,
            "ncclRecv");
  }
  m.finish(what);
  if (!match)
    throw_internal_error(kComponent, "{}: recv from rank {}: it sent {} × {}, expected {} × {}",
                         m.who(), peer, dtype_name(static_cast<DType>(h.dtype)), h.numel,
                         dtype_name(t.dtype), t.numel());
}

// The signature all-gather: no rank leaves it before every rank has entered.
void NcclComm::do_barrier() {
  impl_->exchange(Signature{static_cast<int64_t>(Op::kBarrier), 0, 0, 0, 0}, "barrier()");
}

// The barrier while another rank does long I/O: the same exchange, with the I/O timeout (no
// limit: a year, which the deadline arithmetic still holds).
void NcclComm::do_barrier_long() {
  Impl& m = *impl_;
  const double timeout = m.timeout, io = comm_io_timeout_s(timeout);
  m.timeout = io > 0 ? io : 365.0 * 24 * 3600;
  try {
    m.exchange(Signature{static_cast<int64_t>(Op::kBarrier), 0, 0, 0, 0}, "barrier_long()");
  } catch (...) {
    m.timeout = timeout;
    throw;
  }
  m.timeout = timeout;
}

double NcclComm::do_all_reduce_sum(double v) {
  const Signature* all = impl_->exchange(
      Signature{static_cast<int64_t>(Op::kScalarSum), 0, 0, 0, v}, "all_reduce_sum(double)");
  double sum = all[0].value;
  for (int r = 1; r < impl_->size; ++r) sum += all[r].value;
  return sum;
}

double NcclComm::do_all_reduce_max(double v) {
  const Signature* all = impl_->exchange(
      Signature{static_cast<int64_t>(Op::kScalarMax), 0, 0, 0, v}, "all_reduce_max(double)");
  double max = -std::numeric_limits<double>::infinity();
  for (int r = 0; r < impl_->size; ++r) {
    if (std::isnan(all[r].value)) return std::numeric_limits<double>::quiet_NaN();
    max = std::max(max, all[r].value);
  }
  return max;
}

NcclUniqueId nccl_unique_id() {
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess)
    throw_internal_error(kComponent, "ncclGetUniqueId failed: {}", ncclGetErrorString(r));
  NcclUniqueId out;
  static_assert(sizeof(id) == out.size());
  std::memcpy(out.data(), &id, out.size());
  return out;
}

namespace {

std::unique_ptr<NcclComm> create(Backend& backend, const NcclRanks& ranks, const NcclUniqueId& id,
                                 const NcclCommOptions& options, std::unique_ptr<Comm> owned) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr)
    throw_internal_error(kComponent, "NcclComm needs a CUDA backend, not '{}'", backend.name());
  check_options(options);
  if (ranks.world < 1 || ranks.rank < 0 || ranks.rank >= ranks.world)
    throw_internal_error(kComponent, "NcclComm: rank {} of {}", ranks.rank, ranks.world);
  auto impl = std::make_unique<NcclComm::Impl>();
  impl->device = cuda->device().index;
  impl->stream = cuda->stream();
  impl->rank = ranks.rank;
  impl->size = ranks.world;
  impl->local_rank = ranks.local_rank;
  impl->local_size = ranks.local_world;
  impl->max_chunk = options.max_chunk_bytes;
  impl->timeout = comm_timeout_s(options.timeout_s, /*zero_is_no_limit=*/false);
  impl->check_calls = options.check_calls;
  impl->wait_each_op = options.wait_each_op;
  impl->bootstrap = std::move(owned);
  impl->offsets.resize(static_cast<size_t>(ranks.world));
  impl->sizes.resize(static_cast<size_t>(ranks.world));
  FITLM_CUDA_CHECK(cudaSetDevice(impl->device));

  const std::string what = fmt::format("creating the NCCL communicator on cuda:{}", impl->device);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclUniqueId uid;
  std::memcpy(&uid, id.data(), id.size());
  ncclResult_t r = ncclCommInitRankConfig(&impl->comm, ranks.world, uid, ranks.rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    impl->comm = nullptr;
    throw_internal_error(kComponent, "{}: {} failed: {}", impl->who(), what, ncclGetErrorString(r));
  }
  const auto deadline = Clock::now() + std::chrono::duration<double>(options.init_timeout_s);
  for (int polls = 0;; ++polls) {
    ncclResult_t st = ncclSuccess;
    if (ncclCommGetAsyncError(impl->comm, &st) != ncclSuccess) st = ncclInternalError;
    if (st == ncclSuccess) break;
    if (st != ncclInProgress) impl->fail(what, fmt::format("failed: {}", impl->nccl_text(st)));
    if (Clock::now() > deadline)
      impl->fail(what, fmt::format("did not finish in {} s: did every rank start?",
                                   options.init_timeout_s));
    NcclComm::Impl::pause(polls);
  }

  const size_t staging = static_cast<size_t>(ranks.world - 1) * options.max_chunk_bytes;
  if (staging > 0 && cudaMalloc(reinterpret_cast<void**>(&impl->staging), staging) != cudaSuccess) {
    (void)cudaGetLastError();
    impl->staging = nullptr;
    throw_internal_error(kComponent,
                         "{}: cannot allocate the NCCL staging buffer ({} bytes) on "
                         "cuda:{}",
                         impl->who(), staging, impl->device);
  }
  FITLM_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&impl->d_control), control_bytes(ranks.world)));
  FITLM_CUDA_CHECK(
      cudaMallocHost(reinterpret_cast<void**>(&impl->h_control), control_bytes(ranks.world)));
  FITLM_CUDA_CHECK(cudaEventCreateWithFlags(&impl->done, cudaEventDisableTiming));
  return std::make_unique<NcclComm>(std::move(impl));
}

// Rank 0's id, broadcast over `bootstrap` from memory of its device kind.
NcclUniqueId broadcast_id(Comm& bootstrap) {
  NcclUniqueId id{};
  if (bootstrap.rank() == 0) id = nccl_unique_id();
  if (bootstrap.world_size() == 1) return id;
  if (bootstrap.device_kind() == DeviceKind::kCPU) {
    bootstrap.broadcast(Tensor(id.data(), DType::kU8, Shape{128}, Device{DeviceKind::kCPU, 0}), 0);
    return id;
  }
  int device = 0;
  FITLM_CUDA_CHECK(cudaGetDevice(&device));
  void* d = nullptr;
  FITLM_CUDA_CHECK(cudaMalloc(&d, id.size()));
  try {
    FITLM_CUDA_CHECK(cudaMemcpy(d, id.data(), id.size(), cudaMemcpyHostToDevice));
    FITLM_CUDA_CHECK(cudaDeviceSynchronize());  // the comm's stream does not wait for it
    bootstrap.broadcast(Tensor(d, DType::kU8, Shape{128}, Device{DeviceKind::kCUDA, device}), 0);
    FITLM_CUDA_CHECK(cudaDeviceSynchronize());
    FITLM_CUDA_CHECK(cudaMemcpy(id.data(), d, id.size(), cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaFree(d);
    throw;
  }
  cudaFree(d);
  return id;
}

NcclRanks ranks_of(const Comm& c) {
  return {c.rank(), c.world_size(), c.local_rank(), c.local_world_size()};
}

}  // namespace

std::unique_ptr<NcclComm> make_nccl_comm(Backend& cuda_backend, Comm& bootstrap,
                                         NcclCommOptions options) {
  const NcclUniqueId id = broadcast_id(bootstrap);
  return create(cuda_backend, ranks_of(bootstrap), id, options, nullptr);
}

std::unique_ptr<NcclComm> make_nccl_comm(Backend& cuda_backend, std::unique_ptr<Comm> bootstrap,
                                         NcclCommOptions options) {
  FITLM_CHECK(bootstrap != nullptr, kComponent, "make_nccl_comm: no bootstrap comm");
  const NcclUniqueId id = broadcast_id(*bootstrap);
  const NcclRanks ranks = ranks_of(*bootstrap);
  return create(cuda_backend, ranks, id, options, std::move(bootstrap));
}

std::unique_ptr<NcclComm> make_nccl_comm(Backend& cuda_backend, const NcclRanks& ranks,
                                         const NcclUniqueId& id, NcclCommOptions options) {
  return create(cuda_backend, ranks, id, options, nullptr);
}

}  // namespace fitlm::dist
