// SingleComm: the Comm of a one-process job. Every collective is a copy or nothing, so code
// written over Comm runs unchanged without a launcher. CPU memory (the copies are memcpy); a
// one-GPU job gets its Comm from the CUDA side.
#pragma once

#include "fitlm/dist/comm.h"

namespace fitlm::dist {

class SingleComm final : public Comm {
 public:
  SingleComm() = default;

  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_world_size() const override { return 1; }
  std::string name() const override { return "single"; }
  DeviceKind device_kind() const override { return DeviceKind::kCPU; }
  [[noreturn]] void abort(int exit_code) override;

 protected:
  void do_all_reduce_sum(Tensor) override {}
  void do_reduce_scatter_sum(const Tensor& in, Tensor out) override;
  void do_all_gather(const Tensor& in, Tensor out) override;
  void do_reduce_scatter_sum_blocks(Tensor) override {}  // one rank: its block is the buffer
  void do_all_gather_blocks(Tensor) override {}
  void do_broadcast(Tensor, int) override {}
  // Unreachable: Comm::send/recv reject every peer of a one-rank job.
  void do_send(const Tensor&, int) override {}
  void do_recv(Tensor, int) override {}
  void do_barrier() override {}
  void do_barrier_long() override {}
  double do_all_reduce_sum(double v) override { return v; }
  double do_all_reduce_max(double v) override { return v; }
};

}  // namespace fitlm::dist
