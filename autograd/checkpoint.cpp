// autograd/checkpoint.cpp — gradient checkpointing (see ops.h): keep a
// block's input, not its activations, and recompute them in the backward.
//
// Forward: y = f(x) under NoGradGuard, so every value f makes inside is freed
// as soon as f no longer reads it. The output is recorded on the tape as one
// op whose backward
//   1. opens a fresh tape (TapeScope: the outer backward is half-way through
//      its own, which must not move),
//   2. runs f again on a copy of x that takes gradients, with the tape on,
//   3. back-propagates dy through it: backward(sum(y ⊙ dy)), whose gradient
//      with respect to y is dy. The trainable tensors f uses (its weights, a
//      prefix) receive their gradients there, as without checkpointing,
//   4. adds the copy's gradient into x's.
#include <cstring>

#include "autograd/ops.h"

namespace ta {

Tensor checkpoint(std::function<Tensor(const Tensor&)> f, const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = f(x);
  }
  if (!grad_enabled()) return out;
  record(out, "checkpoint", [f, x](Node& node) {
    TapeScope nested;
    Tensor input = Tensor::empty(x.shape());
    std::memcpy(input.data(), x.data(), static_cast<size_t>(x.numel()) * sizeof(float));
    input.set_requires_grad(x.requires_grad());
    Tensor y = f(input);
    if (y.shape() != node.shape) shape_error("checkpoint", "f gave " + y.shape().str() + " the second time");
    if (!y.requires_grad()) return;  // nothing in f trains
    Tensor dy = Tensor::empty(y.shape());
    std::memcpy(dy.data(), node.grad.data(), static_cast<size_t>(y.numel()) * sizeof(float));
    backward(sum(mul(y, dy)));
    if (x.requires_grad() && input.has_grad()) x.node()->accumulate_grad(input.grad());
  });
  return out;
}

}  // namespace ta
