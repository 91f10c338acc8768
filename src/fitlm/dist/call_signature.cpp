#include "fitlm/dist/call_signature.h"

#include <cmath>
#include <cstdlib>

#include "fitlm/core/error.h"

namespace fitlm::dist {

bool same_call(const CallSignature& x, const CallSignature& y) {
  return x.op == y.op && x.dtype == y.dtype && x.a == y.a && x.b == y.b;
}

std::string describe(const CallSignature& s) {
  const auto dt = [&] {
    return s.dtype >= 0 && s.dtype <= static_cast<int64_t>(DType::kI64)
               ? std::string(dtype_name(static_cast<DType>(s.dtype)))
               : fmt::format("dtype#{}", s.dtype);
  };
  switch (static_cast<CallOp>(s.op)) {
    case CallOp::kAllReduceSum: return fmt::format("all_reduce_sum({} × {})", dt(), s.a);
    case CallOp::kReduceScatterSum:
      return fmt::format("reduce_scatter_sum({} × {} -> {})", dt(), s.a, s.b);
    case CallOp::kAllGather: return fmt::format("all_gather({} × {} -> {})", dt(), s.a, s.b);
    case CallOp::kBroadcast: return fmt::format("broadcast({} × {}, root {})", dt(), s.a, s.b);
    case CallOp::kReduceScatterBlocks:
      return fmt::format("reduce_scatter_sum_blocks({} × {})", dt(), s.a);
    case CallOp::kAllGatherBlocks: return fmt::format("all_gather_blocks({} × {})", dt(), s.a);
    case CallOp::kBarrier: return "barrier()";
    case CallOp::kScalarSum: return "all_reduce_sum(double)";
    case CallOp::kScalarMax: return "all_reduce_max(double)";
    case CallOp::kBarrierLong: return "barrier_long()";
    case CallOp::kSend: return fmt::format("send({} × {} to rank {})", dt(), s.a, s.b);
    case CallOp::kRecv: return fmt::format("recv({} × {} from rank {})", dt(), s.a, s.b);
  }
  return fmt::format("op#{}", s.op);
}

CallSignature call_signature(CallOp op, const Tensor& t, int64_t b) {
  return {static_cast<int64_t>(op), static_cast<int64_t>(t.dtype), t.numel(), b, 0};
}

double comm_timeout_s(double option, bool zero_is_no_limit) {
  const char* env = std::getenv("FITLM_COMM_TIMEOUT_S");
  if (env == nullptr || *env == '\0') return option;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  const bool ok =
      end != env && *end == '\0' && std::isfinite(v) && (zero_is_no_limit ? v >= 0 : v > 0);
  if (!ok)
    throw_input_error(
        "launch", "FITLM_COMM_TIMEOUT_S='{}' is not {}", clip(env),
        zero_is_no_limit ? "a number of seconds (0: no limit)" : "a positive number of seconds");
  return v;
}

}  // namespace fitlm::dist
