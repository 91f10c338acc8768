// SingleComm, the argument checks every Comm shares (comm.cpp), the rank-order sum and the
// non-MPI paths of make_cpu_comm. The MPI paths run under mpirun: comm_mpi_test.sh.
#include "fitlm/dist/single_comm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/dist/make_comm.h"
#include "fitlm/dist/rank_order_sum.h"

using namespace fitlm;
using namespace fitlm::dist;

namespace {

HostBuffer iota(DType t, int64_t n, float start = 1) {
  HostBuffer b(t, Shape{n});
  for (int64_t i = 0; i < n; ++i) {
    const float v = start + static_cast<float>(i);
    if (t == DType::kF32)
      b.f32()[i] = v;
    else if (t == DType::kBF16)
      b.tensor().as<uint16_t>()[i] = f32_to_bf16(v);
    else if (t == DType::kI32)
      b.tensor().as<int32_t>()[i] = static_cast<int32_t>(v);
  }
  return b;
}

template <typename Fn>
void expect_internal_error(Fn&& fn, const std::string& want) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << want << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInternal) << e.what();
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(SingleComm, IsOneRank) {
  SingleComm c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.world_size(), 1);
  EXPECT_EQ(c.local_rank(), 0);
  EXPECT_EQ(c.local_world_size(), 1);
  EXPECT_EQ(c.name(), "single");
  c.barrier();
  c.barrier_long();
}

// barrier_long's timeout: the larger of the comm's and FITLM_COMM_IO_TIMEOUT_S (1800 s unset);
// 0 on either side is no limit.
TEST(CommIoTimeout, LargerOfTheCommsAndTheVariable) {
  unsetenv("FITLM_COMM_IO_TIMEOUT_S");
  EXPECT_EQ(comm_io_timeout_s(60), 1800);
  EXPECT_EQ(comm_io_timeout_s(4000), 4000);
  EXPECT_EQ(comm_io_timeout_s(0), 0);
  setenv("FITLM_COMM_IO_TIMEOUT_S", "90", 1);
  EXPECT_EQ(comm_io_timeout_s(60), 90);
  EXPECT_EQ(comm_io_timeout_s(120), 120);
  setenv("FITLM_COMM_IO_TIMEOUT_S", "0", 1);
  EXPECT_EQ(comm_io_timeout_s(60), 0);
  setenv("FITLM_COMM_IO_TIMEOUT_S", "ten", 1);
  try {
    comm_io_timeout_s(60);
    ADD_FAILURE() << "no error for FITLM_COMM_IO_TIMEOUT_S=ten";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("FITLM_COMM_IO_TIMEOUT_S='ten'"), std::string::npos)
        << e.what();
  }
  unsetenv("FITLM_COMM_IO_TIMEOUT_S");
}

TEST(SingleComm, CollectivesCopyOrKeep) {
  SingleComm c;
  HostBuffer buf = iota(DType::kF32, 5);
  c.all_reduce_sum(buf.tensor());
  c.broadcast(buf.tensor(), 0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(buf.f32()[i], 1.0f + i);

  HostBuffer out(DType::kF32, Shape{5});
  c.reduce_scatter_sum(buf.tensor(), out.tensor());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out.f32()[i], 1.0f + i);
  HostBuffer gathered(DType::kF32, Shape{5});
  c.all_gather(buf.tensor(), gathered.tensor());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(gathered.f32()[i], 1.0f + i);
  // In place: in and out are the same memory.
  c.reduce_scatter_sum(buf.tensor(), buf.tensor());
  c.all_gather(buf.tensor(), buf.tensor());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(buf.f32()[i], 1.0f + i);
  // Byte copies take any dtype.
  HostBuffer ints = iota(DType::kI32, 3), ints_out(DType::kI32, Shape{3});
  c.all_gather(ints.tensor(), ints_out.tensor());
  EXPECT_EQ(ints_out.tensor().as<int32_t>()[2], 3);
  // Nothing to move is fine, even without memory.
  c.all_reduce_sum(Tensor(nullptr, DType::kF32, Shape{0}));
  c.barrier();
  EXPECT_EQ(c.all_reduce_sum(2.5), 2.5);
  EXPECT_EQ(c.all_reduce_max(-1.0), -1.0);
  EXPECT_TRUE(std::isnan(c.all_reduce_max(NAN)));
}

TEST(SingleComm, ChecksArguments) {
  SingleComm c;
  HostBuffer f4 = iota(DType::kF32, 4), f5 = iota(DType::kF32, 5), b4 = iota(DType::kBF16, 4);
  HostBuffer i4 = iota(DType::kI32, 4);
  expect_internal_error([&] { c.all_reduce_sum(i4.tensor()); },
                        "[dist] all_reduce_sum: buf is i32; sums take f32, bf16 or f16");
  expect_internal_error([&] { c.reduce_scatter_sum(f5.tensor(), f4.tensor()); },
                        "reduce_scatter_sum: in has 5 elements, expected world size 1 × out's 4");
  expect_internal_error([&] { c.reduce_scatter_sum(f4.tensor(), b4.tensor()); },
                        "reduce_scatter_sum: in is f32, out is bf16");
  expect_internal_error([&] { c.all_gather(f4.tensor(), f5.tensor()); },
                        "all_gather: out has 5 elements, expected world size 1 × in's 4 = 4");
  expect_internal_error([&] { c.all_gather(f4.tensor(), b4.tensor()); },
                        "all_gather: in is f32, out is bf16");
  // Overlap that is not the in-place layout.
  const Tensor shifted(f5.f32() + 1, DType::kF32, Shape{4});
  expect_internal_error([&] { c.all_gather(shifted, f5.tensor().slice_rows(0, 4)); },
                        "all_gather: in overlaps out without being block 0");
  expect_internal_error([&] { c.reduce_scatter_sum(shifted, f5.tensor().slice_rows(0, 4)); },
                        "reduce_scatter_sum: out overlaps in without being block 0");
  expect_internal_error([&] { c.broadcast(f4.tensor(), 1); },
                        "broadcast: root rank 1 is not in [0, 1)");
  expect_internal_error([&] { c.broadcast(f4.tensor(), -1); }, "root rank -1");
  expect_internal_error([&] { c.send(f4.tensor(), 0); }, "send: rank 0 sends to itself");
  expect_internal_error([&] { c.recv(f4.tensor(), 1); }, "recv: peer rank 1 is not in [0, 1)");
  const Tensor on_gpu(f4.f32(), DType::kF32, Shape{4}, Device{DeviceKind::kCUDA, 0});
  expect_internal_error([&] { c.all_reduce_sum(on_gpu); },
                        "all_reduce_sum: buf is on cuda:0; the single comm moves cpu memory");
  expect_internal_error([&] { c.broadcast(Tensor(nullptr, DType::kF32, Shape{3}), 0); },
                        "broadcast: buf (f32 × 3) has no memory");
}

TEST(CommSum, AddsInRankOrder) {
  // In rank order (1e8 + 1) rounds back to 1e8 and the last piece cancels it: 0. Adding the
  // first and the last first would give 1.
  std::vector<float> a = {1e8f, 2}, b = {1, 3}, c = {-1e8f, 4};
  std::vector<const void*> pieces = {a.data(), b.data(), c.data()};
  sum_in_rank_order(pieces, DType::kF32, 2, b.data());  // out may be a piece
  EXPECT_EQ(b[0], 0.0f);
  EXPECT_EQ(b[1], 9.0f);
  b = {1, 3};
  std::vector<const void*> other_order = {a.data(), c.data(), b.data()};
  float out = -1;
  sum_in_rank_order(other_order, DType::kF32, 1, &out);
  EXPECT_EQ(out, 1.0f);
}

TEST(CommSum, RoundsSixteenBitSumsOnce) {
  // 256 + 1 + 1 in bf16 (8 bits of mantissa): rounded after each add it stays 256; added in
  // f32 and rounded once it is 258.
  const std::vector<uint16_t> x = {f32_to_bf16(256)}, one = {f32_to_bf16(1)};
  std::vector<const void*> pieces = {x.data(), one.data(), one.data()};
  uint16_t out = 0;
  sum_in_rank_order(pieces, DType::kBF16, 1, &out);
  EXPECT_EQ(bf16_to_f32(out), 258.0f);
  const std::vector<uint16_t> h = {f32_to_f16(2048)}, h1 = {f32_to_f16(1)};
  std::vector<const void*> halves = {h.data(), h1.data(), h1.data()};
  sum_in_rank_order(halves, DType::kF16, 1, &out);
  EXPECT_EQ(f16_to_f32(out), 2050.0f);
  const std::vector<int32_t> ints = {1};
  std::vector<const void*> int_pieces = {ints.data()};
  expect_internal_error([&] { sum_in_rank_order(int_pieces, DType::kI32, 1, &out); },
                        "sum of i32 values");
}

TEST(MakeCpuComm, SingleWithoutMpirun) {
  std::map<std::string, std::string> vars;
  const auto getenv = [&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  EXPECT_EQ(make_cpu_comm(getenv)->name(), "single");
  vars = {{"RANK", "0"},
          {"WORLD_SIZE", "1"},
          {"LOCAL_RANK", "0"},
          {"LOCAL_WORLD_SIZE", "1"},
          {"MASTER_ADDR", "localhost"},
          {"MASTER_PORT", "29500"}};
  EXPECT_EQ(make_cpu_comm(getenv)->name(), "single");
  vars["WORLD_SIZE"] = "2";
  vars["LOCAL_WORLD_SIZE"] = "2";
  try {
    make_cpu_comm(getenv);
    ADD_FAILURE() << "no error for two torchrun ranks";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("started by torchrun as rank 0 of 2"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("start them with mpirun"), std::string::npos);
  }
}
