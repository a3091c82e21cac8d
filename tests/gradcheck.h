// tests/gradcheck.h — finite-difference gradient checks for autograd ops.
//
// For an op f and fixed random weights R (drawn once per check), the scalar
//   L(inputs) = sum_i f(inputs)_i * R_i
// is differentiated twice: by the tape (backward) and by central differences
//   dL/dx_j ≈ (L(x_j + eps) - L(x_j - eps)) / (2 eps),
// with L summed in double. Weighting by R rather than taking a plain sum
// catches index bugs: a plain sum is invariant to permuting the outputs.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "autograd/ops.h"

namespace ta::testing {

inline Tensor random_tensor(Shape shape, Rng& rng, float sd = 1.0f) {
  Tensor t = Tensor::empty(shape);
  fill_normal(t, rng, 0.0f, sd);
  return t;
}

// The same, marked trainable: an op's input whose gradient is checked.
inline Tensor random_parameter(Shape shape, Rng& rng, float sd = 1.0f) {
  Tensor t = random_tensor(shape, rng, sd);
  t.set_requires_grad(true);
  return t;
}

struct GradCheckOptions {
  float eps = 1e-2f;
  float atol = 2e-3f;
  float rtol = 2e-2f;
  int max_checked_per_input = 200;  // elements probed per input (all when smaller)
};

inline double weighted_output(const Tensor& out, const std::vector<float>& weights) {
  double total = 0;
  for (int64_t i = 0; i < out.numel(); i++) total += static_cast<double>(out.data()[i]) * weights[static_cast<size_t>(i)];
  return total;
}

// Checks the gradient of every input with requires_grad set. `f` builds the
// op's output from the inputs and may be called many times.
inline void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                            std::vector<Tensor> inputs, GradCheckOptions opt = {}) {
  Rng rng(1234);
  std::vector<float> weights;
  {
    NoGradGuard no_grad;
    Tensor probe = f(inputs);
    for (int64_t i = 0; i < probe.numel(); i++) weights.push_back(rng.normal());
  }
  // Analytical gradients from the tape. The output is not held while backward
  // runs, so every value the op's backward reads must be one it kept (the
  // engine frees the rest during the forward pass; see autograd/tensor.h).
  for (auto& x : inputs) x.drop_grad();
  Tensor loss;
  {
    Tensor out = f(inputs);
    REQUIRE(out.requires_grad());
    loss = sum(mul(out, Tensor::from(out.shape(), weights)));
  }
  backward(loss);
  REQUIRE(tape_size() == 0);

  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); k++) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    REQUIRE(x.has_grad());
    int64_t n = x.numel();
    int64_t stride = n <= opt.max_checked_per_input ? 1 : n / opt.max_checked_per_input + 1;
    for (int64_t j = (stride > 1 ? rng.below(static_cast<int>(stride)) : 0); j < n; j += stride) {
      float saved = x.data()[j];
      x.data()[j] = saved + opt.eps;
      double plus = weighted_output(f(inputs), weights);
      x.data()[j] = saved - opt.eps;
      double minus = weighted_output(f(inputs), weights);
      x.data()[j] = saved;
      double numeric = (plus - minus) / (2.0 * opt.eps);
      double analytic = x.grad()[j];
      INFO("input " << k << " element " << j << ": analytic " << analytic << " numeric " << numeric);
      CHECK(std::fabs(analytic - numeric) <= opt.atol + opt.rtol * std::fabs(numeric));
    }
  }
}

}  // namespace ta::testing
