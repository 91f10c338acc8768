// What a rank is calling, as the Comm implementations exchange it before each collective
// (mpi_comm.h, backend/cuda/nccl_comm.h): a rank that calls another op or other sizes then gets
// a clear error on every rank instead of a hang or garbage, and a timeout names the call.
#pragma once

#include <cstdint>
#include <string>

#include "fitlm/core/tensor.h"

namespace fitlm::dist {

enum class CallOp : int64_t {
  kAllReduceSum = 1,
  kReduceScatterSum,
  kAllGather,
  kBroadcast,
  kReduceScatterBlocks,
  kAllGatherBlocks,
  kBarrier,
  kScalarSum,
  kScalarMax,
  kBarrierLong,
  kSend,  // point to point: b is the peer
  kRecv,
};

// For sizes, a and b are the element counts of in and out; for broadcast b is the root.
// `value` carries the scalar of the scalar reductions, so they need no second message.
struct CallSignature {
  int64_t op = 0, dtype = 0, a = 0, b = 0;
  double value = 0;
};
static_assert(sizeof(CallSignature) == 40);

bool same_call(const CallSignature& x, const CallSignature& y);
std::string describe(const CallSignature& s);  // "all_reduce_sum(bf16 × 4096)"
CallSignature call_signature(CallOp op, const Tensor& t, int64_t b);

// An operation's timeout: `option`, or FITLM_COMM_TIMEOUT_S when set (0 = no limit where
// `zero_is_no_limit`; other values must be positive). A malformed value is an input error.
double comm_timeout_s(double option, bool zero_is_no_limit);

}  // namespace fitlm::dist
