// tests/test_optim.cpp — AdamW against PyTorch's update rule, clipping, the
// learning-rate schedule, and "the optimiser holds state for trainable
// parameters only".
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "autograd/ops.h"
#include "nn/optim.h"
#include "nn/trainer.h"

using namespace ta;

namespace {
Tensor trainable(std::vector<float> values) {
  Tensor t = Tensor::from(Shape{static_cast<int>(values.size())}, values);
  t.set_requires_grad(true);
  return t;
}
void set_grad(Tensor& t, std::vector<float> g) {
  float* d = t.grad_or_zeros();
  for (size_t i = 0; i < g.size(); i++) d[i] = g[i];
}
}  // namespace

TEST_CASE("adamw: three steps equal torch.optim.AdamW computed by hand") {
  // Reference: the update of torch.optim.AdamW (decoupled decay, bias
  // correction), evaluated in double precision for a two-value parameter.
  const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  std::vector<std::vector<float>> grads = {{0.5f, -2.0f}, {0.1f, 1.0f}, {-0.3f, 0.25f}};
  double p[2] = {1.0, -1.0}, m[2] = {0, 0}, v[2] = {0, 0};
  Tensor w = Tensor::from(Shape{2, 1}, {1.0f, -1.0f});  // rank 2: decayed
  w.set_requires_grad(true);
  AdamW opt({{"h.0.mlp.c_fc.weight", w, true}}, {0.9f, 0.95f, 1e-8f, 0.1f});
  for (int t = 1; t <= 3; t++) {
    set_grad(w, grads[t - 1]);
    opt.step(static_cast<float>(lr));
    for (int i = 0; i < 2; i++) {
      double g = grads[t - 1][i];
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
      p[i] -= lr / (1 - std::pow(b1, t)) * m[i] / denom;
      CHECK(w.data()[i] == doctest::Approx(p[i]).epsilon(1e-6));
    }
  }
  CHECK(opt.steps_taken() == 3);
}

TEST_CASE("adamw: state for trainable parameters only; frozen ones rejected") {
  Tensor a = trainable({1, 2, 3}), frozen = Tensor::zeros({5});
  AdamW opt({{"a", a, false}});
  CHECK(opt.state_floats() == 6);
  CHECK_THROWS_AS(AdamW({{"frozen", frozen, true}}), std::invalid_argument);
  // A parameter that received no gradient this step does not move.
  opt.step(0.1f);
  CHECK(a.data()[0] == 1.0f);
}

TEST_CASE("adamw: minimises a quadratic") {
  Tensor x = trainable({3.0f, -2.0f});
  AdamW opt({{"x", x, false}});
  for (int i = 0; i < 300; i++) {
    opt.zero_grad();
    backward(sum(mul(x, x)));
    opt.step(0.05f);
  }
  CHECK(std::fabs(x.data()[0]) < 0.05f);
  CHECK(std::fabs(x.data()[1]) < 0.05f);
}

TEST_CASE("weight decay: matrices yes; biases, layernorms, embeddings no") {
  CHECK(default_weight_decay("transformer.h.0.attn.c_attn.weight", Tensor::zeros({4, 12})));
  CHECK_FALSE(default_weight_decay("transformer.h.0.attn.c_attn.bias", Tensor::zeros({12})));
  CHECK_FALSE(default_weight_decay("transformer.h.0.ln_1.weight", Tensor::zeros({4})));
  CHECK_FALSE(default_weight_decay("transformer.wte.weight", Tensor::zeros({10, 4})));
  CHECK_FALSE(default_weight_decay("transformer.wpe.weight", Tensor::zeros({8, 4})));
}

TEST_CASE("clip_grad_norm: scales to the bound, reports the norm before") {
  Tensor a = trainable({0, 0}), b = trainable({0});
  set_grad(a, {3.0f, 0.0f});
  set_grad(b, {4.0f});
  std::vector<OptimParam> ps = {{"a", a, false}, {"b", b, false}};
  CHECK(clip_grad_norm(ps, 1.0f) == doctest::Approx(5.0f));
  CHECK(a.grad()[0] == doctest::Approx(0.6f).epsilon(1e-5));
  CHECK(b.grad()[0] == doctest::Approx(0.8f).epsilon(1e-5));
  CHECK(clip_grad_norm(ps, 10.0f) == doctest::Approx(1.0f).epsilon(1e-5));  // below the bound: unchanged
  CHECK(gradients_finite(ps));
  a.grad_or_zeros()[1] = NAN;
  CHECK_FALSE(gradients_finite(ps));
}

TEST_CASE("lr schedule: linear warm-up, cosine decay, floor") {
  CHECK(lr_at(0, 10, 100, 1.0f, 0.1f) == doctest::Approx(0.1f));
  CHECK(lr_at(9, 10, 100, 1.0f, 0.1f) == doctest::Approx(1.0f));
  CHECK(lr_at(10, 10, 100, 1.0f, 0.1f) == doctest::Approx(1.0f));
  CHECK(lr_at(55, 10, 100, 1.0f, 0.1f) == doctest::Approx(0.55f));  // half way: the mean
  CHECK(lr_at(100, 10, 100, 1.0f, 0.1f) == doctest::Approx(0.1f));
  CHECK(lr_at(500, 10, 100, 1.0f, 0.1f) == doctest::Approx(0.1f));
}

TEST_CASE("trainer: a non-finite loss or gradient stops the step before any update") {
  Tensor w = trainable({1.0f, 2.0f});
  TrainerOptions options;
  options.steps = 10;
  options.lr = 0.1f;
  Trainer trainer({{"w", w, false}}, options);
  // A loss that is NaN: nothing may move.
  CHECK_THROWS_AS(trainer.step(0, [&](int) { return MicroBatch{mul_scalar(sum(w), NAN), 1}; }), TrainingError);
  CHECK(tape_size() == 0);
  CHECK(w.data()[0] == 1.0f);
  CHECK(w.data()[1] == 2.0f);
  // A finite loss whose gradient overflows: v is used twice, each path adding
  // 2e38 to dv, which is more than a float holds; the loss itself is ~4e8.
  Tensor v = trainable({1e-30f});
  Trainer overflow({{"v", v, false}}, options);
  CHECK_THROWS_AS(overflow.step(0, [&](int) {
    return MicroBatch{add(mul_scalar(sum(v), 2e38f), mul_scalar(sum(v), 2e38f)), 1};
  }), TrainingError);
  CHECK(v.data()[0] == 1e-30f);
  CHECK(overflow.optimizer().steps_taken() == 0);
  CHECK(trainer.optimizer().steps_taken() == 0);
  // And a good step afterwards works.
  StepStats s = trainer.step(0, [&](int) { return MicroBatch{sum(mul(w, w)), 2}; });
  CHECK(s.loss == doctest::Approx(5.0f));
  CHECK(w.data()[0] < 1.0f);
}
