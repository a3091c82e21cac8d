// tests/test_attention.cpp — the fused attention op (autograd/attention.cpp):
// finite-difference gradients, agreement forward and backward with
// reference::attention (its composition of plain ops, autograd/reference.cpp),
// the KV-cache property, backward pruning and shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "tests/gradcheck.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::check_gradients;
using ta::testing::random_parameter;
using ta::testing::random_tensor;

namespace {

// One configuration of the op under test.
struct AttentionCase {
  bool causal = true;
  int prefix_len = 0;       // 0: no prefix
  bool prefix_per_row = false;  // (B,P,C) rather than shared (P,C)
  bool masked = false;
  bool qkv_trainable = true;
  bool prefix_trainable = true;
};

std::string describe(const AttentionCase& c) {
  return std::string(c.causal ? "causal" : "bidirectional") + " P=" + std::to_string(c.prefix_len) +
         (c.prefix_per_row ? " per-row" : " shared") + (c.masked ? " masked" : "") +
         (c.qkv_trainable ? "" : " frozen-qkv") + (c.prefix_trainable ? "" : " frozen-prefix");
}

// A key mask (B, P+T) with padding: every row hides its last own key; row 1
// also hides its whole prefix and own key 0, so under causal attention its
// query 0 sees no key at all; row 0 hides prefix key 0 when there is one.
std::vector<uint8_t> padding_mask(int B, int P, int T) {
  std::vector<uint8_t> mask(static_cast<size_t>(B) * (P + T), 1);
  for (int b = 0; b < B; b++) {
    uint8_t* row = mask.data() + static_cast<size_t>(b) * (P + T);
    row[P + T - 1] = 0;
    if (b == 1)
      for (int s = 0; s <= P; s++) row[s] = 0;
    if (b == 0 && P > 0) row[0] = 0;
  }
  return mask;
}

// Inputs {qkv (B,T,3C), prefix_keys, prefix_values} for a case, random, with requires_grad set.
std::vector<Tensor> make_inputs(const AttentionCase& c, int B, int T, int C, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> inputs{random_tensor({B, T, 3 * C}, rng)};
  inputs[0].set_requires_grad(c.qkv_trainable);
  if (c.prefix_len > 0) {
    Shape prefix_shape = c.prefix_per_row ? Shape{B, c.prefix_len, C} : Shape{c.prefix_len, C};
    for (int i = 0; i < 2; i++) {
      inputs.push_back(random_tensor(prefix_shape, rng));
      inputs.back().set_requires_grad(c.prefix_trainable);
    }
  }
  return inputs;
}

AttentionOptions make_options(const AttentionCase& c, const std::vector<Tensor>& inputs, int n_head) {
  AttentionOptions options;
  options.n_head = n_head;
  options.causal = c.causal;
  if (inputs.size() == 3) {
    options.prefix_keys = inputs[1];
    options.prefix_values = inputs[2];
  }
  if (c.masked) options.key_mask = padding_mask(inputs[0].size(0), c.prefix_len, inputs[0].size(1));
  return options;
}

std::vector<AttentionCase> small_cases() {
  std::vector<AttentionCase> cases;
  for (bool causal : {true, false})
    for (bool masked : {false, true}) {
      cases.push_back({causal, 0, false, masked});
      cases.push_back({causal, 3, false, masked});
      cases.push_back({causal, 2, true, masked});
    }
  cases.push_back({true, 3, false, true, /*qkv_trainable=*/false});
  cases.push_back({false, 2, true, true, /*qkv_trainable=*/false});
  cases.push_back({true, 3, false, true, true, /*prefix_trainable=*/false});
  return cases;
}

using AttentionFn = Tensor (*)(const Tensor&, const AttentionOptions&);

void check_attention_gradients(AttentionFn op) {
  const int B = 2, T = 5, C = 12, H = 3;
  for (const AttentionCase& c : small_cases()) {
    INFO(describe(c));
    std::vector<Tensor> inputs = make_inputs(c, B, T, C, 7);
    check_gradients([&](const std::vector<Tensor>& x) { return op(x[0], make_options(c, x, H)); }, inputs);
  }
}

// Runs op forward and backward on sum(out ⊙ weights); returns the output and
// the gradient of every input (empty where an input has none).
std::vector<std::vector<float>> forward_backward(AttentionFn op, const AttentionCase& c, std::vector<Tensor> inputs,
                                                 int n_head) {
  for (auto& x : inputs) x.drop_grad();
  Tensor out = op(inputs[0], make_options(c, inputs, n_head));
  Rng rng(99);
  backward(sum(mul(out, random_tensor(out.shape(), rng))));
  std::vector<std::vector<float>> result{out.to_vector()};
  for (auto& x : inputs)
    result.push_back(x.has_grad() ? std::vector<float>(x.grad(), x.grad() + x.numel()) : std::vector<float>{});
  return result;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, float tolerance) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) {
    REQUIRE(std::isfinite(got[i]));
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) / (1.0 + std::fabs(want[i])));
  }
  CHECK(worst <= tolerance);
}

void check_fused_matches_reference(int B, int T, int C, int H, int P) {
  for (bool causal : {true, false})
    for (bool per_row : {false, true})
      for (bool masked : {false, true}) {
        AttentionCase c{causal, P, per_row, masked};
        INFO(describe(c) << " B=" << B << " T=" << T << " C=" << C << " H=" << H);
        std::vector<Tensor> inputs = make_inputs(c, B, T, C, 11);
        auto fused = forward_backward(attention, c, inputs, H);
        auto composed = forward_backward(reference::attention, c, inputs, H);
        check_close(fused[0], composed[0], 1e-5f);  // output
        for (size_t i = 1; i < fused.size(); i++) {
          INFO("gradient of input " << i - 1);
          REQUIRE(!composed[i].empty());
          check_close(fused[i], composed[i], 2e-5f);
        }
      }
}

// Rows [t0, t1) of a (B,T,N) tensor, and column block [c0, c1) of those rows: (B, t1-t0, c1-c0).
Tensor rows_of(const Tensor& x, int t0, int t1, int c0, int c1) {
  const int B = x.size(0), T = x.size(1), N = x.size(2);
  Tensor part = Tensor::empty({B, t1 - t0, c1 - c0});
  for (int b = 0; b < B; b++)
    for (int t = t0; t < t1; t++)
      std::memcpy(part.data() + (static_cast<int64_t>(b) * (t1 - t0) + t - t0) * (c1 - c0),
                  x.data() + (static_cast<int64_t>(b) * T + t) * N + c0, sizeof(float) * (c1 - c0));
  return part;
}

}  // namespace

TEST_CASE("attention: gradients match finite differences (fused kernel)") {
  check_attention_gradients(attention);
}

TEST_CASE("attention: gradients match finite differences (reference)") {
  check_attention_gradients(reference::attention);
}

TEST_CASE("attention: fused kernel equals the reference, forward and backward") {
  check_fused_matches_reference(3, 17, 24, 4, 5);
  // T > the causal block (kCausalBlock = 32 rows): several blocks, the last one partial.
  check_fused_matches_reference(2, 150, 16, 2, 3);
  // Head sizes 32 and 16 run sgemm_small's register tiles (the ones above, its
  // plain loops); 20 prefix rows make key counts that are not multiples of 16.
  check_fused_matches_reference(2, 70, 64, 2, 20);
  check_fused_matches_reference(2, 45, 48, 3, 7);
}

TEST_CASE("attention: the output without a tape equals the output with one") {
  AttentionCase c{true, 3, true, true};
  std::vector<Tensor> inputs = make_inputs(c, 3, 17, 24, 5);
  Tensor recorded = attention(inputs[0], make_options(c, inputs, 4));
  clear_tape();
  NoGradGuard no_grad;
  Tensor plain = attention(inputs[0], make_options(c, inputs, 4));
  CHECK(plain.to_vector() == recorded.to_vector());
}

TEST_CASE("attention: a query that sees no key outputs zeros and passes back zero gradient") {
  const int B = 2, T = 5, C = 12, H = 3, P = 2;
  for (bool causal : {true, false}) {
    INFO((causal ? "causal" : "bidirectional"));
    AttentionCase c{causal, P, false, true};
    std::vector<Tensor> inputs = make_inputs(c, B, T, C, 3);
    AttentionOptions options = make_options(c, inputs, H);
    // Causal: row 1 of padding_mask leaves its query 0 with no key. Bidirectional:
    // hide every key of row 1, so none of its queries sees anything.
    if (!causal) std::fill(options.key_mask.begin() + (P + T), options.key_mask.end(), 0);
    Tensor out = attention(inputs[0], options);
    backward(sum(mul(out, Tensor::full(out.shape(), 1.0f))));
    const int blind_queries = causal ? 1 : T;  // queries 0 .. blind_queries-1 of row 1
    for (int t = 0; t < blind_queries; t++)
      for (int i = 0; i < C; i++) {
        CHECK(out.data()[(1 * T + t) * C + i] == 0.0f);
        CHECK(inputs[0].grad()[(1 * T + t) * 3 * C + i] == 0.0f);  // dq
      }
    for (int64_t i = 0; i < inputs[0].numel(); i++) REQUIRE(std::isfinite(inputs[0].grad()[i]));
    for (int64_t i = 0; i < out.numel(); i++) REQUIRE(std::isfinite(out.data()[i]));
  }
}

TEST_CASE("attention: prefix_len reads the first rows of a prefix with spare rows (a KV cache grown in place)") {
  const int B = 2, T = 3, C = 8, H = 2, P = 5, capacity = 9;
  Rng rng(17);
  const Tensor qkv = random_tensor({B, T, 3 * C}, rng);
  const Tensor keys = random_tensor({B, capacity, C}, rng), values = random_tensor({B, capacity, C}, rng);
  AttentionOptions exact;
  exact.n_head = H;
  exact.prefix_keys = rows_of(keys, 0, P, 0, C);  // (B,P,C): the rows in use, copied out
  exact.prefix_values = rows_of(values, 0, P, 0, C);
  AttentionOptions spare = exact;
  spare.prefix_keys = keys;
  spare.prefix_values = values;
  spare.prefix_len = P;
  const std::vector<float> expected = attention(qkv, exact).to_vector();
  CHECK(attention(qkv, spare).to_vector() == expected);
  set_reference_path(true);
  CHECK(ta::testing::max_relative_diff(attention(qkv, spare).to_vector(), expected) < 1e-5f);
  set_reference_path(false);
  spare.prefix_len = capacity + 1;
  CHECK_THROWS_WITH_AS(attention(qkv, spare), "attention: prefix_len 10 exceeds the prefix's 9 rows", std::invalid_argument);
  spare.prefix_len = P;
  spare.prefix_keys = random_parameter({B, capacity, C}, rng);
  CHECK_THROWS_WITH_AS(attention(qkv, spare), "attention: a prefix with spare rows (prefix_len) cannot train", std::invalid_argument);
}

TEST_CASE("attention: KV cache — a chunk at a time equals the whole sequence at once") {
  const int B = 2, T = 11, C = 16, H = 4;
  Rng rng(21);
  Tensor qkv = random_tensor({B, T, 3 * C}, rng);
  NoGradGuard no_grad;
  AttentionOptions whole;
  whole.n_head = H;
  std::vector<float> expected = attention(qkv, whole).to_vector();

  SUBCASE("two chunks") {
    const int T1 = 4;
    Tensor first = attention(rows_of(qkv, 0, T1, 0, 3 * C), whole);
    AttentionOptions cached = whole;
    cached.prefix_keys = rows_of(qkv, 0, T1, C, 2 * C);        // (B,T1,C)
    cached.prefix_values = rows_of(qkv, 0, T1, 2 * C, 3 * C);  // (B,T1,C)
    Tensor rest = attention(rows_of(qkv, T1, T, 0, 3 * C), cached);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) {
          float got = t < T1 ? first.data()[(b * T1 + t) * C + i] : rest.data()[(b * (T - T1) + t - T1) * C + i];
          CHECK(std::fabs(got - expected[(b * T + t) * C + i]) <= 1e-5f);
        }
  }
  SUBCASE("a shared prefix and a key mask, then the cache") {
    // The whole sequence sees a trained (P,C) prefix under a padding mask. The
    // cache for the second chunk is [prefix ; k, v of the first chunk] per row,
    // so its keys come in the same order as the whole call's and the same
    // mask applies; the first chunk uses the mask's first P+T1 columns.
    const int P = 3, T1 = 6;
    Tensor prefix_keys = random_tensor({P, C}, rng), prefix_values = random_tensor({P, C}, rng);
    AttentionOptions prefixed = whole;
    prefixed.prefix_keys = prefix_keys;
    prefixed.prefix_values = prefix_values;
    prefixed.key_mask = padding_mask(B, P, T);
    std::vector<float> want = attention(qkv, prefixed).to_vector();

    AttentionOptions first_options = prefixed;
    first_options.key_mask.clear();
    for (int b = 0; b < B; b++)
      for (int s = 0; s < P + T1; s++) first_options.key_mask.push_back(prefixed.key_mask[b * (P + T) + s]);
    Tensor first = attention(rows_of(qkv, 0, T1, 0, 3 * C), first_options);
    AttentionOptions cached = prefixed;
    cached.prefix_keys = Tensor::empty({B, P + T1, C});
    cached.prefix_values = Tensor::empty({B, P + T1, C});
    Tensor first_keys = rows_of(qkv, 0, T1, C, 2 * C), first_values = rows_of(qkv, 0, T1, 2 * C, 3 * C);
    for (int b = 0; b < B; b++) {
      std::memcpy(cached.prefix_keys.data() + b * (P + T1) * C, prefix_keys.data(), sizeof(float) * P * C);
      std::memcpy(cached.prefix_values.data() + b * (P + T1) * C, prefix_values.data(), sizeof(float) * P * C);
      std::memcpy(cached.prefix_keys.data() + (b * (P + T1) + P) * C, first_keys.data() + b * T1 * C,
                  sizeof(float) * T1 * C);
      std::memcpy(cached.prefix_values.data() + (b * (P + T1) + P) * C, first_values.data() + b * T1 * C,
                  sizeof(float) * T1 * C);
    }
    Tensor rest = attention(rows_of(qkv, T1, T, 0, 3 * C), cached);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) {
          float got = t < T1 ? first.data()[(b * T1 + t) * C + i] : rest.data()[(b * (T - T1) + t - T1) * C + i];
          CHECK(std::fabs(got - want[(b * T + t) * C + i]) <= 1e-5f);
        }
  }
  SUBCASE("one token at a time, as generation") {
    for (int t = 0; t < T; t++) {
      AttentionOptions step = whole;
      if (t > 0) {
        step.prefix_keys = rows_of(qkv, 0, t, C, 2 * C);
        step.prefix_values = rows_of(qkv, 0, t, 2 * C, 3 * C);
      }
      Tensor out = attention(rows_of(qkv, t, t + 1, 0, 3 * C), step);  // (B,1,C)
      for (int b = 0; b < B; b++)
        for (int i = 0; i < C; i++) CHECK(std::fabs(out.data()[b * C + i] - expected[(b * T + t) * C + i]) <= 1e-5f);
    }
  }
}

TEST_CASE("attention: backward pruning — no gradient buffer for what does not need one") {
  const int B = 2, T = 5, C = 12, H = 3;
  SUBCASE("frozen prefix (a KV cache): only qkv gets a gradient") {
    AttentionCase c{true, 3, false, false, true, /*prefix_trainable=*/false};
    std::vector<Tensor> inputs = make_inputs(c, B, T, C, 1);
    backward(sum(attention(inputs[0], make_options(c, inputs, H))));
    CHECK(inputs[0].has_grad());
    CHECK_FALSE(inputs[1].has_grad());
    CHECK_FALSE(inputs[2].has_grad());
  }
  SUBCASE("frozen qkv, trainable prefix (prefix tuning of a frozen model): only the prefix does") {
    for (bool per_row : {false, true}) {
      AttentionCase c{true, 3, per_row, false, /*qkv_trainable=*/false};
      std::vector<Tensor> inputs = make_inputs(c, B, T, C, 1);
      backward(sum(attention(inputs[0], make_options(c, inputs, H))));
      CHECK_FALSE(inputs[0].has_grad());
      CHECK(inputs[1].has_grad());
      CHECK(inputs[2].has_grad());
    }
  }
  SUBCASE("nothing trainable: nothing is recorded") {
    AttentionCase c{true, 3, false, false, false, false};
    std::vector<Tensor> inputs = make_inputs(c, B, T, C, 1);
    Tensor out = attention(inputs[0], make_options(c, inputs, H));
    CHECK_FALSE(out.requires_grad());
    CHECK(tape_size() == 0);
  }
}

TEST_CASE("attention: shape errors throw std::invalid_argument naming attention") {
  Rng rng(0);
  Tensor qkv = random_tensor({2, 5, 36}, rng);  // C = 12
  auto expect_error = [](const Tensor& x, const AttentionOptions& options) {
    try {
      attention(x, options);
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).rfind("attention: ", 0) == 0);
    }
  };
  AttentionOptions options;
  options.n_head = 5;  // 12 % 5 != 0
  expect_error(qkv, options);
  options.n_head = 0;
  expect_error(qkv, options);
  options.n_head = 3;
  expect_error(random_tensor({10, 36}, rng), options);    // not rank 3
  expect_error(random_tensor({2, 5, 35}, rng), options);  // not 3C
  AttentionOptions only_keys = options;
  only_keys.prefix_keys = random_tensor({3, 12}, rng);
  expect_error(qkv, only_keys);
  AttentionOptions mismatched = only_keys;
  mismatched.prefix_values = random_tensor({2, 12}, rng);
  expect_error(qkv, mismatched);
  AttentionOptions wrong_width = options;
  wrong_width.prefix_keys = random_tensor({3, 8}, rng);
  wrong_width.prefix_values = random_tensor({3, 8}, rng);
  expect_error(qkv, wrong_width);
  AttentionOptions wrong_batch = options;
  wrong_batch.prefix_keys = random_tensor({3, 3, 12}, rng);
  wrong_batch.prefix_values = random_tensor({3, 3, 12}, rng);
  expect_error(qkv, wrong_batch);
  AttentionOptions short_mask = options;
  short_mask.key_mask.assign(2 * 4, 1);  // expected B*(P+T) = 10
  expect_error(qkv, short_mask);
  CHECK_NOTHROW(attention(qkv, options));
}
