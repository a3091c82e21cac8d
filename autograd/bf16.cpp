// autograd/bf16.cpp — linear_bf16, the op that reads a frozen weight stored
// in bfloat16 (ops.h; the products are autograd/kernels/gemm_bf16.cpp; its
// lookup twin embedding_bf16 sits beside embedding in shape.cpp).
//
// For y = x @ op(W) + b with W frozen, backward needs only dx = dy @ op(W)ᵀ
// (and db when the bias trains, as in BitFit): the same product with the
// weight read the other way round, which gemm_bf16 does by packing it
// transposed. No dW: a bfloat16 weight has no float32 values to update.
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

}  // namespace ta
