// The MPI check of dist/: every rank of `mpirun -np N` runs it (tests/dist/comm_mpi_test.sh).
// Each rank derives every rank's inputs from the seed and that rank (random, never zero, of
// mixed magnitudes so that adding in another order gives other bits), computes what each
// collective must return by adding in rank order itself, and requires the Comm's results to
// be bit-identical. Exits non-zero, naming the rank, on any mismatch.
//
//   comm_mpi_check [--seed N]             the checks
//   comm_mpi_check --fault KIND --fault-rank R
//                                         all-reduces in a loop until rank R fails: KIND exit
//                                         (std::exit(3) instead of joining one), abort (another
//                                         thread aborts while it is inside one), throw
//                                         (fitlm::Error instead of joining one) or hang (sleeps
//                                         for good instead of joining one: the others' timeout,
//                                         FITLM_COMM_TIMEOUT_S, must end the job)
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/core/shard.h"
#include "fitlm/core/tensor.h"
#include "fitlm/dist/make_comm.h"
#include "fitlm/dist/mpi_comm.h"

using namespace fitlm;
using fitlm::dist::Comm;

namespace {

class Check {
 public:
  Check(Comm& comm, uint64_t seed)
      : comm_(comm), n_(comm.world_size()), me_(comm.rank()), seed_(seed) {}

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

  static float widen(const Tensor& t, int64_t i) {
    switch (t.dtype) {
      case DType::kF32: return t.as<float>()[i];
      case DType::kBF16: return bf16_to_f32(t.as<uint16_t>()[i]);
      case DType::kF16: return f16_to_f32(t.as<uint16_t>()[i]);
      default: throw_internal_error("check", "widen {}", dtype_name(t.dtype));
    }
  }

  static void store(const Tensor& t, int64_t i, float v) {
    switch (t.dtype) {
      case DType::kF32: t.as<float>()[i] = v; break;
      case DType::kBF16: t.as<uint16_t>()[i] = f32_to_bf16(v); break;
      case DType::kF16: t.as<uint16_t>()[i] = f32_to_f16(v); break;
      default: throw_internal_error("check", "store {}", dtype_name(t.dtype));
    }
  }

  // Element e of the sum over ranks of rank r's block `block` of case `id`, added in rank
  // order (forward) or in reverse (to show that the order shows in the bits).
  HostBuffer expected_sum(int id, DType dtype, int64_t total, int64_t begin, int64_t count,
                          bool forward = true) const {
    std::vector<HostBuffer> in;
    for (int r = 0; r < n_; ++r) in.push_back(input(id, r, dtype, total));
    HostBuffer out(dtype, Shape{count});
    for (int64_t e = 0; e < count; ++e) {
      float acc = widen(in[forward ? 0 : n_ - 1], begin + e);
      for (int k = 1; k < n_; ++k) acc += widen(in[forward ? k : n_ - 1 - k], begin + e);
      store(out, e, acc);
    }
    return out;
  }

  // Bit-exact comparison; names the first differing element.
  void expect_same(const Tensor& got, const Tensor& want, const std::string& what) {
    ++checks_;
    const size_t esz = dtype_size(want.dtype);
    for (int64_t i = 0; i < want.numel(); ++i) {
      const auto* g = static_cast<const uint8_t*>(got.data) + i * esz;
      const auto* w = static_cast<const uint8_t*>(want.data) + i * esz;
      if (std::memcmp(g, w, esz) == 0) continue;
      const bool num =
          want.dtype == DType::kF32 || want.dtype == DType::kBF16 || want.dtype == DType::kF16;
      fail("{}: element {} of {} is {}, expected {}", what, i, want.numel(),
           num ? fmt::format("{:a}", widen(got, i)) : "other bytes",
           num ? fmt::format("{:a}", widen(want, i)) : "these");
      return;
    }
  }

  // `fn` must throw fitlm::Error whose message contains `want`.
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

  void all_reduce(const std::vector<int64_t>& sizes) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int64_t count : sizes) {
        const int id = next_id_++;
        HostBuffer buf = input(id, me_, dtype, count);
        comm_.all_reduce_sum(buf.tensor());
        const HostBuffer want = expected_sum(id, dtype, count, 0, count);
        expect_same(buf.tensor(), want.tensor(),
                    fmt::format("all_reduce_sum {} × {}", dtype_name(dtype), count));
        if (n_ >= 3 && count >= 1000 && dtype == DType::kF32)
          order_matters(id, dtype, count, want.tensor());
      }
    }
  }

  // The check is only as good as its data: adding in reverse must change some elements. f32
  // only: a few bf16/f16 values add exactly in f32, so their order cannot show.
  void order_matters(int id, DType dtype, int64_t count, const Tensor& forward) {
    const HostBuffer reverse = expected_sum(id, dtype, count, 0, count, false);
    int64_t differ = 0;
    for (int64_t i = 0; i < count; ++i)
      differ +=
          std::memcmp(static_cast<const uint8_t*>(forward.data) + i * dtype_size(dtype),
                      static_cast<const uint8_t*>(reverse.tensor().data) + i * dtype_size(dtype),
                      dtype_size(dtype)) != 0;
    expect(differ > 0,
           fmt::format("{} × {}: the reverse order gives the same bits", dtype_name(dtype), count));
  }

  void reduce_scatter(const std::vector<int64_t>& blocks) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      for (int64_t block : blocks) {
        for (bool in_place : {false, true}) {
          const int id = next_id_++;
          HostBuffer in = input(id, me_, dtype, block * n_);
          HostBuffer separate(dtype, Shape{block});
          const Tensor out =
              in_place ? in.tensor().slice_rows(me_ * block, (me_ + 1) * block) : separate.tensor();
          comm_.reduce_scatter_sum(in.tensor(), out);
          const HostBuffer want = expected_sum(id, dtype, block * n_, me_ * block, block);
          expect_same(out, want.tensor(),
                      fmt::format("reduce_scatter_sum {} × {}{}", dtype_name(dtype), block,
                                  in_place ? " in place" : ""));
        }
      }
    }
    // The input must split into one equal block per rank.
    HostBuffer in(DType::kF32, Shape{5 * n_ + 1}), out(DType::kF32, Shape{5});
    expect_error([&] { comm_.reduce_scatter_sum(in.tensor(), out.tensor()); },
                 "reduce_scatter_sum: in has", "reduce_scatter_sum of a size not divisible");
    HostBuffer out16(DType::kBF16, Shape{5});
    HostBuffer in32(DType::kF32, Shape{5 * n_});
    expect_error([&] { comm_.reduce_scatter_sum(in32.tensor(), out16.tensor()); },
                 "in is f32, out is bf16", "reduce_scatter_sum of mixed dtypes");
  }

  // The in-place block collectives over core/shard.h's blocks (sizes below the world size give
  // empty blocks; others leave the last block short): block rank() of the reduce-scatter is the
  // rank-order sum of every rank's block; after the all-gather every block is its owner's.
  void blocks(const std::vector<int64_t>& sizes) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int64_t count : sizes) {
        const ShardBlock mine = shard_block(count, me_, n_);
        const int id = next_id_++;
        HostBuffer buf = input(id, me_, dtype, count);
        comm_.reduce_scatter_sum_blocks(buf.tensor());
        const HostBuffer want = expected_sum(id, dtype, count, mine.offset, mine.size);
        expect_same(buf.tensor().flat_range(mine.offset, mine.end()), want.tensor(),
                    fmt::format("reduce_scatter_sum_blocks {} × {}", dtype_name(dtype), count));

        const int gid = next_id_++;
        HostBuffer gathered = input(id, me_, dtype, count);  // other blocks: not the owners'
        const HostBuffer own = input(gid, me_, dtype, count);
        const size_t esz = dtype_size(dtype);
        if (mine.size > 0)
          std::memcpy(static_cast<std::byte*>(gathered.tensor().data) + mine.offset * esz,
                      static_cast<const std::byte*>(own.tensor().data) + mine.offset * esz,
                      static_cast<size_t>(mine.size) * esz);
        comm_.all_gather_blocks(gathered.tensor());
        for (int r = 0; r < n_; ++r) {
          const ShardBlock b = shard_block(count, r, n_);
          expect_same(gathered.tensor().flat_range(b.offset, b.end()),
                      input(gid, r, dtype, count).tensor().flat_range(b.offset, b.end()),
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
          HostBuffer out(dtype, Shape{count * n_});
          HostBuffer mine = input(id, me_, dtype, count);
          Tensor in = mine.tensor();
          if (in_place) {
            in = out.tensor().slice_rows(me_ * count, (me_ + 1) * count);
            if (mine.tensor().bytes() > 0) std::memcpy(in.data, mine.tensor().data, in.bytes());
          }
          comm_.all_gather(in, out.tensor());
          for (int r = 0; r < n_; ++r)
            expect_same(out.tensor().slice_rows(r * count, (r + 1) * count),
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
          HostBuffer buf = input(id, me_, dtype, count);  // other values on every rank
          comm_.broadcast(buf.tensor(), root);
          expect_same(
              buf.tensor(), input(id, root, dtype, count).tensor(),
              fmt::format("broadcast {} × {} from rank {}", dtype_name(dtype), count, root));
        }
      }
    }
  }

  // Every ordered pair in turn (a to b, then b to a); the others wait for their pairs.
  void send_recv(const std::vector<int64_t>& sizes) {
    for (int64_t count : sizes) {
      for (int a = 0; a < n_; ++a) {
        for (int b = 0; b < n_; ++b) {
          if (a == b) continue;
          const int id = next_id_++;
          if (me_ == a) comm_.send(input(id, a, DType::kF32, count).tensor(), b);
          if (me_ == b) {
            HostBuffer got(DType::kF32, Shape{count});
            comm_.recv(got.tensor(), a);
            expect_same(got.tensor(), input(id, a, DType::kF32, count).tensor(),
                        fmt::format("recv f32 × {} from rank {}", count, a));
          }
        }
      }
    }
    // A receiver expecting another size or dtype throws; the sender is not left waiting, and
    // the next message still arrives whole.
    HostBuffer ten(DType::kF32, Shape{10}), eleven(DType::kF32, Shape{11});
    HostBuffer ten16(DType::kBF16, Shape{10});
    if (me_ == 0) {
      comm_.send(ten.tensor(), 1);
      comm_.send(ten16.tensor(), 1);
      comm_.send(input(next_id_, 0, DType::kF32, 10).tensor(), 1);
    }
    if (me_ == 1) {
      expect_error([&] { comm_.recv(eleven.tensor(), 0); }, "it sent f32 × 10, expected f32 × 11",
                   "recv of another size");
      expect_error([&] { comm_.recv(ten.tensor(), 0); }, "it sent bf16 × 10, expected f32 × 10",
                   "recv of another dtype");
      comm_.recv(ten.tensor(), 0);
      expect_same(ten.tensor(), input(next_id_, 0, DType::kF32, 10).tensor(),
                  "recv after a mismatch");
    }
    ++next_id_;
  }

  // Ranks calling different collectives or sizes get an error on every rank, naming them.
  void disagreement() {
    const int last = n_ - 1;
    HostBuffer buf(DType::kF32, Shape{me_ == last ? 11 : 10});
    expect_error([&] { comm_.all_reduce_sum(buf.tensor()); },
                 fmt::format("rank {} calls all_reduce_sum(f32 × 11)", last),
                 "all_reduce_sum of different sizes");
    HostBuffer same(DType::kF32, Shape{10});
    expect_error(
        [&] {
          if (me_ == last)
            comm_.broadcast(same.tensor(), 0);
          else
            comm_.all_reduce_sum(same.tensor());
        },
        fmt::format("rank {} calls broadcast(f32 × 10, root 0)", last), "different collectives");
    // Still usable afterwards.
    barrier();
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
    expect(comm_.all_reduce_max(me_ == 0 ? -INFINITY : -1.0) == (n_ == 1 ? -INFINITY : -1.0),
           "all_reduce_max with -inf on rank 0");
  }

  void barrier() {
    for (int i = 0; i < 3; ++i) comm_.barrier();
  }

 private:
  Comm& comm_;
  int n_, me_;
  uint64_t seed_;
  int next_id_ = 0;
  int failures_ = 0, checks_ = 0;
};

int run_checks(uint64_t seed) {
  std::unique_ptr<Comm> comm = dist::make_cpu_comm();
  const int n = comm->world_size(), me = comm->rank();
  int failures = 0, checks = 0;
  if (comm->name() != "mpi") {
    fmt::print(stderr, "rank {}: FAIL make_cpu_comm under mpirun gave the {} comm\n", me,
               comm->name());
    return 1;
  }
  {
    Check c(*comm, seed);
    c.all_reduce({0, 1, 2, n - 1, n + 1, 7, 1000, 4099, 65539});
    c.reduce_scatter({1, 3, 1000, 4097});
    c.all_gather({0, 1, 5, 1003});
    c.blocks({0, 1, 2, n + 1, 7, 1000, 4099, 65539});
    c.broadcast({1, 1000, 65539});
    if (n >= 2) c.send_recv({0, 1, 1000, 65539});
    if (n >= 2) c.disagreement();
    c.scalars();
    c.barrier();
    failures += c.failures();
    checks += c.checks();
  }
  {
    // Chunks of 24 bytes: every chunked path (blocks split across calls, uneven blocks).
    std::unique_ptr<dist::MpiComm> small = dist::MpiComm::init({.max_chunk_bytes = 24});
    Check c(*small, seed + 1);
    c.all_reduce({1, 5, 13, 37, 100});
    c.reduce_scatter({1, 7, 50});
    c.all_gather({1, 5, 31});
    c.blocks({1, 5, 13, 37, 100});
    c.broadcast({1, 29});
    if (n >= 2) c.send_recv({7, 41});
    failures += c.failures();
    checks += c.checks();
  }
  fmt::print("rank {} of {} (local rank {} of {}): {} checks, {} failures\n", me, n,
             comm->local_rank(), comm->local_world_size(), checks, failures);
  return failures == 0 ? 0 : 1;
}

int run_fault(const std::string& kind, int fault_rank) {
  std::unique_ptr<Comm> comm = dist::make_cpu_comm();
  const bool faulty = comm->rank() == fault_rank;
  if (faulty && kind == "abort") {
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      std::abort();
    }).detach();
  }
  HostBuffer buf(DType::kF32, Shape{1 << 16});
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; std::chrono::steady_clock::now() - start < std::chrono::seconds(30);
       ++round) {
    for (int64_t i = 0; i < buf.tensor().numel(); ++i) buf.f32()[i] = 1.0f;
    if (faulty && round == 5 && kind == "exit") std::exit(3);
    if (faulty && round == 5 && kind == "throw")
      throw_internal_error("check", "rank {} fails on purpose", fault_rank);
    if (faulty && round == 5 && kind == "hang") {
      fmt::print(stderr, "rank {} hangs on purpose\n", fault_rank);
      for (;;) ::pause();
    }
    comm->all_reduce_sum(buf.tensor());
  }
  fmt::print(stderr, "rank {}: no rank failed within 30 s\n", comm->rank());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 12;
  std::string fault;
  int fault_rank = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    if (key == "--seed")
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (key == "--fault")
      fault = argv[i + 1];
    else if (key == "--fault-rank")
      fault_rank = std::atoi(argv[i + 1]);
  }
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  try {
    return fault.empty() ? run_checks(seed) : run_fault(fault, fault_rank);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rank {}: error: {}\n", rank ? rank : "?", e.what());
    return 1;
  }
}
