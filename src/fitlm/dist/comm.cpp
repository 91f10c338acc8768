#include "fitlm/dist/comm.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>

#include "fitlm/core/error.h"

namespace fitlm::dist {
namespace {

constexpr const char* kComponent = "dist";

bool summable(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

// Byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool overlap(const Tensor& a, const Tensor& b) {
  if (a.bytes() == 0 || b.bytes() == 0) return false;
  const auto* pa = static_cast<const std::byte*>(a.data);
  const auto* pb = static_cast<const std::byte*>(b.data);
  return pa < pb + b.bytes() && pb < pa + a.bytes();
}

std::string describe(const Tensor& t) {
  return fmt::format("{} × {}", dtype_name(t.dtype), t.numel());
}

}  // namespace

double comm_io_timeout_s(double timeout_s) {
  double io = 1800;
  if (const char* env = std::getenv("FITLM_COMM_IO_TIMEOUT_S"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    io = std::strtod(env, &end);
    if (end == env || *end != '\0' || !(io >= 0) || !std::isfinite(io))
      throw_input_error("launch",
                        "FITLM_COMM_IO_TIMEOUT_S='{}' is not a number of seconds (0: no limit)",
                        clip(env));
  }
  if (timeout_s == 0 || io == 0) return 0;
  return std::max(timeout_s, io);
}

void Comm::check_tensor(const Tensor& t, const char* op, const char* what, bool summed) const {
  if (t.numel() < 0)
    throw_internal_error(kComponent, "{}: {} has shape {}", op, what, t.shape.str());
  if (t.numel() > 0 && t.empty())
    throw_internal_error(kComponent, "{}: {} ({}) has no memory", op, what, describe(t));
  if (t.numel() > 0 && t.device.kind != device_kind())
    throw_internal_error(kComponent, "{}: {} is on {}; the {} comm moves {} memory", op, what,
                         t.device.str(), name(), Device{device_kind(), 0}.str());
  if (summed && !summable(t.dtype))
    throw_internal_error(kComponent, "{}: {} is {}; sums take f32, bf16 or f16", op, what,
                         dtype_name(t.dtype));
}

void Comm::check_peer(int peer, const char* op, const char* what) const {
  if (peer < 0 || peer >= world_size())
    throw_internal_error(kComponent, "{}: {} rank {} is not in [0, {})", op, what, peer,
                         world_size());
}

void Comm::all_reduce_sum(Tensor buf) {
  check_tensor(buf, "all_reduce_sum", "buf", true);
  do_all_reduce_sum(buf);
}

void Comm::reduce_scatter_sum(const Tensor& in, Tensor out) {
  check_tensor(in, "reduce_scatter_sum", "in", true);
  check_tensor(out, "reduce_scatter_sum", "out", true);
  if (in.dtype != out.dtype)
    throw_internal_error(kComponent, "reduce_scatter_sum: in is {}, out is {}",
                         dtype_name(in.dtype), dtype_name(out.dtype));
  if (in.numel() != out.numel() * world_size())
    throw_internal_error(kComponent,
                         "reduce_scatter_sum: in has {} elements, expected world size {} × out's "
                         "{} = {} (in must split into one equal block per rank)",
                         in.numel(), world_size(), out.numel(), out.numel() * world_size());
  const Tensor own_block(static_cast<std::byte*>(in.data) + rank() * out.bytes(), in.dtype,
                         out.shape, in.device);
  if (overlap(in, out) && own_block.data != out.data)
    throw_internal_error(
        kComponent, "reduce_scatter_sum: out overlaps in without being block {} of it", rank());
  do_reduce_scatter_sum(in, out);
}

void Comm::all_gather(const Tensor& in, Tensor out) {
  check_tensor(in, "all_gather", "in", false);
  check_tensor(out, "all_gather", "out", false);
  if (in.dtype != out.dtype)
    throw_internal_error(kComponent, "all_gather: in is {}, out is {}", dtype_name(in.dtype),
                         dtype_name(out.dtype));
  if (out.numel() != in.numel() * world_size())
    throw_internal_error(kComponent,
                         "all_gather: out has {} elements, expected world size {} × in's {} = {}",
                         out.numel(), world_size(), in.numel(), in.numel() * world_size());
  const void* own_block = static_cast<std::byte*>(out.data) + rank() * in.bytes();
  if (overlap(in, out) && own_block != in.data)
    throw_internal_error(kComponent, "all_gather: in overlaps out without being block {} of it",
                         rank());
  do_all_gather(in, out);
}

void Comm::reduce_scatter_sum_blocks(Tensor buf) {
  check_tensor(buf, "reduce_scatter_sum_blocks", "buf", true);
  do_reduce_scatter_sum_blocks(buf);
}

void Comm::all_gather_blocks(Tensor buf) {
  check_tensor(buf, "all_gather_blocks", "buf", false);
  do_all_gather_blocks(buf);
}

void Comm::broadcast(Tensor buf, int root) {
  check_tensor(buf, "broadcast", "buf", false);
  check_peer(root, "broadcast", "root");
  do_broadcast(buf, root);
}

void Comm::send(const Tensor& t, int peer) {
  check_tensor(t, "send", "tensor", false);
  check_peer(peer, "send", "peer");
  if (peer == rank()) throw_internal_error(kComponent, "send: rank {} sends to itself", peer);
  do_send(t, peer);
}

void Comm::recv(Tensor t, int peer) {
  check_tensor(t, "recv", "tensor", false);
  check_peer(peer, "recv", "peer");
  if (peer == rank()) throw_internal_error(kComponent, "recv: rank {} receives from itself", peer);
  do_recv(t, peer);
}

void Comm::barrier() {
  do_barrier();
}

void Comm::barrier_long() {
  do_barrier_long();
}

double Comm::all_reduce_sum(double v) {
  return do_all_reduce_sum(v);
}

double Comm::all_reduce_max(double v) {
  return do_all_reduce_max(v);
}

std::vector<double> Comm::all_gather_scalars(double v) {
  std::vector<double> out(static_cast<size_t>(world_size()));
  for (int r = 0; r < world_size(); ++r) out[r] = do_all_reduce_sum(r == rank() ? v : 0.0);
  return out;
}

}  // namespace fitlm::dist
