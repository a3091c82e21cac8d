// tests/test_reference.cpp — the reference path (autograd/reference.cpp)
// against the fused kernels: each fused op against its composition of plain
// ops, then a short training run of every method done both ways.
//
// Tolerance. Both paths compute in float32 but sum in different orders (BLAS
// blocks against row loops, a fused softmax's saved statistics against the
// plain softmax op, a folded LoRA weight against two small products), so each
// value differs by a few units in the last place (~1e-7 relative) per op. Over
// the tiny model and three training steps the worst difference measured is
// 2.5e-6 of a tensor's largest value (each method prints its own). Every check
// allows 1e-4 of that largest value: 40 times what rounding gives here, and
// far below what a wrong term does (without the attention mask the logits
// differ by more than 1e-2).
//
// The short runs update with plain SGD: AdamW divides by sqrt(v), which turns
// a rounding-level difference in a near-zero gradient into a full step of the
// learning rate, so it would compare the optimiser rather than the two paths.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/task_data.h"
#include "data/io.h"
#include "data/json.h"
#include "data/tasks.h"
#include "nn/checkpoint.h"
#include "tests/gradcheck.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::random_parameter;
using ta::testing::random_tensor;

namespace {

// Turns the reference path on for a scope, and off again however the scope ends.
struct ReferencePath {
  explicit ReferencePath(bool on) { set_reference_path(on); }
  ~ReferencePath() { set_reference_path(false); }
};

// max |got − want| / max |want| over a tensor (or its gradient).
double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); i++) {
    REQUIRE(std::isfinite(got[i]));
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

std::vector<float> grad_of(const Tensor& t) {
  return t.has_grad() ? std::vector<float>(t.grad(), t.grad() + t.numel()) : std::vector<float>(t.numel(), 0.0f);
}

// Runs `f` on `inputs` with the reference path off and on, back-propagates
// sum(out ⊙ R) both times, and compares the outputs and every input's gradient.
void check_op(const char* name, const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs) {
  INFO(name);
  std::vector<std::vector<float>> results[2];
  for (int reference = 0; reference < 2; reference++) {
    ReferencePath path(reference == 1);
    for (Tensor& x : inputs) x.drop_grad();
    Tensor out = f(inputs);
    Rng rng(42);
    backward(sum(mul(out, random_tensor(out.shape(), rng))));
    results[reference].push_back(out.to_vector());
    for (const Tensor& x : inputs)
      if (x.requires_grad()) results[reference].push_back(grad_of(x));
  }
  for (size_t i = 0; i < results[0].size(); i++) {
    const std::string what = i == 0 ? "output" : "gradient of trainable input " + std::to_string(i - 1);
    INFO(what);
    CHECK(relative_error(results[0][i], results[1][i]) <= 1e-4);
  }
}

using Inputs = std::vector<Tensor>;

}  // namespace

TEST_CASE("reference path: each fused op equals its composition of plain ops, forward and backward") {
  Rng rng(3);
  Tensor x = random_parameter({2, 5, 6}, rng), w = random_parameter({6, 4}, rng), b = random_parameter({4}, rng);
  Tensor add = random_parameter({2, 5, 4}, rng);
  check_op("linear", [](const Inputs& in) { return linear(in[0], in[1], in[2]); }, {x, w, b});
  check_op("linear without bias, with an addend", [](const Inputs& in) { return linear(in[0], in[1], Tensor(), in[2]); },
           {x, w, add});
  Tensor A = random_parameter({3, 6}, rng), B = random_parameter({4, 3}, rng);
  check_op("lora_linear", [](const Inputs& in) { return lora_linear(in[0], in[1], in[2], in[3], in[4], 2.0f); },
           {x, w, b, A, B});
  Tensor frozen_w = random_tensor({6, 4}, rng);
  check_op("lora_linear on a frozen weight, with an addend",
           [](const Inputs& in) { return lora_linear(in[0], in[1], Tensor(), in[2], in[3], 0.5f, in[4]); },
           {x, frozen_w, A, B, add});
  Tensor g = random_parameter({6}, rng), beta = random_parameter({6}, rng);
  check_op("layernorm", [](const Inputs& in) { return layernorm(in[0], in[1], in[2], 1e-5f); }, {x, g, beta});
  check_op("gelu", [](const Inputs& in) { return gelu(in[0]); }, {random_parameter({3, 50}, rng, 2.0f)});
  const std::vector<int> targets = {2, -100, 0, 3, 3, -100, 1, 0, 2, 1};
  check_op("cross_entropy", [&](const Inputs& in) { return mul_scalar(cross_entropy(in[0], targets), 1.0f); },
           {random_parameter({2, 5, 4}, rng)});
  // (attention: tests/test_attention.cpp holds the fused kernel to reference::attention.)
}

TEST_CASE("reference path: the switch routes the fused ops through the plain ones") {
  Rng rng(4);
  Tensor x = random_parameter({2, 3}, rng), w = random_parameter({3, 4}, rng), b = random_parameter({4}, rng);
  CHECK(std::string(linear(x, w, b).node()->op) == "linear");
  {
    ReferencePath path(true);
    CHECK(reference_path());
    CHECK(std::string(linear(x, w, b).node()->op) == "add");          // matmul, then + b
    CHECK(std::string(gelu(x).node()->op) == "mul");                  // 0.5 x · (1 + tanh u)
    CHECK(std::string(cross_entropy(x, {0, 1}).node()->op) == "sum");  // Σ log p ⊙ pick
  }
  CHECK(!reference_path());
  clear_tape();
}

namespace {

// The adaptation fixture of test_adapt.cpp (a tiny GPT and the keyword task),
// with weights drawn at sd 0.2 so that attention and the layers do real work.
struct Fixture {
  ta::testing::ScratchDir scratch{"reference"};
  std::string model_dir = scratch.path + "/base";
  data::Task task = data::load_task("tests/fixtures/adapt/keyword/train.tsv", 7);
  Fixture() { ta::testing::save_keyword_base(task, model_dir, 48, 0.2f); }

  adapt::AdaptedModel adapted(const adapt::MethodConfig& config) const {
    adapt::HeadRequest request;
    request.hidden = config.probe_hidden;
    return adapt::create_adapted(
        model_dir, config,
        adapt::resolve_head(request, config.method, read_config(model_dir + "/config.json"), task.label_names), 11);
  }
};

// One step's loss, label logits and trainable gradients, by name.
struct StepValues {
  float loss = 0;
  std::vector<float> logits;
  std::vector<std::pair<std::string, std::vector<float>>> grads;
};

StepValues forward_backward(adapt::AdaptedModel& a, const adapt::Batch& batch, bool reference) {
  ReferencePath path(reference);
  StepValues v;
  Tensor logits = a.label_logits(batch, nullptr);
  Tensor loss = cross_entropy(logits, batch.labels);
  v.loss = loss.item();
  v.logits = logits.to_vector();
  backward(loss);
  for (const OptimParam& p : a.trainable_parameters()) v.grads.emplace_back(p.name, grad_of(p.tensor));
  return v;
}

void sgd_step(adapt::AdaptedModel& a, float lr) {
  for (const OptimParam& p : a.trainable_parameters()) {
    Tensor t = p.tensor;
    if (t.has_grad())
      for (int64_t i = 0; i < t.numel(); i++) t.data()[i] -= lr * t.grad()[i];
    t.drop_grad();
  }
}

// Two copies of the method (same seed, so the same start), one trained on the
// fast path and one on the reference path, three SGD steps on the same batches.
void check_method_both_ways(const Fixture& f, adapt::MethodConfig config) {
  CAPTURE(config.method);
  adapt::AdaptedModel fast = f.adapted(config), reference = f.adapted(config);
  const auto examples = adapt::encode_examples(f.task.train, fast.tokenizer, fast.max_text_tokens(), "train");
  REQUIRE(examples.size() >= 24);
  double worst = 0;  // over the steps: logits and every gradient
  for (int step = 0; step < 3; step++) {
    CAPTURE(step);
    std::vector<size_t> rows;
    for (size_t i = 0; i < 8; i++) rows.push_back(static_cast<size_t>(step) * 8 + i);
    const adapt::Batch batch = adapt::make_batch(examples, rows);  // right-padded: the key mask is exercised
    const StepValues a = forward_backward(fast, batch, false);
    const StepValues b = forward_backward(reference, batch, true);
    CHECK(std::fabs(a.loss - b.loss) <= 1e-4 * std::max(1.0f, std::fabs(b.loss)));
    worst = std::max(worst, relative_error(a.logits, b.logits));
    CHECK(relative_error(a.logits, b.logits) <= 1e-4);
    REQUIRE(a.grads.size() == b.grads.size());
    for (size_t i = 0; i < a.grads.size(); i++) {
      CAPTURE(a.grads[i].first);
      const double error = relative_error(a.grads[i].second, b.grads[i].second);
      worst = std::max(worst, error);
      CHECK(error <= 1e-4);
    }
    sgd_step(fast, 0.05f);
    sgd_step(reference, 0.05f);
  }
  MESSAGE(config.method << ": worst relative difference over 3 steps " << worst);
}

}  // namespace

TEST_CASE("reference path: every method trains the same on the fast and the reference path") {
  Fixture f;
  for (const std::string method : {"probe", "probe-mlp", "finetune", "prompt", "prefix", "adapter", "lora", "bitfit"})
    check_method_both_ways(f, ta::testing::small_method_config(method));
  adapt::MethodConfig projected = ta::testing::small_method_config("prefix");
  projected.prefix_projection = true;  // P = MLP(P'): the reparameterisation's linear layers too
  check_method_both_ways(f, projected);
  adapt::MethodConfig every_linear = ta::testing::small_method_config("lora");
  every_linear.target_modules = {"c_attn", "c_proj", "c_fc"};
  check_method_both_ways(f, every_linear);
}

TEST_CASE("reference path: the language-model loss and every base gradient agree (pretraining)") {
  ModelConfig c;
  c.vocab_size = 64;
  c.n_positions = 32;
  c.n_embd = 32;
  c.n_layer = 2;
  c.n_head = 4;
  GPT model(c, 5);
  Rng rng(6);
  for (auto& [name, tensor] : model.named_parameters())
    if (tensor.rank() == 2) fill_normal(tensor, rng, 0.0f, 0.2f);
  std::vector<int> ids(2 * 16), targets(2 * 16);
  for (size_t i = 0; i < ids.size(); i++) {
    ids[i] = rng.below(c.vocab_size);
    targets[i] = rng.below(c.vocab_size);
  }
  std::vector<std::vector<float>> grads[2];
  float losses[2];
  for (int reference = 0; reference < 2; reference++) {
    ReferencePath path(reference == 1);
    for (auto& [name, t] : model.named_parameters()) t.drop_grad();
    Tensor loss = model.loss(ids, targets, 2, 16);
    losses[reference] = loss.item();
    backward(loss);
    for (auto& [name, t] : model.named_parameters()) grads[reference].push_back(grad_of(t));
  }
  CHECK(losses[0] == doctest::Approx(losses[1]).epsilon(1e-5));
  for (size_t i = 0; i < grads[0].size(); i++) CHECK(relative_error(grads[0][i], grads[1][i]) <= 1e-4);
}

TEST_CASE("reference path: --reference on the command line trains and evaluates as the fast path does") {
  using ta::testing::run_cli;
  if (!file_exists(ta::testing::tinyadapt_binary())) {
    MESSAGE("skipped: no " << ta::testing::tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  Fixture f;
  const std::string& dir = f.scratch.path;
  const std::string common = " --model " + f.model_dir + " --task tests/fixtures/adapt/keyword/train.tsv";
  std::string out_fast, out_reference;
  const std::string adapt = "adapt" + common + " --method lora --steps 2 --eval-every 0 --out ";
  REQUIRE(run_cli(adapt + dir + "/fast", out_fast, dir) == 0);
  REQUIRE(run_cli(adapt + dir + "/reference --reference", out_reference, dir) == 0);
  // Step 1's loss is computed before any update, from the same start.
  auto first_loss = [](const std::string& log) {
    const std::string lines = read_file(log);
    const size_t row = lines.find('\n') + 1;  // past the header
    return std::stod(lines.substr(lines.find(',', row) + 1));
  };
  CHECK(first_loss(dir + "/fast/log.csv") == doctest::Approx(first_loss(dir + "/reference/log.csv")).epsilon(1e-4));

  const std::string eval = "eval" + common + " --adapter " + dir + "/fast --split test --json";
  REQUIRE(run_cli(eval, out_fast, dir) == 0);
  REQUIRE(run_cli(eval + " --reference", out_reference, dir) == 0);
  const json::Value fast = json::parse(out_fast), reference = json::parse(out_reference);
  CHECK(fast.at("accuracy").as_number() == reference.at("accuracy").as_number());
  CHECK(fast.at("loss").as_number() == doctest::Approx(reference.at("loss").as_number()).epsilon(1e-4));
}
