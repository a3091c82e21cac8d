// tests/test_lora_adapter.cpp — LoRA (adapt/lora.*) and Houlsby adapters (adapt/adapter.cpp).
//
// On a tiny random GPT built here, for both methods: identity at
// initialisation, the trainable count equal to its formula, 20 AdamW steps
// that leave every frozen value bit-identical and move every trainable one
// (and never give a frozen weight a gradient buffer), save → load → the same
// logits. For LoRA also: dropout only in training mode, merge = unmerged
// (1e-5), unmerge restores the weights (1e-6), a merged model saved as a plain
// model directory gives the same loss (and `generate --adapter`, which merges
// once, the merged model's greedy tokens), and PEFT parity: an adapter written in
// PEFT's format by tools/reference/torch_peft_lora.py (plain-torch GPT-2 with
// LoRA applied as PEFT does on Conv1D, fan_in_fan_out=True) gives the
// reference's loss here to 1e-4 — live when /usr/bin/python3 imports torch,
// and always from the committed fixture in tests/fixtures/peft_lora/
// (TINYADAPT_UPDATE_FIXTURES=1 rewrites it).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "adapt/lora.h"
#include "adapt/method.h"
#include "data/bpe.h"
#include "data/io.h"
#include "data/json.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::max_relative_diff;
using ta::testing::ScratchDir;
using ta::testing::run_cli;
using ta::testing::tinyadapt_binary;
using ta::testing::torch_available;
using namespace ta::adapt;

namespace {

constexpr int kBatch = 2, kTime = 8;

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 101;
  c.n_positions = 16;
  c.n_embd = 24;
  c.n_layer = 2;
  c.n_head = 3;
  return c;
}

// A token stream cut into (B,T) inputs and next-token targets.
struct TokenBatch {
  std::vector<int> ids, targets;
};

TokenBatch next_token_batch(uint64_t seed) {
  Rng rng(seed);
  TokenBatch b;
  for (int row = 0; row < kBatch; row++) {
    std::vector<int> stream(kTime + 1);
    for (int& id : stream) id = rng.below(tiny_config().vocab_size);
    b.ids.insert(b.ids.end(), stream.begin(), stream.end() - 1);
    b.targets.insert(b.targets.end(), stream.begin() + 1, stream.end());
  }
  return b;
}

std::vector<float> logits_of(const GPT& model, const TokenBatch& b) {
  NoGradGuard no_grad;
  return model.logits(model.forward(b.ids, kBatch, kTime)).to_vector();
}

float loss_of(const GPT& model, const TokenBatch& b) {
  NoGradGuard no_grad;
  return model.loss(b.ids, b.targets, kBatch, kTime).item();
}

MethodConfig lora_config(std::vector<std::string> targets, int rank = 4, float alpha = 8.0f) {
  MethodConfig c;
  c.method = "lora";
  c.lora_rank = rank;
  c.lora_alpha = alpha;
  c.target_modules = std::move(targets);
  return c;
}

MethodConfig adapter_config(int bottleneck = 4, float init_std = 1e-2f, bool train_layernorm = false) {
  MethodConfig c;
  c.method = "adapter";
  c.bottleneck = bottleneck;
  c.adapter_init_std = init_std;
  c.train_layernorm = train_layernorm;
  return c;
}

std::unique_ptr<Method> attached(const MethodConfig& config, GPT& model, uint64_t seed = 1) {
  std::unique_ptr<Method> method = make_method(config);
  Rng rng(seed);
  method->attach(model, AttachContext{}, rng);
  return method;
}

// Every trainable tensor of `method` gets N(0, sd) values (a LoRA B that is no longer zero).
void randomise(const Method& method, uint64_t seed, float sd) {
  Rng rng(seed);
  for (const OptimParam& p : method.trainable_parameters()) {
    Tensor t = p.tensor;
    fill_normal(t, rng, 0.0f, sd);
  }
}

std::map<std::string, std::vector<float>> snapshot(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::map<std::string, std::vector<float>> values;
  for (const auto& [name, t] : tensors) values[name] = t.to_vector();
  return values;
}

std::vector<std::pair<std::string, Tensor>> named(const std::vector<OptimParam>& params) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const OptimParam& p : params) out.emplace_back(p.name, p.tensor);
  return out;
}

// 20 AdamW steps on one batch; after the first backward no base parameter
// may hold a gradient buffer. Returns the losses of the first and last step.
std::pair<float, float> train_20_steps(GPT& model, Method& method, const TokenBatch& b) {
  AdamW optimizer(method.trainable_parameters());
  std::vector<OptimParam> trainable = method.trainable_parameters();
  float first = 0, last = 0;
  for (int step = 0; step < 20; step++) {
    optimizer.zero_grad();
    Tensor loss = model.loss(b.ids, b.targets, kBatch, kTime);
    backward(loss);
    for (auto& [name, tensor] : model.named_parameters()) {
      bool trained = std::any_of(trainable.begin(), trainable.end(), [&](const OptimParam& p) { return p.tensor.same_as(tensor); });
      INFO(name);
      if (!trained) REQUIRE_FALSE(tensor.has_grad());
    }
    optimizer.step(1e-2f);
    (step == 0 ? first : last) = loss.item();
  }
  return {first, last};
}

// Trains `method` for 20 steps and checks: frozen bit-identical, trainable moved, loss fell.
void check_training_moves_only_trainable(GPT& model, Method& method) {
  const TokenBatch b = next_token_batch(3);
  auto base_before = snapshot(model.named_parameters());
  auto trainable_before = snapshot(named(method.trainable_parameters()));
  auto [first_loss, last_loss] = train_20_steps(model, method, b);
  CHECK(last_loss < first_loss);
  for (auto& [name, tensor] : model.named_parameters()) {
    INFO(name);
    if (trainable_before.count(name)) CHECK(tensor.to_vector() != base_before[name]);
    else CHECK(tensor.to_vector() == base_before[name]);
  }
  for (auto& [name, tensor] : named(method.trainable_parameters())) {
    INFO(name);
    std::vector<float> now = tensor.to_vector();
    const std::vector<float>& before = trainable_before[name];
    // Every tensor moved, and nearly all of its values (a dead GELU unit may keep a few).
    size_t moved = 0;
    for (size_t i = 0; i < now.size(); i++) moved += now[i] != before[i];
    CHECK(moved > now.size() * 9 / 10);
  }
}

int64_t sum_numel(const std::vector<OptimParam>& params) {
  int64_t total = 0;
  for (const OptimParam& p : params) total += p.tensor.numel();
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------
// LoRA

TEST_CASE("lora: equals the base model at initialisation; trainable count r·(in+out) per target") {
  const TokenBatch b = next_token_batch(1);
  const int C = tiny_config().n_embd, r = 4, L = tiny_config().n_layer;
  struct Case {
    std::vector<std::string> targets;
    int64_t per_layer;
  };
  for (const Case& c : {Case{{"c_attn"}, r * (C + 3 * C)},
                        Case{{"c_attn", "c_proj", "c_fc"}, r * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))},
                        Case{{"c_attn", "h.0.attn.c_attn"}, r * (C + 3 * C)}}) {  // overlapping names: adapted once
    INFO(c.targets.size() << " target names");
    GPT model(tiny_config(), 5);
    const std::vector<float> base = logits_of(model, b);
    auto lora = attached(lora_config(c.targets, r), model);
    CHECK(logits_of(model, b) == base);  // B = 0: the delta is exactly zero
    CHECK(lora->added_parameters() == c.per_layer * L);
    CHECK(sum_numel(lora->trainable_parameters()) == c.per_layer * L);
    CHECK(model.count_parameters(true) == 0);  // every base weight frozen
  }
  GPT model(tiny_config(), 5);
  auto one = attached(lora_config({"h.1.attn.c_attn"}, r), model);
  REQUIRE(one->trainable_parameters().size() == 2);
  CHECK(one->trainable_parameters()[0].name == "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight");
  CHECK(one->trainable_parameters()[1].name == "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight");
  CHECK(one->trainable_parameters()[0].tensor.shape() == Shape{r, C});
  CHECK(one->trainable_parameters()[1].tensor.shape() == Shape{3 * C, r});
  GPT other(tiny_config(), 5);
  CHECK_THROWS_AS(attached(lora_config({"q_proj"}), other), InputError);
}

TEST_CASE("lora: A is Kaiming-uniform U(-1/sqrt(in), 1/sqrt(in)) as PEFT, B is zero") {
  GPT model(tiny_config(), 5);
  auto lora = attached(lora_config({"c_fc"}, 8), model);
  for (const OptimParam& p : lora->trainable_parameters()) {
    INFO(p.name);
    std::vector<float> v = p.tensor.to_vector();
    if (p.name.find("lora_B") != std::string::npos) {
      CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; }));
      continue;
    }
    const float bound = 1.0f / std::sqrt(static_cast<float>(p.tensor.size(1)));
    float lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    CHECK(lo >= -bound);
    CHECK(hi <= bound);
    CHECK(hi - lo > 1.5f * bound);  // spread over the interval, not a constant
  }
}

TEST_CASE("lora: 20 steps move only A and B; frozen weights never get a gradient buffer") {
  GPT model(tiny_config(), 6);
  auto lora = attached(lora_config({"c_attn", "c_proj", "c_fc"}), model);
  check_training_moves_only_trainable(model, *lora);
}

TEST_CASE("lora: merge equals the unmerged model; unmerge restores the weights") {
  GPT model(tiny_config(), 7);
  const TokenBatch b = next_token_batch(2);
  auto method = attached(lora_config({"c_attn", "c_proj", "c_fc"}), model);
  auto& lora = dynamic_cast<Lora&>(*method);
  randomise(lora, 11, 0.2f);
  const auto weights = snapshot(model.named_parameters());
  const std::vector<float> base = [&] {
    GPT plain(tiny_config(), 7);
    return logits_of(plain, b);
  }();
  const std::vector<float> unmerged = logits_of(model, b);
  CHECK(max_relative_diff(unmerged, base) > 1e-2f);  // the adapter does change the model

  lora.merge();
  CHECK(lora.merged());
  for (auto& [name, linear] : find_linears(model, "c_attn")) {
    CHECK_FALSE(linear->output_delta);  // both forms of the update are off: not counted twice
    CHECK_FALSE(linear->low_rank);
  }
  CHECK(max_relative_diff(logits_of(model, b), unmerged) < 1e-5f);
  lora.merge();  // idempotent: not folded twice
  CHECK(max_relative_diff(logits_of(model, b), unmerged) < 1e-5f);

  lora.unmerge();
  CHECK_FALSE(lora.merged());
  for (auto& [name, tensor] : model.named_parameters()) {
    INFO(name);
    CHECK(max_relative_diff(tensor.to_vector(), weights.at(name)) < 1e-6f);
  }
  CHECK(max_relative_diff(logits_of(model, b), unmerged) < 1e-5f);
}

TEST_CASE("lora: a merged model saved as a plain model directory gives the adapted loss") {
  ScratchDir dir("lora");
  GPT model(tiny_config(), 8);
  const TokenBatch b = next_token_batch(4);
  auto method = attached(lora_config({"c_attn", "c_fc"}), model);
  auto& lora = dynamic_cast<Lora&>(*method);
  randomise(lora, 12, 0.2f);
  const float adapted = loss_of(model, b);
  lora.merge();
  save_model(model, dir.path);
  std::unique_ptr<GPT> merged = load_model(dir.path);
  CHECK(merged->named_parameters().size() == model.named_parameters().size());  // no LoRA tensors inside
  CHECK(loss_of(*merged, b) == doctest::Approx(adapted).epsilon(1e-5));
}

TEST_CASE("lora: save_tensors → load_tensors gives identical logits; PEFT key variants and errors") {
  const TokenBatch b = next_token_batch(5);
  GPT model(tiny_config(), 9), fresh(tiny_config(), 9);
  auto lora = attached(lora_config({"c_attn", "c_proj"}), model, 1);
  randomise(*lora, 13, 0.2f);
  std::vector<NamedArray> saved = lora->save_tensors();
  CHECK(saved.size() == 2 * 3 * 2);  // 2 layers × {attn.c_attn, attn.c_proj, mlp.c_proj} × {A, B}
  auto loaded = attached(lora_config({"c_attn", "c_proj"}), fresh, 99);  // different init, then overwritten
  loaded->load_tensors(saved, "saved");
  CHECK(logits_of(fresh, b) == logits_of(model, b));

  // PEFT's in-memory names, with the adapter name "default" inside, load too.
  std::vector<NamedArray> with_default = saved;
  for (NamedArray& a : with_default) a.name.replace(a.name.rfind(".weight"), 7, ".default.weight");
  GPT third(tiny_config(), 9);
  auto again = attached(lora_config({"c_attn", "c_proj"}), third, 98);
  again->load_tensors(with_default, "in-memory");
  CHECK(logits_of(third, b) == logits_of(model, b));

  std::vector<NamedArray> missing(saved.begin() + 1, saved.end());
  CHECK_THROWS_AS(again->load_tensors(missing, "missing"), InputError);
  std::vector<NamedArray> wrong_shape = saved;
  wrong_shape[0].shape = {wrong_shape[0].shape[1], wrong_shape[0].shape[0]};
  CHECK_THROWS_AS(again->load_tensors(wrong_shape, "transposed"), InputError);
  GPT narrow_model(tiny_config(), 9);
  auto narrow = attached(lora_config({"c_attn"}), narrow_model);
  CHECK_THROWS_WITH_AS(narrow->load_tensors(saved, "wider"), doctest::Contains("outside target_modules"), InputError);
}

TEST_CASE("lora: dropout on the LoRA input only in training mode, seeded") {
  const TokenBatch b = next_token_batch(6);
  MethodConfig config = lora_config({"c_attn"});
  config.lora_dropout = 0.5f;
  GPT model(tiny_config(), 10), twin(tiny_config(), 10);
  auto lora = attached(config, model, 3), twin_lora = attached(config, twin, 3);
  randomise(*lora, 14, 0.2f);
  randomise(*twin_lora, 14, 0.2f);
  const std::vector<float> eval = logits_of(model, b);
  lora->set_training(true);
  twin_lora->set_training(true);
  const std::vector<float> train = logits_of(model, b);
  CHECK(max_relative_diff(train, eval) > 1e-3f);
  CHECK(logits_of(twin, b) == train);                           // same seed, same masks
  CHECK(max_relative_diff(logits_of(model, b), train) > 1e-4f);  // a fresh mask each call
  // While dropout acts, the layers use output_delta (the fused form needs one x for both paths).
  for (auto& [name, linear] : find_linears(model, "c_attn")) CHECK_FALSE(linear->low_rank);
  lora->set_training(false);
  CHECK(logits_of(model, b) == eval);
  // In eval the fused form (lora_linear) is used; the unfused output_delta gives the same logits.
  std::vector<std::pair<Linear*, Linear::LowRankUpdate>> fused;
  for (auto& [name, linear] : find_linears(model, "c_attn")) {
    REQUIRE(linear->low_rank);
    fused.push_back({linear, *linear->low_rank});
    linear->low_rank.reset();
  }
  CHECK(max_relative_diff(logits_of(model, b), eval) < 1e-5f);
  for (auto& [linear, update] : fused) linear->low_rank = update;
}

TEST_CASE("lora: peft_config has LoraConfig's fields") {
  GPT model(tiny_config(), 5);
  auto lora = attached(lora_config({"c_attn", "c_fc"}, 4, 16.0f), model);
  json::Value config = lora->peft_config();
  CHECK(config.at("peft_type").as_string() == "LORA");
  CHECK(config.at("task_type").as_string() == "CAUSAL_LM");
  CHECK(config.at("r").as_int() == 4);
  CHECK(config.at("lora_alpha").as_number() == 16.0);
  CHECK(config.at("fan_in_fan_out").as_bool());
  CHECK(config.at("bias").as_string() == "none");
  CHECK(config.at("target_modules").items().size() == 2);
  CHECK(dynamic_cast<Lora&>(*lora).scale() == 4.0f);
  MethodConfig back = method_config_from_json(config, "adapter_config.json");
  CHECK(back.method == "lora");
  CHECK(back.lora_rank == 4);
  CHECK(back.target_modules == std::vector<std::string>{"c_attn", "c_fc"});
}

// ---------------------------------------------------------------------------
// PEFT parity

namespace {

const char* const kParityTargets = "c_attn,c_fc,h.1.attn.c_proj";  // suffixes and one full dotted name

// An adapter directory loaded as the framework does: adapter_config.json read
// by method_config_from_json, then attach and load_tensors.
std::unique_ptr<Method> load_adapter_dir(GPT& model, const std::string& dir) {
  const std::string config_path = dir + "/adapter_config.json";
  std::unique_ptr<Method> method = make_method(method_config_from_json(json::parse_file(config_path), config_path));
  Rng rng(0);
  method->attach(model, AttachContext{}, rng);
  method->load_tensors(read_safetensors(dir + "/adapter_model.safetensors"), dir + "/adapter_model.safetensors");
  return method;
}

// Loads model + adapter from `dir`, compares the loss (and logits) with the
// reference's, unmerged and merged.
void check_peft_parity(const std::string& dir) {
  std::unique_ptr<GPT> model = load_model(dir);
  std::map<std::string, NamedArray> batch, expected;
  for (NamedArray& a : read_safetensors(dir + "/batch.safetensors")) batch[a.name] = a;
  for (NamedArray& a : read_safetensors(dir + "/expected.safetensors")) expected[a.name] = a;
  TokenBatch b;
  for (float v : batch.at("ids").values) b.ids.push_back(static_cast<int>(v));
  for (float v : batch.at("targets").values) b.targets.push_back(static_cast<int>(v));
  REQUIRE(b.ids.size() == static_cast<size_t>(kBatch * kTime));

  const float base_loss = loss_of(*model, b);
  std::unique_ptr<Method> method = load_adapter_dir(*model, dir + "/adapter");
  const float loss = loss_of(*model, b), reference = expected.at("loss").values[0];
  MESSAGE("PEFT parity: loss " << loss << " vs reference " << reference << ", |difference| " << std::fabs(loss - reference)
                               << " (base model without the adapter: " << base_loss << ")");
  CHECK(std::fabs(loss - reference) < 1e-4f);
  CHECK(std::fabs(base_loss - reference) > 0.05f);  // the adapter matters
  CHECK(max_relative_diff(logits_of(*model, b), expected.at("logits").values) < 1e-4f);
  dynamic_cast<Lora&>(*method).merge();
  CHECK(std::fabs(loss_of(*model, b) - expected.at("merged_loss").values[0]) < 1e-4f);
}

// Writes a random model and a batch into `dir`, then runs the reference,
// which writes dir/adapter/ and dir/expected.safetensors.
void make_parity_case(const std::string& dir) {
  GPT model(tiny_config(), 21);
  save_model(model, dir);
  const TokenBatch b = next_token_batch(22);
  write_safetensors(dir + "/batch.safetensors",
                    {{"ids", {kBatch, kTime}, std::vector<float>(b.ids.begin(), b.ids.end())},
                     {"targets", {kBatch, kTime}, std::vector<float>(b.targets.begin(), b.targets.end())}});
  const std::string command = "/usr/bin/python3 tools/reference/torch_peft_lora.py " + dir + " " + dir +
                              "/batch.safetensors " + dir + "/adapter " + dir + "/expected.safetensors 4 8 " +
                              kParityTargets + " 23";
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

TEST_CASE("lora: PEFT parity, live against the PyTorch reference") {
  if (!torch_available()) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch (the fixture test still runs)");
    return;
  }
  ScratchDir dir("lora");
  make_parity_case(dir.path);
  check_peft_parity(dir.path);
}

TEST_CASE("lora: PEFT parity, committed fixture from the PyTorch reference") {
  const std::string dir = "tests/fixtures/peft_lora";
  if (std::getenv("TINYADAPT_UPDATE_FIXTURES") && torch_available()) {
    make_dirs(dir);
    make_parity_case(dir);
  }
  check_peft_parity(dir);
}

// ---------------------------------------------------------------------------
// `tinyadapt merge`, through the binary (built by `make test` before the
// suite; TINYADAPT_BIN names another one)

namespace {

double eval_lm_loss(const std::string& arguments, const std::string& scratch) {
  std::string output;
  REQUIRE(run_cli("eval-lm " + arguments + " --json", output, scratch) == 0);
  return json::parse(output, "eval-lm output").at("loss").as_number();
}

// An adapter directory as PEFT lays it out (adapter_config.json +
// adapter_model.safetensors), without a task head: what eval-lm and merge read.
void write_adapter_dir(const Method& method, const std::string& dir) {
  make_dirs(dir);
  json::Value config = method.peft_config();
  config.set("tinyadapt_method", method.name());
  write_file_atomic(dir + "/adapter_config.json", config.dump(2));
  write_safetensors(dir + "/adapter_model.safetensors", method.save_tensors());
}

}  // namespace

TEST_CASE("lora: tinyadapt merge writes a model whose eval-lm loss and greedy generation equal the adapter's; refusals") {
  if (!file_exists(tinyadapt_binary())) {
    MESSAGE("skipped: no " << tinyadapt_binary() << " (make builds it; TINYADAPT_BIN names another)");
    return;
  }
  ScratchDir dir("lora");
  const std::string base = dir.path + "/base", lora_dir = dir.path + "/lora", merged = dir.path + "/merged";
  ModelConfig config = tiny_config();
  config.vocab_size = 257;  // the byte-level tokenizer's 256 bytes + <|endoftext|>
  GPT model(config, 31);
  make_dirs(base);
  data::Tokenizer::byte_level({"<|endoftext|>"}).save(base);
  save_model(model, base);
  const std::string base_weights = read_file(base + "/model.safetensors");
  write_file_atomic(dir.path + "/tokens.txt", "5 77 123 9 250 31 64 199 12 7 100 42 3 256 150 21 99 1 2 3 4 5 6 7 8 9 10");

  auto lora = attached(lora_config({"c_attn", "c_proj", "c_fc"}), model);
  randomise(*lora, 32, 0.2f);
  write_adapter_dir(*lora, lora_dir);
  std::string output;
  REQUIRE(run_cli("merge --model " + base + " --adapter " + lora_dir + " --out " + merged, output, dir.path) == 0);
  const std::string tokens = " --tokens " + dir.path + "/tokens.txt";
  const double adapted = eval_lm_loss("--model " + base + " --adapter " + lora_dir + tokens, dir.path);
  const double merged_loss = eval_lm_loss("--model " + merged + tokens, dir.path);
  const double base_loss = eval_lm_loss("--model " + base + tokens, dir.path);
  CHECK(merged_loss == doctest::Approx(adapted).epsilon(1e-5));
  CHECK(std::fabs(base_loss - adapted) > 1e-3);

  // generate --adapter merges LoRA once before the first token: its greedy
  // continuation is the merged model's (and not the base's).
  const std::string greedy = " --prompt hello --max-new 24 --temperature 0";
  std::string with_adapter, with_merged, with_base;
  REQUIRE(run_cli("generate --model " + base + " --adapter " + lora_dir + greedy, with_adapter, dir.path) == 0);
  REQUIRE(run_cli("generate --model " + merged + greedy, with_merged, dir.path) == 0);
  REQUIRE(run_cli("generate --model " + base + greedy, with_base, dir.path) == 0);
  CHECK(with_adapter == with_merged);
  CHECK(with_adapter != with_base);

  // Refusals: exit status 2 and nothing written.
  CHECK(run_cli("merge --model " + base + " --adapter " + lora_dir + " --out " + base + "/", output, dir.path) == 2);
  CHECK(run_cli("merge --model " + base + " --adapter " + lora_dir + " --out " + lora_dir, output, dir.path) == 2);
  GPT adapter_model(config, 31);
  write_adapter_dir(*attached(adapter_config(), adapter_model), dir.path + "/houlsby");
  CHECK(run_cli("merge --model " + base + " --adapter " + dir.path + "/houlsby --out " + dir.path + "/never", output, dir.path) == 2);
  CHECK_FALSE(file_exists(dir.path + "/never"));
  CHECK(read_file(base + "/model.safetensors") == base_weights);
}

// ---------------------------------------------------------------------------
// Houlsby adapters

TEST_CASE("adapter: identity with W_up = 0, close to it at the default init") {
  const TokenBatch b = next_token_batch(7);
  GPT model(tiny_config(), 11);
  const std::vector<float> base = logits_of(model, b);

  auto adapter = attached(adapter_config(4, 1e-2f), model);
  const float near = max_relative_diff(logits_of(model, b), base);
  MESSAGE("adapter init std 1e-2: logits differ from the base by " << near << " (relative)");
  CHECK(near > 0.0f);
  CHECK(near < 1e-3f);

  for (const OptimParam& p : adapter->trainable_parameters()) {
    if (p.name.find(".up.weight") == std::string::npos) continue;
    Tensor up = p.tensor;
    std::fill(up.data(), up.data() + up.numel(), 0.0f);
  }
  CHECK(logits_of(model, b) == base);  // W_up = 0 and b_up = 0: exactly the base model

  GPT wide_init_model(tiny_config(), 11);
  auto wide_init = attached(adapter_config(4, 1.0f), wide_init_model);
  CHECK(max_relative_diff(logits_of(wide_init_model, b), base) > 10 * near);  // why the init is small
}

TEST_CASE("adapter: trainable count 2·(C·r + r + r·C + C) per block; names; layer norms on request") {
  const int C = tiny_config().n_embd, r = 4, L = tiny_config().n_layer;
  const int64_t per_block = 2 * (int64_t{C} * r + r + int64_t{r} * C + C);
  GPT model(tiny_config(), 12);
  auto adapter = attached(adapter_config(r), model);
  CHECK(adapter->added_parameters() == per_block * L);
  CHECK(sum_numel(adapter->trainable_parameters()) == per_block * L);
  CHECK(model.count_parameters(true) == 0);
  std::vector<OptimParam> params = adapter->trainable_parameters();
  REQUIRE(params.size() == 8u * L);
  CHECK(params[0].name == "transformer.h.0.attn_adapter.down.weight");
  CHECK(params[0].tensor.shape() == Shape{C, r});
  CHECK(params[3].name == "transformer.h.0.attn_adapter.up.bias");
  CHECK(params[4].name == "transformer.h.0.mlp_adapter.down.weight");
  CHECK(params[0].decay);
  CHECK_FALSE(params[1].decay);  // biases are not decayed

  GPT ln_model(tiny_config(), 12);
  auto with_ln = attached(adapter_config(r, 1e-2f, true), ln_model);
  const int64_t layernorm_values = (2 * L + 1) * 2 * C;  // ln_1, ln_2 per block and ln_f; weight + bias
  CHECK(with_ln->added_parameters() == per_block * L);
  CHECK(sum_numel(with_ln->trainable_parameters()) == per_block * L + layernorm_values);
  CHECK(ln_model.count_parameters(true) == layernorm_values);
  CHECK(with_ln->trainable_parameters().back().name == "transformer.ln_f.bias");
}

TEST_CASE("adapter: 20 steps move only the adapters (and the layer norms when asked)") {
  for (bool train_layernorm : {false, true}) {
    INFO("train_layernorm " << train_layernorm);
    GPT model(tiny_config(), 13);
    auto adapter = attached(adapter_config(4, 1e-2f, train_layernorm), model);
    check_training_moves_only_trainable(model, *adapter);
  }
}

TEST_CASE("adapter: save_tensors → load_tensors gives identical logits, layer norms included") {
  const TokenBatch b = next_token_batch(8);
  GPT model(tiny_config(), 14), fresh(tiny_config(), 14);
  auto adapter = attached(adapter_config(4, 1e-2f, true), model, 1);
  randomise(*adapter, 15, 0.1f);  // adapters and layer norms all away from their init
  auto loaded = attached(adapter_config(4, 1e-2f, true), fresh, 2);
  CHECK(logits_of(fresh, b) != logits_of(model, b));
  loaded->load_tensors(adapter->save_tensors(), "saved");
  CHECK(logits_of(fresh, b) == logits_of(model, b));
  std::vector<NamedArray> saved = adapter->save_tensors();
  saved.pop_back();  // ln_f.bias
  CHECK_THROWS_WITH_AS(loaded->load_tensors(saved, "short"), doctest::Contains("transformer.ln_f.bias"), InputError);
  json::Value config = adapter->peft_config();
  CHECK(config.at("peft_type").as_string() == "HOULSBY_ADAPTER");
  CHECK(config.at("bottleneck").as_int() == 4);
  CHECK(config.at("train_layernorm").as_bool());
}
