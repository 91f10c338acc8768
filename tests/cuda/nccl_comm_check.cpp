// The GPU check of NcclComm (backend/cuda/nccl_comm.h): every rank runs it, one process per
// GPU, each on GPU local_rank (scripts/device/nccl-check.sh starts it under mpirun, under a
// torchrun-style environment, or alone for one GPU). Each rank derives every rank's inputs from
// the seed and that rank (random, never zero, of mixed magnitudes so that another order of adds
// gives other bits), adds them in rank order on the host (dist::sum_in_rank_order) and requires
// the comm's device results to be bit-identical. Exits non-zero, naming the rank, on a mismatch.
//
//   nccl_comm_check [--seed N]            the checks (also the device rank-order-sum kernel with
//                                         2..8 pieces, which needs one GPU only)
//   nccl_comm_check --fault exit --fault-rank R
//                                         all-reduces in a loop until rank R exits; the others
//                                         must fail with the watchdog's error (non-zero exit)
//   nccl_comm_check --bench               all-reduce bus bandwidth, 1 MiB .. 1 GiB of bf16:
//                                         NcclComm as the trainer calls it, NcclComm enqueue-only,
//                                         and plain ncclAllReduce (not rank-ordered) for scale
#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fitlm/backend/cuda/cuda_backend.h"
#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_rank_order_sum.cuh"
#include "fitlm/backend/cuda/nccl_comm.h"
#include "fitlm/backend/registry/make_comm_for.h"
#include "fitlm/core/error.h"
#include "fitlm/core/shard.h"
#include "fitlm/core/tensor.h"
#include "fitlm/dist/launch_env.h"
#include "fitlm/dist/rank_order_sum.h"

using namespace fitlm;
using fitlm::dist::Comm;

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_internal_error("check", "{}: {}", what, cudaGetErrorString(e));
}

// Device memory owned by the check.
class DeviceBuffer {
 public:
  DeviceBuffer(DType dtype, int64_t n, int device) : dtype_(dtype), n_(n), device_(device) {
    cuda_ok(cudaMalloc(&p_, std::max<size_t>(bytes(), 16)), "cudaMalloc");
    poison();
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  size_t bytes() const { return static_cast<size_t>(n_) * dtype_size(dtype_); }
  Tensor tensor() const {
    return Tensor(p_, dtype_, Shape{n_}, Device{DeviceKind::kCUDA, device_});
  }
  // Elements [begin, end) as a tensor.
  Tensor slice(int64_t begin, int64_t end) const {
    return Tensor(static_cast<std::byte*>(p_) + begin * dtype_size(dtype_), dtype_,
                  Shape{end - begin}, Device{DeviceKind::kCUDA, device_});
  }
  // 0xff bytes: NaN in every float dtype, so an element nothing wrote shows.
  // The copies run on the legacy stream and may return before they land (pageable memory);
  // the comm works on the backend's non-blocking stream, so each one ends with a device sync.
  void poison() {
    cuda_ok(cudaMemset(p_, 0xff, std::max<size_t>(bytes(), 16)), "cudaMemset");
    cuda_ok(cudaDeviceSynchronize(), "sync");
  }
  void upload(const Tensor& host, int64_t at = 0) {
    if (host.bytes() > 0)
      cuda_ok(cudaMemcpy(static_cast<std::byte*>(p_) + at * dtype_size(dtype_), host.data,
                         host.bytes(), cudaMemcpyHostToDevice),
              "upload");
    cuda_ok(cudaDeviceSynchronize(), "sync");
  }
  HostBuffer download(int64_t begin, int64_t end) const {
    HostBuffer h(dtype_, Shape{end - begin});
    cuda_ok(cudaDeviceSynchronize(), "sync");
    if (end > begin)
      cuda_ok(cudaMemcpy(h.tensor().data, static_cast<std::byte*>(p_) + begin * dtype_size(dtype_),
                         h.tensor().bytes(), cudaMemcpyDeviceToHost),
              "download");
    return h;
  }
  HostBuffer download() const { return download(0, n_); }

 private:
  void* p_ = nullptr;
  DType dtype_;
  int64_t n_;
  int device_;
};

class Check {
 public:
  Check(Comm& comm, int device, uint64_t seed)
      : comm_(comm), n_(comm.world_size()), me_(comm.rank()), device_(device), seed_(seed) {}

  int failures() const { return failures_; }
  int checks() const { return checks_; }

  template <typename... Args>
  void fail(fmt::format_string<Args...> f, Args&&... args) {
    ++failures_;
    fmt::print(stderr, "rank {} of {} ({} comm): FAIL {}\n", me_, n_, comm_.name(),
               fmt::format(f, std::forward<Args>(args)...));
  }

  void expect(bool ok, const std::string& what) {
    ++checks_;
    if (!ok) fail("{}", what);
  }

  // Rank r's `count` values of case `id`: ±[1, 2) · 2^[-8, 8], stored as `dtype`.
  HostBuffer input(int id, int r, DType dtype, int64_t count) const {
    std::seed_seq seq{seed_, static_cast<uint64_t>(id), static_cast<uint64_t>(r)};
    std::mt19937_64 g(seq);
    std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
    std::uniform_int_distribution<int> exponent(-8, 8);
    HostBuffer b(dtype, Shape{count});
    auto* bytes = static_cast<uint8_t*>(b.tensor().data);
    for (int64_t i = 0; i < count; ++i) {
      float v = std::ldexp(mantissa(g), exponent(g));
      if (g() & 1) v = -v;
      switch (dtype) {
        case DType::kF32: b.f32()[i] = v; break;
        case DType::kBF16: b.tensor().as<uint16_t>()[i] = f32_to_bf16(v); break;
        case DType::kF16: b.tensor().as<uint16_t>()[i] = f32_to_f16(v); break;
        default:  // byte copies: any bytes, never all zero
          for (size_t k = 0; k < dtype_size(dtype); ++k)
            bytes[i * dtype_size(dtype) + k] = static_cast<uint8_t>(g() | 1);
      }
    }
    return b;
  }

  // Elements [begin, begin + count) of the rank-order sum of every rank's input `id`.
  HostBuffer expected_sum(int id, DType dtype, int64_t total, int64_t begin, int64_t count) const {
    std::vector<HostBuffer> in;
    std::vector<const void*> pieces;
    for (int r = 0; r < n_; ++r) in.push_back(input(id, r, dtype, total));
    for (const HostBuffer& b : in)
      pieces.push_back(static_cast<const std::byte*>(b.tensor().data) + begin * dtype_size(dtype));
    HostBuffer out(dtype, Shape{count});
    if (count > 0) dist::sum_in_rank_order(pieces, dtype, count, out.tensor().data);
    return out;
  }

  void expect_same(const Tensor& got, const Tensor& want, const std::string& what) {
    ++checks_;
    const size_t esz = dtype_size(want.dtype);
    for (int64_t i = 0; i < want.numel(); ++i) {
      if (std::memcmp(static_cast<const uint8_t*>(got.data) + i * esz,
                      static_cast<const uint8_t*>(want.data) + i * esz, esz) == 0)
        continue;
      fail("{}: element {} of {} differs", what, i, want.numel());
      return;
    }
  }

  template <typename Fn>
  void expect_error(Fn&& fn, const std::string& want, const std::string& what) {
    ++checks_;
    try {
      fn();
      fail("{}: no error (expected one containing '{}')", what, want);
    } catch (const Error& e) {
      if (std::string(e.what()).find(want) == std::string::npos)
        fail("{}: error '{}' does not contain '{}'", what, e.what(), want);
    }
  }

  static constexpr DType kSummed[] = {DType::kF32, DType::kBF16, DType::kF16};

  void all_reduce(const std::vector<int64_t>& sizes) {
    for (DType dtype : kSummed) {
      for (int64_t count : sizes) {
        const int id = next_id_++;
        DeviceBuffer buf(dtype, count, device_);
        buf.upload(input(id, me_, dtype, count));
        comm_.all_reduce_sum(buf.tensor());
        expect_same(buf.download().tensor(), expected_sum(id, dtype, count, 0, count).tensor(),
                    fmt::format("all_reduce_sum {} × {}", dtype_name(dtype), count));
      }
    }
  }

  void reduce_scatter(const std::vector<int64_t>& blocks) {
    for (DType dtype : kSummed) {
      for (int64_t block : blocks) {
        for (bool in_place : {false, true}) {
          const int id = next_id_++;
          DeviceBuffer in(dtype, block * n_, device_), separate(dtype, block, device_);
          in.upload(input(id, me_, dtype, block * n_));
          const Tensor out =
              in_place ? in.slice(me_ * block, (me_ + 1) * block) : separate.tensor();
          comm_.reduce_scatter_sum(in.tensor(), out);
          const HostBuffer got =
              in_place ? in.download(me_ * block, (me_ + 1) * block) : separate.download();
          expect_same(got.tensor(),
                      expected_sum(id, dtype, block * n_, me_ * block, block).tensor(),
                      fmt::format("reduce_scatter_sum {} × {}{}", dtype_name(dtype), block,
                                  in_place ? " in place" : ""));
        }
      }
    }
  }

  // The block ops over core/shard.h's blocks: block rank() summed; every block gathered.
  void blocks(const std::vector<int64_t>& sizes) {
    for (DType dtype : kSummed) {
      for (int64_t count : sizes) {
        const int id = next_id_++;
        const ShardBlock mine = shard_block(count, me_, n_);
        DeviceBuffer buf(dtype, count, device_);
        buf.upload(input(id, me_, dtype, count));
        comm_.reduce_scatter_sum_blocks(buf.tensor());
        expect_same(buf.download(mine.offset, mine.end()).tensor(),
                    expected_sum(id, dtype, count, mine.offset, mine.size).tensor(),
                    fmt::format("reduce_scatter_sum_blocks {} × {}", dtype_name(dtype), count));
      }
    }
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kU8, DType::kI64}) {
      for (int64_t count : sizes) {
        const int id = next_id_++;
        const ShardBlock mine = shard_block(count, me_, n_);
        DeviceBuffer buf(dtype, count, device_);  // poisoned, but for this rank's block
        const HostBuffer full = input(id, me_, dtype, count);
        buf.upload(full.tensor().slice_rows(mine.offset, mine.end()), mine.offset);
        comm_.all_gather_blocks(buf.tensor());
        const HostBuffer got = buf.download();
        for (int r = 0; r < n_; ++r) {
          const ShardBlock b = shard_block(count, r, n_);
          expect_same(got.tensor().slice_rows(b.offset, b.end()),
                      input(id, r, dtype, count).tensor().slice_rows(b.offset, b.end()),
                      fmt::format("all_gather_blocks {} × {}: block of rank {}", dtype_name(dtype),
                                  count, r));
        }
      }
    }
  }

  void all_gather(const std::vector<int64_t>& sizes) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kU8, DType::kI64}) {
      for (int64_t count : sizes) {
        for (bool in_place : {false, true}) {
          const int id = next_id_++;
          DeviceBuffer out(dtype, count * n_, device_), separate(dtype, count, device_);
          const HostBuffer mine = input(id, me_, dtype, count);
          Tensor in = separate.tensor();
          if (in_place) {
            in = out.slice(me_ * count, (me_ + 1) * count);
            out.upload(mine.tensor(), me_ * count);
          } else {
            separate.upload(mine.tensor());
          }
          comm_.all_gather(in, out.tensor());
          const HostBuffer got = out.download();
          for (int r = 0; r < n_; ++r)
            expect_same(got.tensor().slice_rows(r * count, (r + 1) * count),
                        input(id, r, dtype, count).tensor(),
                        fmt::format("all_gather {} × {}{}: block of rank {}", dtype_name(dtype),
                                    count, in_place ? " in place" : "", r));
        }
      }
    }
  }

  void broadcast(const std::vector<int64_t>& sizes) {
    for (DType dtype : {DType::kF32, DType::kI64}) {
      for (int64_t count : sizes) {
        for (int root = 0; root < n_; ++root) {
          const int id = next_id_++;
          DeviceBuffer buf(dtype, count, device_);
          buf.upload(input(id, me_, dtype, count));
          comm_.broadcast(buf.tensor(), root);
          expect_same(
              buf.download().tensor(), input(id, root, dtype, count).tensor(),
              fmt::format("broadcast {} × {} from rank {}", dtype_name(dtype), count, root));
        }
      }
    }
  }

  void send_recv(const std::vector<int64_t>& sizes) {
    for (int64_t count : sizes) {
      for (int a = 0; a < n_; ++a) {
        for (int b = 0; b < n_; ++b) {
          if (a == b) continue;
          const int id = next_id_++;
          if (me_ == a) {
            DeviceBuffer t(DType::kBF16, count, device_);
            t.upload(input(id, a, DType::kBF16, count));
            comm_.send(t.tensor(), b);
          }
          if (me_ == b) {
            DeviceBuffer t(DType::kBF16, count, device_);
            comm_.recv(t.tensor(), a);
            expect_same(t.download().tensor(), input(id, a, DType::kBF16, count).tensor(),
                        fmt::format("recv bf16 × {} from rank {}", count, a));
          }
        }
      }
    }
    // A receiver expecting another size throws; the sender is not left waiting, and the next
    // message still arrives whole.
    DeviceBuffer ten(DType::kF32, 10, device_), eleven(DType::kF32, 11, device_);
    if (me_ == 0) {
      comm_.send(ten.tensor(), 1);
      ten.upload(input(next_id_, 0, DType::kF32, 10));
      comm_.send(ten.tensor(), 1);
    }
    if (me_ == 1) {
      expect_error([&] { comm_.recv(eleven.tensor(), 0); }, "it sent f32 × 10, expected f32 × 11",
                   "recv of another size");
      comm_.recv(ten.tensor(), 0);
      expect_same(ten.download().tensor(), input(next_id_, 0, DType::kF32, 10).tensor(),
                  "recv after a mismatch");
    }
    ++next_id_;
  }

  void disagreement() {
    const int last = n_ - 1;
    DeviceBuffer buf(DType::kF32, me_ == last ? 11 : 10, device_);
    expect_error([&] { comm_.all_reduce_sum(buf.tensor()); },
                 fmt::format("rank {} calls all_reduce_sum(f32 × 11)", last),
                 "all_reduce_sum of different sizes");
    comm_.barrier();
  }

  void scalars() {
    std::mt19937_64 g(seed_ + 99);
    std::vector<double> v(static_cast<size_t>(n_));
    for (double& x : v)
      x = std::ldexp(std::uniform_real_distribution<double>(1, 2)(g),
                     std::uniform_int_distribution<int>(-30, 30)(g));
    double want = v[0];
    for (int r = 1; r < n_; ++r) want += v[r];
    const double got = comm_.all_reduce_sum(v[me_]);
    ++checks_;
    if (std::memcmp(&got, &want, sizeof got) != 0)
      fail("all_reduce_sum(double) is {:a}, expected {:a}", got, want);
    double max = v[0];
    for (double x : v) max = std::max(max, x);
    expect(comm_.all_reduce_max(v[me_]) == max, "all_reduce_max(double)");
    expect(std::isnan(comm_.all_reduce_max(me_ == n_ - 1 ? NAN : 1.0)),
           "all_reduce_max with a NaN on the last rank");
    for (int i = 0; i < 3; ++i) comm_.barrier();
  }

  // The device sum kernel alone, with `world` pieces (one GPU is enough): bit-identical to the
  // host rule for every position of the own piece, and in place; and the order shows.
  void kernel(cudaStream_t stream) {
    for (DType dtype : kSummed) {
      for (int world : {1, 2, 3, 5, 8}) {
        for (int64_t count : {int64_t{1}, int64_t{7}, int64_t{1000003}}) {
          const int id = next_id_++;
          std::vector<HostBuffer> in;
          std::vector<const void*> pieces;
          for (int r = 0; r < world; ++r) in.push_back(input(id, r, dtype, count));
          for (const HostBuffer& b : in) pieces.push_back(b.tensor().data);
          HostBuffer want(dtype, Shape{count});
          dist::sum_in_rank_order(pieces, dtype, count, want.tensor().data);
          const int64_t slot = count + 3;  // slots apart by more than a piece
          for (int me : {0, world / 2, world - 1}) {
            DeviceBuffer own(dtype, count, device_),
                staging(dtype, slot * std::max(1, world - 1), device_), out(dtype, count, device_);
            own.upload(in[me].tensor());
            for (int r = 0; r < world; ++r)
              if (r != me) staging.upload(in[r].tensor(), (r < me ? r : r - 1) * slot);
            for (bool in_place : {false, true}) {
              const Tensor o = in_place ? own.tensor() : out.tensor();
              cuda::launch_rank_order_sum(dtype, own.tensor().data, me, staging.tensor().data, slot,
                                          world, o.data, count, stream);
              cuda_ok(cudaStreamSynchronize(stream), "rank-order-sum kernel");
              expect_same(
                  (in_place ? own : out).download().tensor(), want.tensor(),
                  fmt::format("kernel {} × {}, {} pieces, own piece {}{}", dtype_name(dtype), count,
                              world, me, in_place ? " in place" : ""));
            }
          }
          if (world == 5 && count > 1000 && dtype == DType::kF32) {
            std::vector<const void*> reversed(pieces.rbegin(), pieces.rend());
            HostBuffer rev(dtype, Shape{count});
            dist::sum_in_rank_order(reversed, dtype, count, rev.tensor().data);
            expect(std::memcmp(rev.tensor().data, want.tensor().data, want.tensor().bytes()) != 0,
                   "the reverse order gives the same bits (the data cannot show the order)");
          }
        }
      }
    }
  }

 private:
  Comm& comm_;
  int n_, me_, device_;
  uint64_t seed_;
  int next_id_ = 0;
  int failures_ = 0, checks_ = 0;
};

struct Setup {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Comm> comm;
  dist::NcclComm* nccl = nullptr;
  int device = 0;
  cudaStream_t stream = nullptr;
};

Setup setup() {
  Setup s;
  const std::optional<dist::RankEnv> env = dist::rank_env_from_process();
  s.device = env ? env->local_rank : 0;
  s.backend = make_cuda_backend(s.device);
  s.stream = dynamic_cast<CudaBackend&>(*s.backend).stream();
  s.comm = make_comm_for(*s.backend);
  s.nccl = dynamic_cast<dist::NcclComm*>(s.comm.get());
  if (s.nccl == nullptr)
    throw_internal_error("check", "make_comm_for(cuda) gave the {} comm", s.comm->name());
  return s;
}

int run_checks(uint64_t seed) {
  Setup s = setup();
  Comm& comm = *s.comm;
  const int n = comm.world_size(), me = comm.rank();
  int failures = 0, checks = 0;
  const auto t0 = std::chrono::steady_clock::now();
  {
    Check c(comm, s.device, seed);
    if (me == 0) c.kernel(s.stream);
    c.all_reduce({0, 1, 2, n - 1, n + 1, 7, 1000, 4099, 65539, 1000003});
    c.reduce_scatter({1, 3, 1000, 4097, 250001});
    c.blocks({0, 1, 2, n - 1, n + 1, 7, 4096, 1000003});
    c.all_gather({0, 1, 5, 1003});
    c.broadcast({1, 1000, 65539});
    if (n >= 2) c.send_recv({0, 1, 1000, 65539});
    if (n >= 2) c.disagreement();
    c.scalars();
    failures += c.failures();
    checks += c.checks();
  }
  {
    // Staging slots of 48 bytes (12 f32, 24 bf16): every chunked path, blocks split over
    // rounds, short and empty last blocks. The first comm bootstraps this one.
    std::unique_ptr<dist::NcclComm> small =
        dist::make_nccl_comm(*s.backend, comm, {.max_chunk_bytes = 48});
    Check c(*small, s.device, seed + 1);
    c.all_reduce({1, 5, 13, 37, 100, 4099, 100003});
    c.reduce_scatter({1, 7, 50, 1001});
    c.blocks({1, 5, 13, 37, 1001, 100003});
    if (n >= 2) c.send_recv({7, 41});
    c.scalars();
    failures += c.failures();
    checks += c.checks();
    if (me == 0)
      fmt::print("small comm: reserved {} bytes ({} ranks × 48-byte slots)\n",
                 small->reserved_bytes(), n - 1);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(
      "rank {} of {} (local rank {} of {}, cuda:{}, staging {} MiB): {} checks, {} failures "
      "({:.1f} s)\n",
      me, n, comm.local_rank(), comm.local_world_size(), s.device, s.nccl->reserved_bytes() >> 20,
      checks, failures, secs);
  return failures == 0 ? 0 : 1;
}

int run_fault(int fault_rank) {
  Setup s = setup();
  Comm& comm = *s.comm;
  const bool faulty = comm.rank() == fault_rank;
  DeviceBuffer buf(DType::kBF16, 1 << 20, s.device);
  const auto start = std::chrono::steady_clock::now();
  fmt::print("rank {}: watchdog timeout {} s\n", comm.rank(), s.nccl->timeout_s());
  for (int round = 0; std::chrono::steady_clock::now() - start < std::chrono::seconds(120);
       ++round) {
    if (faulty && round == 5) {
      fmt::print(stderr, "rank {}: exits on purpose\n", comm.rank());
      std::_Exit(3);
    }
    comm.all_reduce_sum(buf.tensor());
  }
  fmt::print(stderr, "rank {}: no rank failed within 120 s\n", comm.rank());
  return 0;
}

// nccl-tests' definitions: algbw = bytes / time; busbw = algbw · 2(N − 1)/N for an all-reduce.
int run_bench() {
  Setup s = setup();
  Comm& comm = *s.comm;
  const int n = comm.world_size(), me = comm.rank();
  std::unique_ptr<dist::NcclComm> fast =
      dist::make_nccl_comm(*s.backend, comm, {.check_calls = false, .wait_each_op = false});
  auto nccl = static_cast<ncclComm_t>(s.nccl->native_handle());
  cudaEvent_t a, b;
  cuda_ok(cudaEventCreate(&a), "event");
  cuda_ok(cudaEventCreate(&b), "event");
  const double factor = n > 1 ? 2.0 * (n - 1) / n : 0.0;
  if (me == 0)
    fmt::print(
        "all-reduce, bf16, {} rank(s); GB/s = 1e9 bytes/s; busbw = algbw · 2(N−1)/N\n"
        "{:>9} | {:>22} | {:>22} | {:>22}\n{:>9} | {:>10} {:>11} | {:>10} {:>11} | "
        "{:>10} {:>11}\n",
        n, "size", "NcclComm (waits)", "NcclComm (enqueue)", "ncclAllReduce", "", "time us",
        "busbw GB/s", "time us", "busbw GB/s", "time us", "busbw GB/s");
  for (size_t bytes = size_t{1} << 20; bytes <= size_t{1} << 30; bytes <<= 1) {
    const int64_t count = static_cast<int64_t>(bytes / 2);
    DeviceBuffer buf(DType::kBF16, count, s.device);
    Check fill(comm, s.device, 5);
    buf.upload(fill.input(0, me, DType::kBF16, std::min<int64_t>(count, 1 << 20)));
    const int iters = static_cast<int>(std::clamp<size_t>((size_t{4} << 30) / bytes, 5, 200));
    double us[3];
    for (int variant = 0; variant < 3; ++variant) {
      auto once = [&] {
        if (variant == 0) comm.all_reduce_sum(buf.tensor());
        if (variant == 1) fast->all_reduce_sum(buf.tensor());
        if (variant == 2) {
          const ncclResult_t r =
              ncclAllReduce(buf.tensor().data, buf.tensor().data, static_cast<size_t>(count),
                            ncclBfloat16, ncclSum, nccl, s.stream);
          if (r != ncclSuccess && r != ncclInProgress)
            throw_internal_error("bench", "ncclAllReduce: {}", ncclGetErrorString(r));
        }
      };
      for (int w = 0; w < 3; ++w) once();
      cuda_ok(cudaStreamSynchronize(s.stream), "sync");
      comm.barrier();
      cuda_ok(cudaEventRecord(a, s.stream), "record");
      for (int i = 0; i < iters; ++i) once();
      cuda_ok(cudaEventRecord(b, s.stream), "record");
      cuda_ok(cudaEventSynchronize(b), "sync");
      float ms = 0;
      cuda_ok(cudaEventElapsedTime(&ms, a, b), "elapsed");
      us[variant] = 1000.0 * ms / iters;
    }
    if (me == 0) {
      auto bus = [&](double t) { return factor * static_cast<double>(bytes) / (t * 1e-6) / 1e9; };
      fmt::print("{:>5} MiB | {:>10.1f} {:>11.1f} | {:>10.1f} {:>11.1f} | {:>10.1f} {:>11.1f}\n",
                 bytes >> 20, us[0], bus(us[0]), us[1], bus(us[1]), us[2], bus(us[2]));
    }
  }
  // The sum kernel alone: what a rank's share of a reduce-scatter costs on the device.
  if (me == 0) {
    const int64_t count = int64_t{64} << 20;  // bf16 elements per piece (128 MiB)
    fmt::print("rank-order-sum kernel, bf16, {} MiB per piece:\n", (count * 2) >> 20);
    for (int world : {2, 4, 8}) {
      DeviceBuffer own(DType::kBF16, count, s.device),
          staging(DType::kBF16, count * (world - 1), s.device), out(DType::kBF16, count, s.device);
      auto launch = [&] {
        cuda::launch_rank_order_sum(DType::kBF16, own.tensor().data, 0, staging.tensor().data,
                                    count, world, out.tensor().data, count, s.stream);
      };
      launch();
      cuda_ok(cudaEventRecord(a, s.stream), "record");
      for (int i = 0; i < 20; ++i) launch();
      cuda_ok(cudaEventRecord(b, s.stream), "record");
      cuda_ok(cudaEventSynchronize(b), "sync");
      float ms = 0;
      cuda_ok(cudaEventElapsedTime(&ms, a, b), "elapsed");
      const double t = ms / 20 / 1000;
      fmt::print("  {} pieces: {:.1f} us, {:.0f} GB/s of device memory (reads + write)\n", world,
                 t * 1e6, static_cast<double>((world + 1) * count * 2) / t / 1e9);
    }
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 12;
  std::string mode = "check";
  int fault_rank = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--bench") mode = "bench";
    if (i + 1 >= argc) continue;
    if (key == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    if (key == "--fault") mode = "fault";
    if (key == "--fault-rank") fault_rank = std::atoi(argv[i + 1]);
  }
  const std::optional<dist::RankEnv> env = dist::rank_env_from_process();
  const int rank = env ? env->rank : 0;
  try {
    if (mode == "bench") return run_bench();
    if (mode == "fault") return run_fault(fault_rank);
    return run_checks(seed);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rank {}: error: {}\n", rank, e.what());
    return 1;
  }
}
