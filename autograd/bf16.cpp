// autograd/bf16.cpp — the ops that read a frozen weight stored in bfloat16
// (ops.h; the products are autograd/kernels/gemm_bf16.cpp).
//
// For y = x @ op(W) + b with W frozen, backward needs only dx = dy @ op(W)ᵀ
// (and db when the bias trains, as in BitFit): the same product with the
// weight read the other way round, which gemm_bf16 does by packing it
// transposed. No dW: a bfloat16 weight has no float32 values to update.
#include <cstring>

#include "autograd/kernels/gemm_bf16.h"
#include "autograd/matmul.h"
#include "autograd/ops.h"

namespace ta {

Tensor linear_bf16(const Tensor& x, const std::shared_ptr<const Bf16Matrix>& weight, bool transposed,
                   const Tensor& bias, const Tensor& addend) {
  const int in = transposed ? weight->cols : weight->rows, out = transposed ? weight->rows : weight->cols;
  const Shape y_shape = linear_output_shape("linear_bf16", x, in, out, bias, addend);
  Tensor y = Tensor::empty(y_shape);  // (rows, out)
  const int rows = static_cast<int>(x.shape().rows());
  const bool accumulate = start_linear_output(bias, addend, rows, out, y.data());
  gemm_bf16(transposed, rows, out, in, x.data(), in, weight->values.data(), weight->cols, accumulate ? 1.0f : 0.0f,
            y.data(), out);
  if (!needs_grad({&x, &bias, &addend})) return y;
  record(y, "linear_bf16", [X = GradRef(x), b = GradRef(bias), A = GradRef(addend), weight, transposed, rows, in,
                            out](Node& o) {
    const float* dY = o.grad.data();  // (rows, out)
    if (A.requires_grad()) A.accumulate_grad(dY);
    if (X.requires_grad()) {  // dX (rows, in) += dY @ op(W)ᵀ
      bool fresh = false;
      float* dX = X.grad_for_accumulate(&fresh);
      gemm_bf16(!transposed, rows, in, out, dY, out, weight->values.data(), weight->cols, fresh ? 0.0f : 1.0f, dX, in);
    }
    if (b.defined() && b.requires_grad()) add_column_sums(dY, rows, out, b.grad_or_zeros());
  });
  return y;
}

Tensor embedding_bf16(const Bf16Matrix& table, const std::vector<int>& ids, Shape ids_shape) {
  if (static_cast<int64_t>(ids.size()) != ids_shape.numel())
    shape_error("embedding_bf16", std::to_string(ids.size()) + " ids do not fill the shape " + ids_shape.str());
  if (ids_shape.rank >= kMaxRank) shape_error("embedding_bf16", "ids of rank " + std::to_string(ids_shape.rank) + " are too many");
  Shape out_shape = ids_shape;
  out_shape.dims[out_shape.rank++] = table.cols;
  Tensor out = Tensor::empty(out_shape);
  const int C = table.cols;
  for (size_t i = 0; i < ids.size(); i++) {
    if (ids[i] < 0 || ids[i] >= table.rows)
      shape_error("embedding_bf16", "id " + std::to_string(ids[i]) + " is outside [0, " + std::to_string(table.rows) + ")");
    const uint16_t* row = table.values.data() + static_cast<int64_t>(ids[i]) * C;
    float* dst = out.data() + static_cast<int64_t>(i) * C;
    for (int c = 0; c < C; c++) dst[c] = from_bf16(row[c]);
  }
  return out;
}

}  // namespace ta
