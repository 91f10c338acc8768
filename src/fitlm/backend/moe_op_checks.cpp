#include "fitlm/backend/moe_op_checks.h"

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

void check_float(const char* c, const Tensor& t, const char* what) {
  FITLM_CHECK(t.dtype == DType::kF32 || t.dtype == DType::kBF16 || t.dtype == DType::kF16, c,
              "{} must be f32, bf16 or f16, got {}", what, dtype_name(t.dtype));
}

void check_dtype(const char* c, const Tensor& t, DType want, const char* what) {
  FITLM_CHECK(t.dtype == want, c, "{} must be {}, got {}", what, dtype_name(want),
              dtype_name(t.dtype));
}

// t must be a [rows, cols] matrix (any shape with that matrix view).
void check_matrix(const char* c, const Tensor& t, int64_t rows, int64_t cols, const char* what) {
  FITLM_CHECK(t.rows() == rows && t.cols() == cols, c, "{} is {}, expected [{}, {}]", what,
              t.shape.str(), rows, cols);
}

}  // namespace

void check_moe_route(const char* c, const Tensor& logits, int k, const Tensor& probs,
                     const Tensor& weights, const Tensor& experts) {
  check_float(c, logits, "moe_route logits");
  check_dtype(c, probs, DType::kF32, "moe_route probs");
  check_dtype(c, weights, DType::kF32, "moe_route weights");
  check_dtype(c, experts, DType::kI32, "moe_route experts");
  const int64_t t_count = logits.rows(), e_count = logits.cols();
  FITLM_CHECK(k >= 1 && k <= e_count, c, "moe_route top-{} of {} experts", k, e_count);
  check_matrix(c, probs, t_count, e_count, "moe_route probs");
  check_matrix(c, weights, t_count, k, "moe_route weights");
  check_matrix(c, experts, t_count, k, "moe_route experts");
}

void check_moe_route_backward(const char* c, const Tensor& probs, const Tensor& weights,
                              const Tensor& experts, const Tensor& dweights,
                              const Tensor& extra_dprobs, const Tensor& dlogits) {
  check_dtype(c, probs, DType::kF32, "moe_route_backward probs");
  check_dtype(c, weights, DType::kF32, "moe_route_backward weights");
  check_dtype(c, experts, DType::kI32, "moe_route_backward experts");
  check_dtype(c, dweights, DType::kF32, "moe_route_backward dweights");
  check_float(c, dlogits, "moe_route_backward dlogits");
  const int64_t t_count = probs.rows(), e_count = probs.cols(), k = experts.cols();
  FITLM_CHECK(k >= 1 && k <= e_count, c, "moe_route_backward top-{} of {} experts", k, e_count);
  check_matrix(c, experts, t_count, k, "moe_route_backward experts");
  check_matrix(c, weights, t_count, k, "moe_route_backward weights");
  check_matrix(c, dweights, t_count, k, "moe_route_backward dweights");
  check_matrix(c, dlogits, t_count, e_count, "moe_route_backward dlogits");
  if (!extra_dprobs.empty()) {
    check_dtype(c, extra_dprobs, DType::kF32, "moe_route_backward extra_dprobs");
    check_matrix(c, extra_dprobs, t_count, e_count, "moe_route_backward extra_dprobs");
  }
}

void check_moe_permute(const char* c, const Tensor& experts, int num_experts,
                       const Tensor& token_of_row, const Tensor& pair_of_row,
                       const Tensor& row_of) {
  check_dtype(c, experts, DType::kI32, "moe_permute experts");
  check_dtype(c, token_of_row, DType::kI32, "moe_permute token_of_row");
  check_dtype(c, pair_of_row, DType::kI32, "moe_permute pair_of_row");
  check_dtype(c, row_of, DType::kI32, "moe_permute row_of");
  const int64_t t_count = experts.rows(), k = experts.cols(), n = t_count * k;
  FITLM_CHECK(token_of_row.numel() == n && pair_of_row.numel() == n, c,
              "moe_permute token_of_row {} pair_of_row {} for experts {}", token_of_row.shape.str(),
              pair_of_row.shape.str(), experts.shape.str());
  check_matrix(c, row_of, t_count, k, "moe_permute row_of");
  FITLM_CHECK(num_experts > 0 && k > 0, c, "moe_permute with {} experts, k = {}", num_experts, k);
  FITLM_CHECK(n < (int64_t{1} << 31), c, "moe_permute of {} rows: i32 indices overflow", n);
}

void check_gather_rows(const char* c, const Tensor& src, const Tensor& index, const Tensor& scale,
                       const Tensor& dst) {
  check_float(c, src, "gather_rows src");
  check_float(c, dst, "gather_rows dst");
  check_dtype(c, index, DType::kI32, "gather_rows index");
  const int64_t n = index.numel();
  check_matrix(c, dst, n, src.cols(), "gather_rows dst");
  if (!scale.empty()) {
    check_dtype(c, scale, DType::kF32, "gather_rows scale");
    FITLM_CHECK(scale.numel() == n, c, "gather_rows scale {} for {} rows", scale.shape.str(), n);
  }
}

void check_moe_combine(const char* c, const Tensor& rows, const Tensor& row_of,
                       const Tensor& weights, const Tensor& y) {
  check_float(c, rows, "moe_combine rows");
  check_float(c, y, "moe_combine y");
  check_dtype(c, row_of, DType::kI32, "moe_combine row_of");
  const int64_t t_count = row_of.rows(), k = row_of.cols();
  check_matrix(c, y, t_count, rows.cols(), "moe_combine y");
  if (!weights.empty()) {
    check_dtype(c, weights, DType::kF32, "moe_combine weights");
    check_matrix(c, weights, t_count, k, "moe_combine weights");
  }
}

void check_moe_weight_grad(const char* c, const Tensor& dy, const Tensor& rows,
                           const Tensor& row_of, const Tensor& dweights) {
  check_float(c, dy, "moe_weight_grad dy");
  check_float(c, rows, "moe_weight_grad rows");
  check_dtype(c, row_of, DType::kI32, "moe_weight_grad row_of");
  check_dtype(c, dweights, DType::kF32, "moe_weight_grad dweights");
  const int64_t t_count = row_of.rows(), k = row_of.cols();
  check_matrix(c, dy, t_count, rows.cols(), "moe_weight_grad dy");
  check_matrix(c, dweights, t_count, k, "moe_weight_grad dweights");
}

}  // namespace fitlm
