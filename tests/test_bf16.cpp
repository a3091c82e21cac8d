// tests/test_bf16.cpp — the frozen base in bfloat16: the rounding, the
// product kernel (autograd/kernels/gemm_bf16.cpp) against its plain reference
// and its fallback, the ops linear_bf16 and embedding_bf16, GPT's cast, and
// training and the command line with --bf16.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "adapt/runner.h"
#include "autograd/kernels/gemm_bf16.h"
#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "tests/gradcheck.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::random_parameter;
using ta::testing::random_tensor;
using ta::testing::ScratchDir;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<float> random_values(size_t n, Rng& rng) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.normal();
  return v;
}

}  // namespace

TEST_CASE("bf16: rounding is to nearest, ties to even; infinities and NaN survive") {
  CHECK(to_bf16(1.0f) == 0x3f80);
  CHECK(to_bf16(-2.0f) == 0xc000);
  CHECK(to_bf16(from_bits(0x3f808000)) == 0x3f80);  // halfway between 0x3f80 and 0x3f81: to the even one
  CHECK(to_bf16(from_bits(0x3f818000)) == 0x3f82);  // halfway between 0x3f81 and 0x3f82: to the even one
  CHECK(to_bf16(from_bits(0x3f808001)) == 0x3f81);  // just past halfway: up
  CHECK(to_bf16(from_bits(0x3f807fff)) == 0x3f80);  // just short of it: down
  CHECK(to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(std::isnan(from_bf16(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(from_bf16(to_bf16(from_bits(0x7f800001)))));  // a NaN whose payload is in the low bits only
  CHECK(from_bf16(to_bf16(3.140625f)) == 3.140625f);              // 8 significant bits: exact
  Rng rng(3);
  for (int i = 0; i < 1000; i++) {  // relative error at most 2^-8 (half a unit of the 8th significant bit)
    const float x = rng.normal();
    CHECK(std::fabs(from_bf16(to_bf16(x)) - x) <= std::fabs(x) * (1.0f / 256));
  }
}

TEST_CASE("bf16: gemm_bf16 equals its plain reference at every edge, both layouts, beta 0 and 1") {
  // Sizes around the kernel's tile (12 x 32), its blocks (KC 384, MC 192, NC
  // 3072), odd k (a pair half empty), one row, and sub-matrices (lda, ldb, ldc
  // larger than needed).
  struct Size { int M, N, K; };
  const Size sizes[] = {{1, 1, 1}, {1, 700, 769}, {12, 32, 2}, {13, 33, 3}, {77, 131, 45},
                        {200, 70, 800}, {31, 3100, 9}, {250, 33, 2}, {5, 64, 385}};
  Rng rng(7);
  for (const Size& s : sizes)
    for (bool trans_b : {false, true})
      for (float beta : {0.0f, 1.0f}) {
        CAPTURE(s.M); CAPTURE(s.N); CAPTURE(s.K); CAPTURE(trans_b); CAPTURE(beta);
        const int lda = s.K + 3, ldc = s.N + 5;
        const int b_rows = trans_b ? s.N : s.K, b_cols = trans_b ? s.K : s.N, ldb = b_cols + 2;
        std::vector<float> A = random_values(static_cast<size_t>(s.M) * lda, rng);
        // Ties: a quarter of A's values sit exactly halfway between two bfloat16
        // values, where the kernel's vector rounding must agree with to_bf16.
        for (size_t i = 0; i < A.size(); i += 4) {
          uint32_t u;
          std::memcpy(&u, &A[i], 4);
          A[i] = from_bits((u & 0xffff0000u) | 0x8000u);
        }
        const Bf16Matrix B = Bf16Matrix::from_float(random_values(static_cast<size_t>(b_rows) * ldb, rng).data(), b_rows, ldb);
        const std::vector<float> C0 = random_values(static_cast<size_t>(s.M) * ldc, rng);
        std::vector<float> ours = C0, fallback = C0, expected = C0;
        gemm_bf16(trans_b, s.M, s.N, s.K, A.data(), lda, B.values.data(), ldb, beta, ours.data(), ldc);
        gemm_bf16_widening(trans_b, s.M, s.N, s.K, A.data(), lda, B.values.data(), ldb, beta, fallback.data(), ldc);
        gemm_bf16_reference(trans_b, s.M, s.N, s.K, A.data(), lda, B.values.data(), ldb, beta, expected.data(), ldc);
        CHECK(ta::testing::max_relative_diff(ours, expected) < 1e-5f);
        CHECK(ta::testing::max_relative_diff(fallback, expected) < 1e-5f);
        for (int i = 0; i < s.M; i++)  // the columns past N are left alone
          for (int j = s.N; j < ldc; j++) CHECK(ours[static_cast<size_t>(i) * ldc + j] == C0[static_cast<size_t>(i) * ldc + j]);
      }
  MESSAGE("gemm_bf16 runs on " << std::string(cpu_has_bf16_dot() ? "AVX512-BF16" : "the widening fallback") << " here");
}

TEST_CASE("bf16: linear_bf16's output and gradients are the float32 ones of the rounded values") {
  Rng rng(11);
  for (bool transposed : {false, true}) {
    CAPTURE(transposed);
    const int rows = 6, in = 37, out = 19;
    const Tensor w = random_tensor(transposed ? Shape{out, in} : Shape{in, out}, rng);
    auto weight = std::make_shared<const Bf16Matrix>(Bf16Matrix::from_float(w.data(), w.size(0), w.size(1)));
    Tensor x = random_parameter({2, 3, in}, rng), bias = random_parameter({out}, rng), addend = random_parameter({2, 3, out}, rng);
    Tensor y = linear_bf16(x, weight, transposed, bias, addend);
    REQUIRE(y.shape() == Shape({2, 3, out}));
    // Forward: bf16(x) @ op(W) + bias + addend.
    std::vector<float> expected(static_cast<size_t>(rows) * out);
    for (int r = 0; r < rows; r++)
      for (int j = 0; j < out; j++) expected[static_cast<size_t>(r) * out + j] = bias.data()[j] + addend.data()[r * out + j];
    gemm_bf16_reference(transposed, rows, out, in, x.data(), in, weight->values.data(), weight->cols, 1.0f, expected.data(), out);
    CHECK(ta::testing::max_relative_diff(y.to_vector(), expected) < 1e-5f);
    // Backward of sum(y · R): dx = bf16(R) @ op(W)ᵀ, dbias = column sums of R, daddend = R.
    // (Not finite differences: rounding x to bfloat16 makes y a step function
    // of x; its gradient passes straight through the rounding, by definition.)
    const Tensor R = random_tensor(y.shape(), rng);
    backward(sum(mul(y, R)));
    std::vector<float> dx(static_cast<size_t>(rows) * in, 0.0f), dbias(out, 0.0f);
    gemm_bf16_reference(!transposed, rows, in, out, R.data(), out, weight->values.data(), weight->cols, 0.0f, dx.data(), in);
    for (int r = 0; r < rows; r++)
      for (int j = 0; j < out; j++) dbias[j] += R.data()[r * out + j];
    CHECK(ta::testing::max_relative_diff(std::vector<float>(x.grad(), x.grad() + x.numel()), dx) < 1e-5f);
    CHECK(ta::testing::max_relative_diff(std::vector<float>(bias.grad(), bias.grad() + out), dbias) < 1e-5f);
    CHECK(ta::testing::max_relative_diff(std::vector<float>(addend.grad(), addend.grad() + addend.numel()), R.to_vector()) == 0.0f);
  }
  // Nothing trains upstream: nothing is recorded.
  const Tensor w = random_tensor({4, 3}, rng);
  auto weight = std::make_shared<const Bf16Matrix>(Bf16Matrix::from_float(w.data(), 4, 3));
  linear_bf16(random_tensor({2, 4}, rng), weight, false, Tensor());
  CHECK(tape_size() == 0);
  CHECK_THROWS_WITH_AS(linear_bf16(random_tensor({2, 5}, rng), weight, false, Tensor()),
                       "linear_bf16: x (2,5) does not fit weight (4,3) [in,out]", std::invalid_argument);
}

TEST_CASE("bf16: linear_cross_entropy_bf16 equals cross_entropy(linear_bf16(x, Wᵀ)), value and input gradient") {
  const int V = 20011, C = 10, rows = 2 * ((1 << 23) / V) + 7;  // three chunks
  Rng rng(4);
  std::vector<int> targets(rows);
  for (int r = 0; r < rows; r++) targets[r] = r % 5 == 1 ? -100 : rng.below(V);
  const Tensor w = random_tensor({V, C}, rng, 0.5f);
  auto weight = std::make_shared<const Bf16Matrix>(Bf16Matrix::from_float(w.data(), V, C));
  Tensor x = random_parameter({rows, C}, rng);
  const Tensor loss = linear_cross_entropy_bf16(x, weight, targets);
  backward(mul_scalar(loss, 0.5f));
  const std::vector<float> dx(x.grad(), x.grad() + x.numel());
  x.zero_grad();
  const Tensor expected = cross_entropy(linear_bf16(x, weight, true, Tensor()), targets);
  backward(mul_scalar(expected, 0.5f));
  CHECK(loss.item() == doctest::Approx(expected.item()).epsilon(1e-5));
  CHECK(ta::testing::max_relative_diff(dx, std::vector<float>(x.grad(), x.grad() + x.numel())) < 1e-4f);
}

TEST_CASE("bf16: embedding_bf16 widens the picked rows; a bad id is refused") {
  Rng rng(5);
  const Tensor table = random_tensor({9, 6}, rng);
  const Bf16Matrix t = Bf16Matrix::from_float(table.data(), 9, 6);
  const Tensor rows = embedding_bf16(t, {8, 0, 8}, Shape{3});
  REQUIRE(rows.shape() == Shape({3, 6}));
  for (int c = 0; c < 6; c++) {
    CHECK(rows.data()[c] == from_bf16(to_bf16(table.data()[8 * 6 + c])));
    CHECK(rows.data()[6 + c] == from_bf16(to_bf16(table.data()[c])));
  }
  CHECK_THROWS_AS(embedding_bf16(t, {9}, Shape{1}), std::invalid_argument);
}

TEST_CASE("bf16: GPT::store_frozen_in_bf16 casts the frozen matrices only, frees them, and keeps loss and LoRA gradients") {
  ModelConfig c = ta::testing::small_config(true, 97, 24, 2, 16);
  c.embd_pdrop = c.resid_pdrop = 0.0f;
  auto with_lora = [&](GPT& model) {
    adapt::MethodConfig config = ta::testing::small_method_config("lora");
    config.target_modules = {"c_attn", "c_fc"};
    std::unique_ptr<adapt::Method> method = adapt::make_method(config);
    Rng rng(3);
    method->attach(model, adapt::AttachContext{}, rng);
    for (OptimParam& p : method->trainable_parameters()) fill_normal(p.tensor, rng, 0.0f, 0.1f);  // B ≠ 0: gradients for A too
    return method;
  };
  GPT fp32(c, 1), bf16(c, 1);
  auto m32 = with_lora(fp32), m16 = with_lora(bf16);
  // Matrices bigger than the default init's 0.02, so that rounding shows.
  const int64_t cast = bf16.store_frozen_in_bf16();
  CHECK(cast == 97 * 24 + 2 * (24 * 72 + 24 * 24 + 24 * 96 + 96 * 24));
  CHECK(bf16.store_frozen_in_bf16() == cast);  // once: a second call casts nothing more
  CHECK(bf16.wte.weight.data() == nullptr);
  CHECK(bf16.block(0).mlp.c_fc.weight.data() == nullptr);
  CHECK(bf16.block(0).mlp.c_fc.bias.data() != nullptr);  // biases, layer norms and wpe stay float32
  CHECK(bf16.wpe.weight.data() != nullptr);
  CHECK(bf16.wte.weight.shape() == Shape({97, 24}));  // the shape stays: parameter counts are unchanged
  CHECK(bf16.count_parameters() == fp32.count_parameters());

  Rng rng(9);
  std::vector<int> ids(2 * 16), targets(2 * 16);
  for (size_t i = 0; i < ids.size(); i++) ids[i] = rng.below(97), targets[i] = rng.below(97);
  const Tensor loss32 = fp32.loss(ids, targets, 2, 16);
  backward(loss32);  // (backward clears the tape: one model at a time)
  const Tensor loss16 = bf16.loss(ids, targets, 2, 16);
  backward(loss16);
  MESSAGE("loss float32 " << loss32.item() << ", bfloat16 base " << loss16.item());
  CHECK(std::fabs(loss16.item() - loss32.item()) < 1e-2f * std::fabs(loss32.item()));
  const std::vector<OptimParam> p32 = m32->trainable_parameters(), p16 = m16->trainable_parameters();
  REQUIRE(p32.size() == p16.size());
  float worst = 0;
  for (size_t i = 0; i < p32.size(); i++) {
    const Tensor& a = p32[i].tensor;
    const Tensor& b = p16[i].tensor;
    REQUIRE(a.has_grad());
    REQUIRE(b.has_grad());
    worst = std::max(worst, ta::testing::max_relative_diff(std::vector<float>(b.grad(), b.grad() + b.numel()),
                                                           std::vector<float>(a.grad(), a.grad() + a.numel())));
  }
  MESSAGE("LoRA gradients, bfloat16 base against float32: worst relative difference " << worst);
  CHECK(worst < 3e-2f);

  GPT full(c, 1);  // every weight trains: nothing to cast
  CHECK(full.store_frozen_in_bf16() == 0);
}

TEST_CASE("bf16: load_model(dir, bf16) reads the matrices straight into bfloat16: the same model as casting after loading") {
  ScratchDir scratch("bf16load");
  save_model(GPT(ta::testing::small_config(true, 53, 24, 2, 12), 4), scratch.path);
  std::unique_ptr<GPT> cast_after = load_model(scratch.path), read_so = load_model(scratch.path, true);
  cast_after->freeze_all();
  const int64_t stored = cast_after->store_frozen_in_bf16();
  CHECK(read_so->store_frozen_in_bf16() == stored);  // all already stored: nothing more to cast
  for (const GPT::Bf16Slot& slot : read_so->bf16_slots()) {
    CAPTURE(slot.key);
    REQUIRE(*slot.bf16);
    CHECK(slot.weight->data() == nullptr);
    CHECK(!slot.weight->requires_grad());
  }
  CHECK(read_so->wte.weight_bf16->values == cast_after->wte.weight_bf16->values);
  CHECK(read_so->block(1).mlp.c_proj.weight_bf16->values == cast_after->block(1).mlp.c_proj.weight_bf16->values);
  CHECK(read_so->block(0).attn.c_attn.bias.to_vector() == cast_after->block(0).attn.c_attn.bias.to_vector());  // float32 as read
  NoGradGuard no_grad;
  const std::vector<int> ids = {1, 5, 9, 52, 0, 7};
  CHECK(read_so->logits(read_so->forward(ids, 1, 6)).to_vector() == cast_after->logits(cast_after->forward(ids, 1, 6)).to_vector());
}

TEST_CASE("bf16: LoRA and prefix tuning on a bfloat16 base learn the keyword task") {
  const data::Task task = data::load_task("tests/fixtures/adapt/keyword/train.tsv", 7);
  ScratchDir scratch("bf16");
  const std::string model_dir = scratch.file("base");
  ta::testing::save_keyword_base(task, model_dir, 48);
  const std::vector<size_t> counts = data::label_counts(task.test, 2);
  const double majority = static_cast<double>(*std::max_element(counts.begin(), counts.end())) / task.test.size();
  for (const std::string method : {"lora", "prefix"}) {
    CAPTURE(method);
    const adapt::MethodConfig config = ta::testing::small_method_config(method);
    adapt::HeadRequest request;
    request.hidden = config.probe_hidden;
    adapt::AdaptedModel a = adapt::create_adapted(
        model_dir, config, adapt::resolve_head(request, method, read_config(model_dir + "/config.json"), task.label_names), 11);
    CHECK(a.model->store_frozen_in_bf16() > 0);
    auto encoded = [&](const std::string& split) {
      return adapt::encode_examples(task.split(split), a.tokenizer, a.max_text_tokens(), split);
    };
    adapt::RunOptions o = adapt::default_run_options(method);
    o.steps = 120;
    o.batch = 8;
    o.warmup = 0;
    o.show_progress = false;
    const adapt::TrainResult r = adapt::train(a, encoded("train"), encoded("val"), o);
    CHECK(r.losses.back() < r.losses.front());
    CHECK(adapt::evaluate(a, encoded("test")).accuracy > majority + 0.1);
  }
}

TEST_CASE("bf16: the command line: adapt --bf16 and eval --bf16; refused with finetune and with --reference") {
  const data::Task task = data::load_task("tests/fixtures/adapt/keyword/train.tsv", 7);
  ScratchDir scratch("bf16cli");
  const std::string base = scratch.file("base");
  ta::testing::save_keyword_base(task, base, 48);
  const std::string common = " --model " + base + " --task tests/fixtures/adapt/keyword/train.tsv --steps 30 --batch 8";
  ta::testing::CommandResult r =
      ta::testing::run_command(ta::testing::tinyadapt_binary() + " adapt" + common + " --method lora --bf16 --out " + scratch.file("lora"), scratch.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("bf16: the frozen base in bfloat16") != std::string::npos);
  r = ta::testing::run_command(ta::testing::tinyadapt_binary() + " eval --model " + base + " --adapter " + scratch.file("lora") +
                                   " --task tests/fixtures/adapt/keyword/train.tsv --bf16 --json",
                               scratch.path);
  CHECK(r.status == 0);
  CHECK(r.out.find("\"accuracy\"") != std::string::npos);
  for (const std::string bad : {" --method finetune --bf16", " --method lora --bf16 --reference"}) {
    CAPTURE(bad);
    r = ta::testing::run_command(ta::testing::tinyadapt_binary() + " adapt" + common + bad + " --out " + scratch.file("bad"), scratch.path);
    CHECK(r.status == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find("--bf16") != std::string::npos);
  }
}
