// tests/test_autograd.cpp — the engine: a finite-difference gradient check for
// every op (attention has its own file), BLAS against the naive matmul,
// backward pruning, shape errors, and a tape that does not grow.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <stdexcept>
#include <tuple>

#include "autograd/fastmath.h"
#include "autograd/matmul.h"
#include "autograd/ops.h"
#include "tests/gradcheck.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::check_gradients;
using ta::testing::random_tensor;

namespace {
// A short name for the many checked inputs below.
Tensor param(Shape s, Rng& rng, float sd = 1.0f) { return ta::testing::random_parameter(s, rng, sd); }
using Inputs = std::vector<Tensor>;
}  // namespace

TEST_CASE("gradcheck: add, sub, mul, div with broadcasting") {
  Rng rng(1);
  // same shapes, bias add (suffix), row scale (size-1 last axis), both sides broadcast
  std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 5}, {5}}, {{2, 3, 4}, {2, 3, 1}}, {{3, 1}, {1, 4}}, {{2, 1, 3, 2}, {4, 1, 1}}};
  for (auto& [sa, sb] : cases) {
    INFO("shapes " << sa.str() << " " << sb.str());
    Inputs in = {param(sa, rng), param(sb, rng)};
    check_gradients([](const Inputs& x) { return add(x[0], x[1]); }, in);
    check_gradients([](const Inputs& x) { return sub(x[0], x[1]); }, in);
    check_gradients([](const Inputs& x) { return mul(x[0], x[1]); }, in);
    Tensor divisor = param(sb, rng);  // kept away from 0, where 1/b is steep
    for (int64_t i = 0; i < divisor.numel(); i++) divisor.data()[i] += divisor.data()[i] > 0 ? 1.0f : -1.0f;
    check_gradients([](const Inputs& x) { return div(x[0], x[1]); }, {in[0], divisor});
  }
  CHECK_THROWS_WITH_AS(add(Tensor::zeros({2, 3}), Tensor::zeros({4})),
                       "broadcast: shapes (2,3) and (4) do not broadcast", std::invalid_argument);
}

TEST_CASE("gradcheck: scalar ops and activations") {
  Rng rng(2);
  Inputs in = {param({3, 7}, rng)};
  check_gradients([](const Inputs& x) { return add_scalar(x[0], 0.5f); }, in);
  check_gradients([](const Inputs& x) { return mul_scalar(x[0], -1.7f); }, in);
  check_gradients([](const Inputs& x) { return gelu(x[0]); }, in);
  check_gradients([](const Inputs& x) { return tanh(x[0]); }, in);
  Tensor positive = param({3, 7}, rng);
  for (int64_t i = 0; i < positive.numel(); i++) positive.data()[i] = 0.5f + std::fabs(positive.data()[i]);
  check_gradients([](const Inputs& x) { return sqrt(x[0]); }, {positive});
  // ReLU: keep inputs away from the kink at 0, where the difference quotient is meaningless.
  Tensor away = param({3, 7}, rng);
  for (int64_t i = 0; i < away.numel(); i++) away.data()[i] += away.data()[i] > 0 ? 0.1f : -0.1f;
  check_gradients([](const Inputs& x) { return relu(x[0]); }, {away});
}

TEST_CASE("gelu: matches the tanh formula of GPT-2 at known points") {
  Tensor x = Tensor::from({3}, {-1.0f, 0.0f, 2.0f});
  Tensor y = gelu(x);
  CHECK(y.data()[0] == doctest::Approx(-0.158808).epsilon(1e-5));
  CHECK(y.data()[1] == 0.0f);
  CHECK(y.data()[2] == doctest::Approx(1.954598).epsilon(1e-5));
}

TEST_CASE("gradcheck: matmul 2-D, batched, shared weight, transposes") {
  Rng rng(3);
  for (bool ta_ : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta_ << " trans_b " << tb);
      Shape sa = ta_ ? Shape{5, 3} : Shape{3, 5}, sb = tb ? Shape{4, 5} : Shape{5, 4};
      check_gradients([=](const Inputs& x) { return matmul(x[0], x[1], ta_, tb); }, {param(sa, rng), param(sb, rng)});
      Shape ba = ta_ ? Shape{2, 3, 5, 3} : Shape{2, 3, 3, 5}, bb = tb ? Shape{2, 3, 4, 5} : Shape{2, 3, 5, 4};
      check_gradients([=](const Inputs& x) { return matmul(x[0], x[1], ta_, tb); }, {param(ba, rng), param(bb, rng)});
      Shape wa = ta_ ? Shape{2, 5, 3} : Shape{2, 3, 5};  // batched a, shared 2-D b
      check_gradients([=](const Inputs& x) { return matmul(x[0], x[1], ta_, tb); }, {param(wa, rng), param(sb, rng)});
    }
  CHECK_THROWS_WITH_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                       "matmul: inner dimensions differ: (2,3) @ (4,5)", std::invalid_argument);
  CHECK_THROWS_AS(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 5})), std::invalid_argument);
}

TEST_CASE("gradcheck: linear with and without bias, with an addend") {
  Rng rng(4);
  check_gradients([](const Inputs& x) { return linear(x[0], x[1], x[2]); },
                  {param({2, 3, 5}, rng), param({5, 7}, rng), param({7}, rng)});
  check_gradients([](const Inputs& x) { return linear(x[0], x[1], Tensor()); }, {param({4, 5}, rng), param({5, 3}, rng)});
  // The addend (a LoRA delta) gets dY, exactly as in add(linear(...), addend).
  Inputs in = {param({2, 3, 5}, rng), param({5, 7}, rng), param({7}, rng), param({2, 3, 7}, rng)};
  check_gradients([](const Inputs& x) { return linear(x[0], x[1], x[2], mul_scalar(x[3], 1.5f)); }, in);
  check_gradients([](const Inputs& x) { return linear(x[0], x[1], Tensor(), x[2]); }, {in[0], in[1], in[3]});
  const std::vector<float> fused = linear(in[0], in[1], in[2], in[3]).to_vector();
  const std::vector<float> separate = add(linear(in[0], in[1], in[2]), in[3]).to_vector();
  for (size_t i = 0; i < fused.size(); i++) CHECK(fused[i] == doctest::Approx(separate[i]).epsilon(1e-6));
  clear_tape();
  CHECK_THROWS_AS(linear(Tensor::zeros({2, 4}), Tensor::zeros({5, 3}), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(linear(Tensor::zeros({2, 5}), Tensor::zeros({5, 3}), Tensor(), Tensor::zeros({2, 4})),
                  std::invalid_argument);
}

TEST_CASE("gradcheck: lora_linear, and it equals the unfused LoRA composition") {
  Rng rng(41);
  // x (2,3,5), W (5,7), b (7), A (r=2, in=5), B (out=7, r=2), addend (2,3,7)
  Inputs in = {param({2, 3, 5}, rng), param({5, 7}, rng), param({7}, rng), param({2, 5}, rng), param({7, 2}, rng),
               param({2, 3, 7}, rng)};
  check_gradients([](const Inputs& x) { return lora_linear(x[0], x[1], x[2], x[3], x[4], 0.75f); },
                  {in[0], in[1], in[2], in[3], in[4]});
  check_gradients([](const Inputs& x) { return lora_linear(x[0], x[1], Tensor(), x[2], x[3], 2.0f, x[4]); },
                  {in[0], in[1], in[3], in[4], in[5]});
  auto unfused = [](const Inputs& x, float scale) {
    Tensor update = mul_scalar(matmul(matmul(x[0], x[3], false, true), x[4], false, true), scale);
    return linear(x[0], x[1], x[2], add(update, x[5]));
  };
  auto compare = [&](const std::vector<float>& fused, const std::vector<float>& reference) {
    REQUIRE(fused.size() == reference.size());
    for (size_t i = 0; i < fused.size(); i++) CHECK(fused[i] == doctest::Approx(reference[i]).epsilon(1e-5));
  };
  compare(lora_linear(in[0], in[1], in[2], in[3], in[4], 0.75f, in[5]).to_vector(), unfused(in, 0.75f).to_vector());
  clear_tape();
  // LoRA's case: W, b and x frozen, only A and B train; gradients equal the
  // unfused graph's, and the frozen inputs get no gradient buffer.
  Tensor x = random_tensor({4, 5}, rng), w = random_tensor({5, 7}, rng), b = random_tensor({7}, rng);
  Tensor a = param({3, 5}, rng), bb = param({7, 3}, rng);
  backward(sum(mul(lora_linear(x, w, b, a, bb, 1.5f), lora_linear(x, w, b, a, bb, 1.5f))));
  auto grad_of = [](const Tensor& t) { return std::vector<float>(t.grad(), t.grad() + t.numel()); };
  const std::vector<float> fused_da = grad_of(a), fused_db = grad_of(bb);
  CHECK_FALSE(w.has_grad());
  CHECK_FALSE(x.has_grad());
  a.zero_grad();
  bb.zero_grad();
  Inputs plain = {x, w, b, a, bb, Tensor::zeros({4, 7})};
  backward(sum(mul(unfused(plain, 1.5f), unfused(plain, 1.5f))));
  compare(fused_da, grad_of(a));
  compare(fused_db, grad_of(bb));
  // A layer above another: x trains too (its gradient comes through W' = W + scale·AᵀBᵀ).
  Tensor h = param({4, 5}, rng), weights = random_tensor({4, 7}, rng);
  backward(sum(mul(lora_linear(h, w, b, a, bb, 1.5f), weights)));
  const std::vector<float> fused_dh = grad_of(h);
  h.zero_grad();
  backward(sum(mul(unfused({h, w, b, a, bb, Tensor::zeros({4, 7})}, 1.5f), weights)));
  compare(fused_dh, grad_of(h));
  CHECK_THROWS_WITH_AS(lora_linear(x, w, b, Tensor::zeros({3, 4}), bb, 1.0f),
                       "lora_linear: A (3,4) and B (7,3) must be (r,5) and (7,r)", std::invalid_argument);
  CHECK_THROWS_AS(lora_linear(x, w, b, a, Tensor::zeros({7, 2}), 1.0f), std::invalid_argument);
}

TEST_CASE("gradcheck: sum, mean, reshape, transpose, concat, slice") {
  Rng rng(5);
  Inputs in = {param({2, 3, 4}, rng)};
  check_gradients([](const Inputs& x) { return sum(x[0]); }, in);
  check_gradients([](const Inputs& x) { return mean(x[0]); }, in);
  for (int axis : {0, 1, 2, -1}) check_gradients([=](const Inputs& x) { return sum(x[0], axis); }, in);
  check_gradients([](const Inputs& x) { return reshape(x[0], Shape{4, 6}); }, in);
  check_gradients([](const Inputs& x) { return transpose(x[0]); }, in);
  for (auto [a0, a1] : std::vector<std::pair<int, int>>{{0, 1}, {0, 2}, {1, -1}})
    check_gradients([=](const Inputs& x) { return transpose(x[0], a0, a1); }, in);
  check_gradients([](const Inputs& x) { return transpose(x[0], 1, 2); }, {param({2, 3, 4, 5}, rng)});
  {  // (B,T,H,hs) -> (B,H,T,hs): element [b][t][h][i] moves to [b][h][t][i]
    Tensor x = param({2, 3, 4, 5}, rng);
    Tensor y = transpose(x, 1, 2);
    CHECK(y.shape() == Shape{2, 4, 3, 5});
    CHECK(y.data()[((1 * 4 + 2) * 3 + 1) * 5 + 3] == x.data()[((1 * 3 + 1) * 4 + 2) * 5 + 3]);
  }
  check_gradients([](const Inputs& x) { return concat(x[0], x[1], 1); }, {param({2, 3, 4}, rng), param({2, 5, 4}, rng)});
  check_gradients([](const Inputs& x) { return concat(x[0], x[1], -1); }, {param({2, 3}, rng), param({2, 1}, rng)});
  check_gradients([](const Inputs& x) { return slice(x[0], 1, 1, 3); }, in);
  check_gradients([](const Inputs& x) { return slice(x[0], 2, 0, 1); }, in);
  CHECK_THROWS_AS(slice(in[0], 1, 2, 5), std::invalid_argument);
  CHECK_THROWS_AS(reshape(in[0], Shape{5, 5}), std::invalid_argument);
  CHECK_THROWS_AS(concat(in[0], Tensor::zeros({2, 3, 5}), 1), std::invalid_argument);
}

TEST_CASE("gradcheck: embedding with repeated ids scatter-adds") {
  Rng rng(6);
  std::vector<int> ids = {3, 1, 3, 0, 3, 2};  // id 3 three times
  check_gradients([&](const Inputs& x) { return embedding(x[0], ids, Shape{2, 3}); }, {param({5, 4}, rng)});
  CHECK_THROWS_WITH_AS(embedding(Tensor::zeros({5, 4}), {5}, Shape{1}), "embedding: id 5 out of range [0, 5)",
                       std::invalid_argument);
}

TEST_CASE("gradcheck: layernorm, softmax, log_softmax") {
  Rng rng(7);
  Inputs in = {param({2, 3, 6}, rng), param({6}, rng), param({6}, rng)};
  check_gradients([](const Inputs& x) { return layernorm(x[0], x[1], x[2], 1e-5f); }, in);
  check_gradients([](const Inputs& x) { return softmax(x[0]); }, {in[0]});
  check_gradients([](const Inputs& x) { return log_softmax(x[0]); }, {in[0]});
  // softmax rows sum to one, even for large logits
  Tensor big = Tensor::from({1, 3}, {1000.0f, 1001.0f, 999.0f});
  Tensor p = softmax(big);
  CHECK(p.data()[0] + p.data()[1] + p.data()[2] == doctest::Approx(1.0));
}

TEST_CASE("gradcheck: cross-entropy with ignore_index") {
  Rng rng(8);
  std::vector<int> targets = {2, -100, 0, 4, 4, -100};
  check_gradients([&](const Inputs& x) { return cross_entropy(x[0], targets); }, {param({2, 3, 5}, rng)});
  // value: the mean over counted rows of -log softmax[target]
  Tensor logits = Tensor::from({2, 2}, {0.0f, 0.0f, 1.0f, 3.0f});
  CHECK(cross_entropy(logits, {0, 1}).item() == doctest::Approx((std::log(2.0) + std::log(1 + std::exp(-2.0))) / 2));
  CHECK(cross_entropy(logits, {-100, -100}).item() == 0.0f);
  CHECK_THROWS_AS(cross_entropy(logits, {0, 2}), std::invalid_argument);
}

TEST_CASE("gradcheck: linear_cross_entropy (x and the weight, ignored targets)") {
  Rng rng(23);
  const std::vector<int> targets = {3, -100, 0, 6, 6, 1};
  check_gradients([&](const Inputs& x) { return linear_cross_entropy(x[0], x[1], targets); },
                  {param({2, 3, 5}, rng), param({7, 5}, rng, 0.5f)});
}

TEST_CASE("linear_cross_entropy equals cross_entropy(x Wᵀ): value and gradients, in chunks, times the loss's gradient") {
  // V large enough that the rows go in three chunks of kChunkLogits (8 M) logits.
  const int V = 30011, C = 12, rows = 3 * ((1 << 23) / V) - 5;
  Rng rng(21);
  std::vector<int> targets(rows);
  for (int r = 0; r < rows; r++) targets[r] = r % 7 == 3 ? -100 : rng.below(V);
  Tensor x = param({rows, C}, rng), W = param({V, C}, rng, 0.5f);
  auto grads = [&](bool fused) {
    x.zero_grad();
    W.zero_grad();
    const Tensor loss = fused ? linear_cross_entropy(x, W, targets) : cross_entropy(matmul(x, W, false, true), targets);
    const float value = loss.item();
    backward(mul_scalar(loss, 3.0f));  // a loss's gradient other than 1
    return std::make_tuple(value, std::vector<float>(x.grad(), x.grad() + x.numel()),
                           std::vector<float>(W.grad(), W.grad() + W.numel()));
  };
  const auto [loss, dx, dW] = grads(true);
  const auto [expected_loss, expected_dx, expected_dW] = grads(false);
  CHECK(loss == doctest::Approx(expected_loss).epsilon(1e-5));
  CHECK(ta::testing::max_relative_diff(dx, expected_dx) < 1e-4f);
  CHECK(ta::testing::max_relative_diff(dW, expected_dW) < 1e-4f);
  {  // without a tape: the value alone, nothing recorded
    NoGradGuard no_grad;
    CHECK(linear_cross_entropy(x, W, targets).item() == doctest::Approx(expected_loss).epsilon(1e-5));
  }
  CHECK(tape_size() == 0);
  // A frozen weight gets nothing; every target ignored: zero and no gradient.
  Tensor frozen = random_tensor({V, C}, rng);
  backward(linear_cross_entropy(x, frozen, targets));
  CHECK(!frozen.has_grad());
  CHECK(linear_cross_entropy(x, W, std::vector<int>(rows, -100)).item() == 0.0f);
  clear_tape();
  CHECK_THROWS_AS(linear_cross_entropy(x, W, std::vector<int>(rows, V)), std::invalid_argument);
  CHECK_THROWS_AS(linear_cross_entropy(x, W, std::vector<int>(rows - 1, 0)), std::invalid_argument);
}

TEST_CASE("dropout: seeded mask, inverted scaling, gradient through the mask") {
  Rng rng(9);
  Tensor x = param({4, 50}, rng);
  Rng a(42), b(42);
  Tensor y1 = dropout(x, 0.3f, a), y2 = dropout(x, 0.3f, b);
  clear_tape();
  int zeros = 0;
  for (int64_t i = 0; i < x.numel(); i++) {
    CHECK(y1.data()[i] == y2.data()[i]);
    if (y1.data()[i] == 0.0f) zeros++;
    else CHECK(y1.data()[i] == doctest::Approx(x.data()[i] / 0.7f));
  }
  CHECK(zeros > 30);
  CHECK(zeros < 90);
  // the same seed each call gives a fixed mask, so the difference quotient is well defined
  check_gradients([](const Inputs& in) { Rng r(7); return dropout(in[0], 0.5f, r); }, {x});
  CHECK(dropout(x, 0.0f, rng).same_as(x));
}

// The larger shapes go through sgemm's split into per-thread blocks.
TEST_CASE("sgemm: OpenBLAS equals the naive reference on odd shapes and strides") {
  Rng rng(10);
  for (auto [M, N, K] : std::vector<std::array<int, 3>>{
           {1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 3, 129}, {5, 8, 0},
           {301, 45, 77}, {29, 517, 83}, {250, 9, 700},
           {1, 13, 5}, {1, 517, 83}, {1, 700, 400}, {3, 700, 400}})  // one row (sgemv), few rows of a large B (split)
    for (bool ta_ : {false, true})
      for (bool tb : {false, true}) {
        int lda = (ta_ ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;  // padded leading dimensions
        std::vector<float> A((ta_ ? K : M) * lda + 1), B((tb ? N : K) * ldb + 1), C1(M * ldc + 1), C2;
        for (auto* v : {&A, &B, &C1})
          for (auto& e : *v) e = rng.normal();
        C2 = C1;
        sgemm(ta_, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, C1.data(), ldc);
        sgemm_naive(ta_, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, C2.data(), ldc);
        for (size_t i = 0; i < C1.size(); i++) CHECK(C1[i] == doctest::Approx(C2[i]).epsilon(1e-4));
      }
}

// LoRA's backward reads dY in blocks of 128 rows over the threads (v = dY B
// and dB in one pass): 300 rows make three blocks, the last one partial, and
// 300 x 120 values are enough to use both threads. Each of A and B trains
// alone too, and dB accumulates onto an earlier gradient.
TEST_CASE("lora_fold and lora_delta: LoRA's update written once equals its tape-op composition") {
  Rng rng(43);
  // x (6, in=5), W (5, out=7), A (r=3, 5), B (7, 3)
  Tensor x = random_tensor({6, 5}, rng), w = random_tensor({5, 7}, rng);
  Tensor a = random_tensor({3, 5}, rng), b = random_tensor({7, 3}, rng);
  const float scale = 0.6f;
  // W + scale · Aᵀ Bᵀ
  std::vector<float> folded = w.to_vector();
  lora_fold(folded.data(), a.data(), b.data(), 5, 7, 3, scale);
  const std::vector<float> fold_ref = add(w, mul_scalar(matmul(a, b, true, true), scale)).to_vector();
  // scale · (x Aᵀ) Bᵀ
  std::vector<float> delta(6 * 7, -1.0f);  // overwritten, not added to
  lora_delta(x.data(), 6, a.data(), b.data(), 5, 7, 3, scale, delta.data());
  const std::vector<float> delta_ref = mul_scalar(matmul(matmul(x, a, false, true), b, false, true), scale).to_vector();
  for (size_t i = 0; i < folded.size(); i++) CHECK(folded[i] == doctest::Approx(fold_ref[i]).epsilon(1e-5));
  for (size_t i = 0; i < delta.size(); i++) CHECK(delta[i] == doctest::Approx(delta_ref[i]).epsilon(1e-5));
}

TEST_CASE("lora_linear: dA and dB over many rows equal the unfused graph's") {
  Rng rng(43);
  Tensor x = random_tensor({3, 100, 24}, rng), w = random_tensor({24, 120}, rng), b = random_tensor({120}, rng);
  Tensor weights = random_tensor({3, 100, 120}, rng);
  for (int trains = 0; trains < 3; trains++) {  // 0: A and B, 1: A alone, 2: B alone
    INFO("trains " << (trains == 0 ? "A and B" : trains == 1 ? "A" : "B"));
    Tensor a = random_tensor({4, 24}, rng), bb = random_tensor({120, 4}, rng);
    a.set_requires_grad(trains != 2);
    bb.set_requires_grad(trains != 1);
    auto loss_of = [&](bool fused) {
      if (fused) return sum(mul(lora_linear(x, w, b, a, bb, 0.5f), weights));
      Tensor update = mul_scalar(matmul(matmul(x, a, false, true), bb, false, true), 0.5f);
      return sum(mul(linear(x, w, b, update), weights));
    };
    auto grads = [&](bool fused) {
      backward(loss_of(fused));
      backward(loss_of(fused));  // the second adds onto the first
      std::vector<float> g;
      for (const Tensor* t : {&a, &bb})
        if (t->requires_grad()) g.insert(g.end(), t->grad(), t->grad() + t->numel());
      a.drop_grad();
      bb.drop_grad();
      return g;
    };
    const std::vector<float> fused = grads(true), unfused = grads(false);
    REQUIRE(fused.size() == unfused.size());
    for (size_t i = 0; i < fused.size(); i++) CHECK(fused[i] == doctest::Approx(unfused[i]).epsilon(1e-4));
  }
}

// sgemm_small's paths: 32- and 16-wide register tiles of 8 rows, the leftover
// rows one at a time, the last N % 16 columns by a plain loop; A read as is
// and transposed; beta 0 (C not read: the NaN put there must not leak) and
// beta 0.3. The padding between rows of C must come back untouched.
TEST_CASE("sgemm_small equals the naive reference on every tile path") {
  Rng rng(12);
  for (auto [M, N, K] : std::vector<std::array<int, 3>>{
           {1, 1, 1}, {8, 32, 32}, {32, 256, 32}, {32, 32, 256}, {17, 48, 9}, {9, 55, 33}, {3, 5, 0}, {40, 70, 1}})
    for (bool ta_ : {false, true})
      for (float beta : {0.0f, 0.3f}) {
        INFO("M=" << M << " N=" << N << " K=" << K << " trans_a=" << ta_ << " beta=" << beta);
        int lda = (ta_ ? M : K) + 3, ldb = N + 2, ldc = N + 1;  // padded leading dimensions
        std::vector<float> A((ta_ ? K : M) * lda + 1), B(K * ldb + 1), C1(M * ldc + 1);
        for (auto* v : {&A, &B, &C1})
          for (auto& e : *v) e = rng.normal();
        if (beta == 0.0f)
          for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C1[i * ldc + j] = NAN;
        std::vector<float> C2(C1);
        sgemm_small(ta_, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, beta, C1.data(), ldc);
        sgemm_naive(ta_, false, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, beta, C2.data(), ldc);
        for (size_t i = 0; i < C1.size(); i++) CHECK(C1[i] == doctest::Approx(C2[i]).epsilon(1e-4));
      }
}

TEST_CASE("backward pruning: frozen inputs are not recorded and get no gradient buffer") {
  Rng rng(11);
  Tensor frozen_w = random_tensor({4, 3}, rng), x = random_tensor({2, 4}, rng);
  // Nothing requires a gradient: nothing is recorded.
  Tensor y = gelu(linear(x, frozen_w, Tensor()));
  CHECK(tape_size() == 0);
  CHECK_FALSE(y.requires_grad());

  // Only the bias is trainable: dW and dX are never formed.
  Tensor bias = Tensor::zeros({3});
  bias.set_requires_grad(true);
  Tensor out = linear(x, frozen_w, bias);
  CHECK(tape_size() == 1);
  backward(sum(out));
  CHECK(bias.has_grad());
  CHECK_FALSE(frozen_w.has_grad());
  CHECK_FALSE(x.has_grad());

  // A trainable weight below a frozen one: the frozen weight still gets no buffer,
  // but the gradient flows through it (dX of the frozen layer is computed).
  Tensor w1 = random_tensor({4, 4}, rng);
  w1.set_requires_grad(true);
  backward(sum(linear(linear(x, w1, Tensor()), frozen_w, Tensor())));
  CHECK(w1.has_grad());
  CHECK_FALSE(frozen_w.has_grad());

  // Under NoGradGuard nothing is recorded even with trainable inputs.
  {
    NoGradGuard guard;
    Tensor z = linear(x, w1, Tensor());
    CHECK(tape_size() == 0);
    CHECK_FALSE(z.requires_grad());
  }
  // Freezing drops a gradient buffer.
  w1.set_requires_grad(false);
  CHECK_FALSE(w1.has_grad());
}

TEST_CASE("memory: a value nobody reads in backward is freed during the forward pass") {
  Rng rng(13);
  const size_t row_bytes = 64 * 32 * sizeof(float);  // one (64, 32) activation
  Tensor p = param({64, 32}, rng), frozen_w = random_tensor({32, 32}, rng), trained_w = param({32, 32}, rng);
  auto held_by_the_tape = [&](const Tensor& w) {
    size_t before = pool_bytes_in_use();
    Tensor y;
    {
      Tensor h = add_scalar(p, 1.0f);   // an activation that needs a gradient
      y = linear(h, w, Tensor());       // h goes out of scope here
    }
    size_t held = pool_bytes_in_use() - before - row_bytes;  // minus y itself
    backward(sum(y));
    return held;
  };
  // A frozen weight's layer reads only W in backward (dX = dY Wᵀ): h is freed.
  CHECK(held_by_the_tape(frozen_w) == 0);
  // A trained weight needs h for dW = hᵀ dY: h stays until backward.
  CHECK(held_by_the_tape(trained_w) == row_bytes);
  CHECK(p.has_grad());
  CHECK(trained_w.has_grad());
  CHECK_FALSE(frozen_w.has_grad());

  // A residual add reads nothing in backward: neither input's value is kept.
  size_t before = pool_bytes_in_use();
  Tensor z;
  {
    Tensor a = add_scalar(p, 1.0f), b = mul_scalar(p, 2.0f);
    z = add(a, b);
  }
  CHECK(pool_bytes_in_use() - before == row_bytes);
  backward(sum(z));
  // softmax, log_softmax and tanh keep their own output (backward reads y)
  // even when no handle to it is left; the gradients are the same either way.
  const Tensor weights = random_tensor({64, 32}, rng);  // constant: mul keeps neither side for it
  for (auto op : {&softmax, &log_softmax, &ta::tanh}) {
    p.drop_grad();
    Tensor y = op(p);
    backward(sum(mul(y, weights)));
    const std::vector<float> expected(p.grad(), p.grad() + p.numel());
    p.drop_grad();
    Tensor loss;
    before = pool_bytes_in_use();
    loss = sum(mul(op(p), weights));
    CHECK(pool_bytes_in_use() - before == row_bytes + sizeof(float));  // y, kept, and the loss
    backward(loss);
    CHECK(std::vector<float>(p.grad(), p.grad() + p.numel()) == expected);
  }
}

TEST_CASE("tape: does not grow over 1,000 steps, and buffers are reused") {
  Rng rng(12);
  Tensor w = random_tensor({8, 8}, rng, 0.1f), b = Tensor::zeros({8});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor x = random_tensor({4, 8}, rng);
  size_t in_use_after_first = 0;
  for (int step = 0; step < 1000; step++) {
    Tensor h = gelu(linear(x, w, b));
    Tensor loss = cross_entropy(h, {0, 1, 2, 3});
    backward(loss);
    CHECK(tape_size() == 0);
    // Memory held between steps is the same every step: nothing leaks.
    if (step == 0) in_use_after_first = pool_bytes_in_use();
    else REQUIRE(pool_bytes_in_use() == in_use_after_first);
  }
}

TEST_CASE("tensor: shape errors carry a message") {
  CHECK_THROWS_WITH_AS(Tensor::from({2, 2}, {1, 2, 3}), "Tensor::from: 3 values for shape (2,2)", std::invalid_argument);
  CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5}), std::invalid_argument);
  CHECK_THROWS_AS(Tensor::zeros({2, 3}).item(), std::invalid_argument);
  Tensor not_scalar = Tensor::zeros({2});
  not_scalar.set_requires_grad(true);
  CHECK_THROWS_WITH_AS(backward(not_scalar), "backward: the loss must be a single value, got shape (2)",
                       std::invalid_argument);
  CHECK_THROWS_AS(backward(Tensor::scalar(1.0f)), std::invalid_argument);
}

TEST_CASE("gradients accumulate across backward calls (gradient accumulation)") {
  Tensor w = Tensor::from({2}, {1.0f, 2.0f});
  w.set_requires_grad(true);
  backward(sum(mul(w, w)));
  backward(sum(mul(w, w)));
  CHECK(w.grad()[0] == 4.0f);
  CHECK(w.grad()[1] == 8.0f);
  w.zero_grad();
  CHECK(w.grad()[0] == 0.0f);
}

TEST_CASE("fastmath: exp_fast and tanh_fast against <cmath>") {
  double worst_exp = 0, worst_tanh = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01f) {
    double ref = std::exp(static_cast<double>(x));
    worst_exp = std::max(worst_exp, std::fabs(exp_fast(x) - ref) / ref);
  }
  for (float u = -20.0f; u <= 20.0f; u += 0.001f)
    worst_tanh = std::max(worst_tanh, std::fabs(tanh_fast(u) - std::tanh(static_cast<double>(u))));
  CHECK(worst_exp < 3e-7);
  CHECK(worst_tanh < 2e-7);
  CHECK(exp_fast(-INFINITY) == 0.0f);
  CHECK(exp_fast(-100.0f) == 0.0f);
  CHECK(std::isinf(exp_fast(100.0f)));
  CHECK(exp_fast(0.0f) == 1.0f);
  CHECK(tanh_fast(50.0f) == 1.0f);
  CHECK(tanh_fast(-50.0f) == -1.0f);
}
