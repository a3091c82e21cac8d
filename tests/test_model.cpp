// tests/test_model.cpp — the base models of nn/: names, initialisation,
// parity with PyTorch, checkpoints, extension points, generation.
//
// Parity (as llm.c's test_gpt2.c): a random model at odd sizes is saved, the
// PyTorch reference tools/reference/torch_model.py (an independent float64
// implementation) runs the same batch, and logits, loss and every gradient —
// of each parameter and of the prefixes — must agree to 1e-4 relative
// (max |ours - theirs| / max |theirs|). This runs against live PyTorch when
// /usr/bin/python3 imports torch. The committed fixtures in
// tests/fixtures/parity/ (a smaller model, its batch and the reference's
// output) are checked everywhere; TINYADAPT_UPDATE_FIXTURES=1 rewrites them.
// For the plain GPT case the reference also trains 10 AdamW steps on the
// batch, and our losses must follow (llm.c's first-steps regression).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

#include "data/io.h"
#include "nn/checkpoint.h"
#include "nn/generate.h"
#include "nn/gpt.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::max_relative_diff;
using ta::testing::small_config;
using ta::testing::ScratchDir;
using ta::testing::torch_available;

namespace {

ModelConfig odd_config(bool causal) { return small_config(causal, 301, 48, 3, 19); }

std::vector<int> random_ids(size_t n, int vocab, Rng& rng) {
  std::vector<int> ids(n);
  for (int& id : ids) id = rng.below(vocab);
  return ids;
}

Tensor random_leaf(Shape shape, Rng& rng, float sd) {
  Tensor t = Tensor::empty(shape);
  fill_normal(t, rng, 0.0f, sd);
  t.set_requires_grad(true);
  return t;
}

// ---------------------------------------------------------------------------
// Parity batches and their comparison with the reference's output

struct ParityBatch {
  int B = 2, T = 7;
  std::vector<int> ids, targets;
  std::vector<uint8_t> padding_mask;
  ForwardOptions options;  // input prefix and attention prefixes, as leaves requiring grad
};

std::vector<float> as_floats(const std::vector<int>& v) { return std::vector<float>(v.begin(), v.end()); }

std::vector<int64_t> dims(const Tensor& t) { return std::vector<int64_t>(t.shape().dims, t.shape().dims + t.rank()); }

void write_batch(const ParityBatch& b, const std::string& path) {
  std::vector<NamedArray> arrays = {{"ids", {b.B, b.T}, as_floats(b.ids)}, {"targets", {b.B, b.T}, as_floats(b.targets)}};
  if (!b.padding_mask.empty())
    arrays.push_back({"padding_mask", {b.B, b.T}, std::vector<float>(b.padding_mask.begin(), b.padding_mask.end())});
  if (b.options.input_prefix.defined())
    arrays.push_back({"input_prefix", dims(b.options.input_prefix), b.options.input_prefix.to_vector()});
  for (size_t i = 0; i < b.options.prefix_keys.size(); i++) {
    arrays.push_back({"prefix_keys." + std::to_string(i), dims(b.options.prefix_keys[i]), b.options.prefix_keys[i].to_vector()});
    arrays.push_back({"prefix_values." + std::to_string(i), dims(b.options.prefix_values[i]), b.options.prefix_values[i].to_vector()});
  }
  write_safetensors(path, arrays);
}

Tensor leaf_from(const NamedArray& a) {
  Shape shape = Shape::of(a.shape);
  Tensor t = Tensor::from(shape, a.values);
  t.set_requires_grad(true);
  return t;
}

ParityBatch read_batch(const std::string& path, int n_layer) {
  std::map<std::string, NamedArray> arrays;
  for (NamedArray& a : read_safetensors(path)) arrays[a.name] = a;
  ParityBatch b;
  b.B = static_cast<int>(arrays.at("ids").shape[0]);
  b.T = static_cast<int>(arrays.at("ids").shape[1]);
  for (float v : arrays.at("ids").values) b.ids.push_back(static_cast<int>(v));
  for (float v : arrays.at("targets").values) b.targets.push_back(static_cast<int>(v));
  if (arrays.count("padding_mask"))
    for (float v : arrays.at("padding_mask").values) b.padding_mask.push_back(static_cast<uint8_t>(v));
  if (arrays.count("input_prefix")) b.options.input_prefix = leaf_from(arrays.at("input_prefix"));
  for (int i = 0; arrays.count("prefix_keys." + std::to_string(i)) && i < n_layer; i++) {
    b.options.prefix_keys.push_back(leaf_from(arrays.at("prefix_keys." + std::to_string(i))));
    b.options.prefix_values.push_back(leaf_from(arrays.at("prefix_values." + std::to_string(i))));
  }
  return b;
}

// Runs our model on the batch and compares with the reference's output file.
// Returns the worst relative difference seen.
float compare_with_reference(GPT& model, ParityBatch& b, const std::string& expected_path) {
  std::map<std::string, NamedArray> expected;
  for (NamedArray& a : read_safetensors(expected_path)) expected[a.name] = a;
  b.options.padding_mask = b.padding_mask;

  Tensor hidden = model.forward(b.ids, b.B, b.T, b.options);  // (B,k+T,C)
  int k = hidden.size(1) - b.T;
  Tensor logits = model.logits(k > 0 ? slice(hidden, 1, k, k + b.T) : hidden);  // (B,T,V)
  Tensor loss = cross_entropy(logits, b.targets);
  backward(loss);

  float worst = max_relative_diff(logits.to_vector(), expected.at("logits").values);
  CHECK(worst < 1e-4f);
  CHECK(loss.item() == doctest::Approx(expected.at("loss").values[0]).epsilon(1e-5));
  {
    NoGradGuard no_grad;
    CHECK(model.loss(b.ids, b.targets, b.B, b.T, b.options).item() == doctest::Approx(loss.item()).epsilon(1e-6));
  }
  std::vector<std::pair<std::string, Tensor>> checked = model.named_parameters();
  if (b.options.input_prefix.defined()) checked.emplace_back("input_prefix", b.options.input_prefix);
  for (size_t i = 0; i < b.options.prefix_keys.size(); i++) {
    checked.emplace_back("prefix_keys." + std::to_string(i), b.options.prefix_keys[i]);
    checked.emplace_back("prefix_values." + std::to_string(i), b.options.prefix_values[i]);
  }
  for (auto& [name, tensor] : checked) {
    INFO("gradient of " << name);
    REQUIRE(tensor.has_grad());
    std::vector<float> grad(tensor.grad(), tensor.grad() + tensor.numel());
    float rel = max_relative_diff(grad, expected.at("grad." + name).values);
    CHECK(rel < 1e-4f);
    worst = std::max(worst, rel);
  }
  CHECK(expected.size() == checked.size() + 2 + expected.count("losses"));  // every gradient compared
  return worst;
}

constexpr int kFirstSteps = 10;
constexpr float kFirstStepsLr = 3e-3f;

// Trains on the batch with AdamW (nanoGPT's decay groups) and compares each
// step's loss with the reference's, as llm.c's test_gpt2.c.
void check_first_steps(GPT& model, const ParityBatch& b, const std::vector<float>& expected_losses) {
  REQUIRE(expected_losses.size() == static_cast<size_t>(kFirstSteps));
  std::vector<OptimParam> params;
  for (auto& [name, tensor] : model.named_parameters()) params.push_back({name, tensor, default_weight_decay(name, tensor)});
  AdamW optimizer(params);
  for (int step = 0; step < kFirstSteps; step++) {
    optimizer.zero_grad();
    Tensor loss = model.loss(b.ids, b.targets, b.B, b.T, b.options);
    backward(loss);
    optimizer.step(kFirstStepsLr);
    INFO("step " << step);
    CHECK(loss.item() == doctest::Approx(expected_losses[static_cast<size_t>(step)]).epsilon(1e-4));
  }
  CHECK(expected_losses.back() < expected_losses.front() - 0.1f);  // the steps did train
}

// The three parity cases: plain GPT, GPT with every prefix and padding, encoder.
ParityBatch make_batch(const std::string& name, const ModelConfig& config) {
  Rng rng(7);
  ParityBatch b;
  size_t n = static_cast<size_t>(b.B * b.T);
  if (name == "encoder") {
    std::vector<int> ids = random_ids(n, config.vocab_size - 2, rng);
    for (int& id : ids) id += 2;  // 0 = padding, 1 = [MASK]
    ids[n - 1] = ids[n - 2] = 0;
    b.padding_mask.assign(n, 1);
    b.padding_mask[n - 1] = b.padding_mask[n - 2] = 0;
    MaskedTokens masked = mask_tokens(ids, config.vocab_size, 1, {0}, rng, 0.4f);
    b.ids = masked.inputs;
    b.targets = masked.targets;
    return b;
  }
  std::vector<int> text = random_ids(n + 1, config.vocab_size, rng);
  b.ids.assign(text.begin(), text.end() - 1);
  b.targets.assign(text.begin() + 1, text.end());
  if (name == "gpt_prefix") {
    b.padding_mask.assign(n, 1);
    b.padding_mask[n - 1] = 0;
    b.targets[n - 1] = -100;
    b.options.input_prefix = random_leaf({3, config.n_embd}, rng, 0.3f);
    for (int i = 0; i < config.n_layer; i++) {
      b.options.prefix_keys.push_back(random_leaf({2, config.n_embd}, rng, 0.3f));
      b.options.prefix_values.push_back(random_leaf({2, config.n_embd}, rng, 0.3f));
    }
  }
  return b;
}

// compare_with_reference, then the first steps when the reference trained.
void check_parity(GPT& model, ParityBatch& b, const std::string& expected_path, const std::string& label) {
  float worst = compare_with_reference(model, b, expected_path);
  MESSAGE("parity " << label << ": worst relative difference " << worst);
  for (NamedArray& a : read_safetensors(expected_path))
    if (a.name == "losses") check_first_steps(model, b, a.values);
}

// Saves a fresh model and the batch into `dir`, runs the reference on them,
// and compares. The directory then holds everything a fixture needs.
void live_parity(const std::string& name, const ModelConfig& config, const std::string& dir) {
  make_dirs(dir);
  GPT model(config, 42);
  save_model(model, dir);
  ParityBatch batch = make_batch(name, config);
  write_batch(batch, dir + "/batch.safetensors");
  std::string command = "/usr/bin/python3 tools/reference/torch_model.py " + dir + " " + dir +
                        "/batch.safetensors " + dir + "/expected.safetensors";
  if (name == "gpt") command += " --adamw-steps " + std::to_string(kFirstSteps) + " --lr " + std::to_string(kFirstStepsLr);
  REQUIRE(std::system(command.c_str()) == 0);
  check_parity(model, batch, dir + "/expected.safetensors", name + " (C=" + std::to_string(config.n_embd) + ")");
}

const char* kParityCases[] = {"gpt", "gpt_prefix", "encoder"};

}  // namespace

TEST_CASE("model parity: logits, loss and every gradient match live PyTorch at odd sizes") {
  if (!torch_available()) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch (the fixture test still runs)");
    return;
  }
  for (const std::string name : kParityCases) {
    INFO("case " << name);
    ScratchDir scratch("model");
    live_parity(name, odd_config(name != "encoder"), scratch.path + "/" + name);
  }
}

TEST_CASE("model parity: committed fixtures from the PyTorch reference") {
  const bool update = std::getenv("TINYADAPT_UPDATE_FIXTURES") != nullptr;
  for (const std::string name : kParityCases) {
    INFO("case " << name);
    std::string dir = "tests/fixtures/parity/" + name;
    if (update) live_parity(name, small_config(name != "encoder"), dir);
    std::unique_ptr<GPT> model = load_model(dir);
    ParityBatch batch = read_batch(dir + "/batch.safetensors", model->n_layer());
    check_parity(*model, batch, dir + "/expected.safetensors", "fixture " + name);
  }
}

TEST_CASE("model: parameters carry Hugging Face GPT-2 names, shapes and order") {
  GPT model(small_config(true), 1);
  auto params = model.named_parameters();
  const int C = 24, L = 2;
  REQUIRE(params.size() == static_cast<size_t>(2 + 12 * L + 2));
  CHECK(params[0].first == "transformer.wte.weight");
  CHECK(params[1].first == "transformer.wpe.weight");
  const char* block_names[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                               "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                               "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
  for (int j = 0; j < 12; j++) CHECK(params[static_cast<size_t>(14 + j)].first == std::string("transformer.h.1.") + block_names[j]);
  CHECK(params[26].first == "transformer.ln_f.weight");
  CHECK(model.parameter("h.1.attn.c_attn.weight").shape() == Shape{C, 3 * C});
  CHECK(model.parameter("h.0.mlp.c_fc.weight").shape() == Shape{C, 4 * C});
  CHECK(model.parameter("h.0.mlp.c_proj.weight").shape() == Shape{4 * C, C});
  CHECK(model.parameter("wte.weight").shape() == Shape{101, C});
  CHECK_THROWS_AS(model.parameter("c_attn.weight"), InputError);  // two layers match
  CHECK_THROWS_AS(model.parameter("h.1.attn.c_att.weight"), InputError);

  CHECK(find_linears(model, "c_attn").size() == 2);
  CHECK(&find_linear(model, "h.1.attn.c_attn") == &model.block(1).attn.c_attn);
  CHECK(&find_linear(model, "transformer.h.0.mlp.c_proj") == &model.block(0).mlp.c_proj);
  CHECK_THROWS_AS(find_linear(model, "c_proj"), InputError);

  int64_t expected = 101 * C + 16 * C + C * 2 + L * (4 * C + C * 3 * C + 3 * C + C * C + C + C * 4 * C + 4 * C + 4 * C * C + C);
  CHECK(model.count_parameters() == expected);
  CHECK(model.count_parameters(true) == expected);
  model.freeze_all();
  CHECK(model.count_parameters(true) == 0);
  model.parameter("h.0.attn.c_attn.bias").set_requires_grad(true);
  CHECK(model.count_parameters(true) == 3 * C);
}

TEST_CASE("model: GPT-2 initialisation (0.02, residual projections scaled, seeded)") {
  ModelConfig config = small_config(true, 301, 48, 8);
  GPT model(config, 3), same(config, 3), other(config, 4);
  auto sd = [](const Tensor& t) {
    double sq = 0;
    for (float v : t.to_vector()) sq += static_cast<double>(v) * v;
    return std::sqrt(sq / static_cast<double>(t.numel()));
  };
  CHECK(sd(model.parameter("wte.weight")) == doctest::Approx(0.02).epsilon(0.05));
  CHECK(sd(model.parameter("h.2.mlp.c_fc.weight")) == doctest::Approx(0.02).epsilon(0.05));
  CHECK(sd(model.parameter("h.2.attn.c_proj.weight")) == doctest::Approx(0.02 / std::sqrt(16.0)).epsilon(0.05));
  CHECK(sd(model.parameter("h.7.mlp.c_proj.weight")) == doctest::Approx(0.02 / std::sqrt(16.0)).epsilon(0.05));
  CHECK(model.parameter("h.0.attn.c_attn.bias").to_vector() == std::vector<float>(144, 0.0f));
  CHECK(model.parameter("ln_f.weight").to_vector() == std::vector<float>(48, 1.0f));
  CHECK(model.parameter("wpe.weight").to_vector() == same.parameter("wpe.weight").to_vector());
  CHECK(model.parameter("wpe.weight").to_vector() != other.parameter("wpe.weight").to_vector());
}

namespace {

std::vector<float> logits_of(const GPT& model, const std::vector<int>& ids, int B, int T,
                             const ForwardOptions& options = {}) {
  NoGradGuard no_grad;
  return model.logits(model.forward(ids, B, T, options)).to_vector();
}

// Rewrites DIR/model.safetensors through `edit` (on the arrays as saved).
void edit_weights(const std::string& dir, const std::function<void(std::vector<NamedArray>&)>& edit) {
  std::vector<NamedArray> arrays = read_safetensors(dir + "/model.safetensors");
  edit(arrays);
  write_safetensors(dir + "/model.safetensors", arrays);
}

// load_model(dir) must throw an InputError whose message contains every fragment.
void check_load_fails(const std::string& dir, const std::vector<std::string>& fragments) {
  try {
    load_model(dir);
    FAIL("no InputError");
  } catch (const InputError& e) {
    std::string message = e.what();
    for (const std::string& fragment : fragments) {
      INFO(message);
      CHECK(message.find(fragment) != std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("model checkpoint: save then load gives identical logits; config.json has HF names") {
  ScratchDir scratch("model");
  for (bool causal : {true, false}) {
    ModelConfig config = small_config(causal);
    config.layer_norm_epsilon = 1e-6f;
    GPT model(config, 5);
    std::string dir = scratch.path + (causal ? "/gpt" : "/encoder");
    save_model(model, dir);
    std::unique_ptr<GPT> loaded = load_model(dir);
    CHECK(loaded->config().is_causal == causal);
    CHECK(loaded->config().layer_norm_epsilon == 1e-6f);
    Rng rng(1);
    std::vector<int> ids = random_ids(10, config.vocab_size, rng);
    CHECK(logits_of(*loaded, ids, 2, 5) == logits_of(model, ids, 2, 5));
    json::Value json = json::parse_file(dir + "/config.json");
    CHECK(json.at("model_type").as_string() == "gpt2");
    CHECK(json.at("n_embd").as_int() == 24);
    CHECK(json.at("is_causal").as_bool() == causal);
  }
  // What save_pretrained writes: transformer.-prefixed keys, no lm_head, "format": "pt".
  std::string header = read_file(scratch.path + "/gpt/model.safetensors").substr(8, 400);
  CHECK(header.find("\"__metadata__\":{\"format\":\"pt\"}") != std::string::npos);
  CHECK(header.find("\"transformer.h.0.attn.c_attn.bias\"") != std::string::npos);
  CHECK(read_file(scratch.path + "/gpt/model.safetensors").find("lm_head") == std::string::npos);
}

TEST_CASE("model checkpoint: Hugging Face variants load (no prefix, mask buffers, tied lm_head)") {
  ScratchDir scratch("model");
  GPT model(small_config(true), 6);
  save_model(model, scratch.path);
  edit_weights(scratch.path, [](std::vector<NamedArray>& arrays) {
    NamedArray wte;
    for (NamedArray& a : arrays) {
      if (a.name == "transformer.wte.weight") wte = a;
      a.name = a.name.substr(std::string("transformer.").size());
    }
    arrays.push_back({"h.0.attn.bias", {1, 1, 16, 16}, std::vector<float>(256, 1.0f)});
    arrays.push_back({"h.1.attn.masked_bias", {}, {-1e4f}});
    arrays.push_back({"lm_head.weight", wte.shape, wte.values});
  });
  Rng rng(2);
  std::vector<int> ids = random_ids(6, 101, rng);
  CHECK(logits_of(*load_model(scratch.path), ids, 1, 6) == logits_of(model, ids, 1, 6));

  edit_weights(scratch.path, [](std::vector<NamedArray>& arrays) {
    for (NamedArray& a : arrays)
      if (a.name == "lm_head.weight") a.values[3] += 1.0f;
  });
  check_load_fails(scratch.path, {"model.safetensors", "lm_head.weight differs"});
  // A head larger than wte is refused from the header, before its values are read into a buffer of wte's size.
  edit_weights(scratch.path, [](std::vector<NamedArray>& arrays) {
    for (NamedArray& a : arrays)
      if (a.name == "lm_head.weight") {
        a.shape[0] += 1;
        a.values.resize(a.values.size() + static_cast<size_t>(a.shape[1]), 0.0f);
      }
  });
  check_load_fails(scratch.path, {"model.safetensors", "key lm_head.weight: expected shape", "(tied to wte)"});
}

TEST_CASE("model checkpoint: bad directories are InputErrors naming the file and the key") {
  ScratchDir scratch("model");
  GPT model(small_config(true), 7);
  auto fresh = [&](const std::string& name) {
    std::string dir = scratch.path + "/" + name;
    save_model(model, dir);
    return dir;
  };
  std::string dir = fresh("missing");
  edit_weights(dir, [](std::vector<NamedArray>& arrays) {
    arrays.erase(std::remove_if(arrays.begin(), arrays.end(),
                                [](const NamedArray& a) { return a.name == "transformer.h.1.mlp.c_fc.bias"; }),
                 arrays.end());
  });
  check_load_fails(dir, {dir + "/model.safetensors", "missing key transformer.h.1.mlp.c_fc.bias", "(96)"});

  dir = fresh("shape");
  edit_weights(dir, [](std::vector<NamedArray>& arrays) {
    for (NamedArray& a : arrays)
      if (a.name == "transformer.h.0.attn.c_attn.weight") a = {a.name, {72, 24}, a.values};
  });
  check_load_fails(dir, {"model.safetensors", "transformer.h.0.attn.c_attn.weight", "expected shape (24,72)", "got (72,24)"});

  dir = fresh("unknown");
  edit_weights(dir, [](std::vector<NamedArray>& arrays) { arrays.push_back({"transformer.h.0.attn.lora_A", {2}, {0, 0}}); });
  check_load_fails(dir, {"model.safetensors", "unknown key transformer.h.0.attn.lora_A"});

  dir = fresh("twice");
  edit_weights(dir, [](std::vector<NamedArray>& arrays) { arrays.push_back({"ln_f.bias", {24}, std::vector<float>(24)}); });
  check_load_fails(dir, {"model.safetensors", "transformer.ln_f.bias appears twice"});

  struct BadConfig { const char* field; json::Value value; const char* message; };
  BadConfig bad_configs[] = {{"n_head", 5, "n_embd 24 is not divisible by n_head 5"},
                             {"n_layer", -2, "n_layer must be positive, got -2"},
                             {"vocab_size", 0, "vocab_size must be positive"},
                             {"n_embd", 2.5, "n_embd"},
                             {"activation_function", "relu", "activation_function \"relu\" is not supported"}};
  for (const BadConfig& bad : bad_configs) {
    dir = fresh("config");
    json::Value config = json::parse_file(dir + "/config.json");
    config.set(bad.field, bad.value);
    write_file_atomic(dir + "/config.json", config.dump());
    check_load_fails(dir, {dir + "/config.json", bad.message});
  }
  check_load_fails(scratch.path + "/absent", {scratch.path + "/absent/config.json"});
}

TEST_CASE("model positions: a KV cache / attention prefix of length P makes the text start at position P") {
  GPT model(small_config(true), 8);
  Rng rng(3);
  std::vector<int> ids = random_ids(6, 101, rng);
  std::vector<float> whole = logits_of(model, ids, 1, 6);  // (1,6,V)
  // Feed the first 4 tokens into a cache, then the last 2 with the cache as prefix.
  NoGradGuard no_grad;
  KVCache cache;
  ForwardOptions options;
  options.cache = &cache;
  model.forward({ids.begin(), ids.begin() + 4}, 1, 4, options);
  CHECK(cache.length() == 4);
  std::vector<float> tail = model.logits(model.forward({ids.begin() + 4, ids.end()}, 1, 2, options)).to_vector();
  CHECK(cache.length() == 6);
  std::vector<float> whole_tail(whole.begin() + 4 * 101, whole.end());
  CHECK(max_relative_diff(tail, whole_tail) < 1e-5f);

  // The same cache given as a (P,C) per-layer attention prefix.
  ForwardOptions prefix;
  for (int i = 0; i < 2; i++) {
    prefix.prefix_keys.push_back(reshape(slice(cache.keys[static_cast<size_t>(i)], 1, 0, 4), {4, 24}));
    prefix.prefix_values.push_back(reshape(slice(cache.values[static_cast<size_t>(i)], 1, 0, 4), {4, 24}));
  }
  std::vector<float> with_prefix = logits_of(model, {ids.begin() + 4, ids.end()}, 1, 2, prefix);
  CHECK(max_relative_diff(with_prefix, whole_tail) < 1e-5f);
  // Beyond n_positions is an error, not a silent wrap.
  CHECK_THROWS_AS(model.forward(random_ids(13, 101, rng), 1, 13, prefix), InputError);
}

TEST_CASE("model KV cache grown in place: the same logits as concatenation, and memory linear in the tokens") {
  GPT model(small_config(true, 101, 24, 2, 256), 5);
  Rng rng(6);
  const std::vector<int> ids = random_ids(200, 101, rng);
  NoGradGuard no_grad;
  // Both caches start from an attention prefix of 3 rows, then take 3 tokens, then one at a time.
  auto run = [&](bool in_place, std::vector<float>& last_logits) {
    pool_release_cached();
    KVCache cache;
    cache.grow_in_place = in_place;
    Rng prefix_rng(2);
    for (int i = 0; i < 2; i++) {
      cache.keys.push_back(random_leaf({1, 3, 24}, prefix_rng, 1.0f));
      cache.values.push_back(random_leaf({1, 3, 24}, prefix_rng, 1.0f));
    }
    ForwardOptions options;
    options.cache = &cache;
    size_t peak = 0, peak_at_100 = 0;
    for (size_t at = 0; at < ids.size();) {
      const size_t n = at == 0 ? 3 : 1;
      last_logits = model.logits(model.forward({ids.begin() + at, ids.begin() + at + n}, 1, static_cast<int>(n), options)).to_vector();
      at += n;
      CHECK(cache.length() == static_cast<int>(3 + at));
      peak = std::max(peak, pool_bytes_in_use() + pool_bytes_cached());
      if (at == 100) peak_at_100 = peak;
    }
    if (in_place) {
      CHECK(cache.rows_used == std::vector<int>{203, 203});
      CHECK(cache.keys[1].size(1) <= 2 * 203 + 64);  // capacity at most doubles
    }
    return peak - peak_at_100;  // what the tokens 101..200 added
  };
  std::vector<float> in_place_logits, concat_logits;
  const size_t in_place_growth = run(true, in_place_logits), concat_growth = run(false, concat_logits);
  CHECK(in_place_logits == concat_logits);  // the same keys in the same order: the same floats
  MESSAGE("pool bytes added by tokens 101-200: in place " << in_place_growth << ", concatenating " << concat_growth);
  // Concatenation leaves a buffer of every size P in the pool (quadratic); in
  // place, one doubling. (Under AddressSanitizer the pool caches nothing.)
  pool_release_cached();
  { Tensor dropped = Tensor::empty({1000}); }
  if (pool_bytes_cached() > 0) CHECK(in_place_growth * 5 < concat_growth);
}

TEST_CASE("model KV cache grown in place: going on with a tape recording is refused, not computed wrong") {
  GPT model(small_config(true), 5);  // trainable: a forward outside NoGradGuard records
  KVCache cache;
  cache.grow_in_place = true;
  ForwardOptions options;
  options.cache = &cache;
  {
    NoGradGuard no_grad;
    model.forward({1, 2, 3}, 1, 3, options);
  }
  CHECK(cache.rows_used == std::vector<int>{3, 3});
  CHECK_THROWS_WITH_AS(model.forward({4}, 1, 1, options), "forward: a KV cache grown in place cannot go on with a tape recording",
                       std::invalid_argument);
  clear_tape();
}

TEST_CASE("model generation: greedy tokens identical with and without the KV cache, with prefixes") {
  GPT model(small_config(true, 101, 24, 2, 24), 9);
  Rng rng(4);
  ForwardOptions prefixed;
  prefixed.input_prefix = random_leaf({2, 24}, rng, 0.5f);
  for (int i = 0; i < 2; i++) {
    prefixed.prefix_keys.push_back(random_leaf({3, 24}, rng, 0.5f));
    prefixed.prefix_values.push_back(random_leaf({3, 24}, rng, 0.5f));
  }
  ForwardOptions plain;
  for (const ForwardOptions* options : {&plain, &prefixed}) {
    GenerateOptions greedy;
    greedy.temperature = 0.0f;
    greedy.max_new_tokens = 30;  // runs past the 24-position window: the cropped path too
    std::vector<int> prompt = {5, 17, 3};
    std::vector<int> cached = generate(model, prompt, greedy, *options);
    greedy.use_cache = false;
    std::vector<int> uncached = generate(model, prompt, greedy, *options);
    CHECK(cached.size() == 30);
    CHECK(cached == uncached);
    // Sampling with a seed is reproducible and agrees across the two paths.
    GenerateOptions sampled;
    sampled.temperature = 0.8f;
    sampled.top_k = 10;
    sampled.seed = 11;
    sampled.max_new_tokens = 12;
    std::vector<int> a = generate(model, prompt, sampled, *options);
    sampled.use_cache = false;
    CHECK(generate(model, prompt, sampled, *options) == a);
  }
  // The first greedy token is the argmax of the full forward's last logits.
  std::vector<float> logits = logits_of(model, {5, 17, 3}, 1, 3);
  int argmax = static_cast<int>(std::max_element(logits.begin() + 2 * 101, logits.end()) - (logits.begin() + 2 * 101));
  GenerateOptions one;
  one.temperature = 0.0f;
  one.max_new_tokens = 1;
  CHECK(generate(model, {5, 17, 3}, one) == std::vector<int>{argmax});
  // on_token streams and can stop generation.
  int seen = 0;
  one.max_new_tokens = 10;
  one.on_token = [&](int) { return ++seen < 4; };
  CHECK(generate(model, {5}, one).size() == 4);
}

TEST_CASE("model sampling: greedy, top-k and temperature") {
  Rng rng(5);
  std::vector<float> logits = {0.1f, 2.0f, 1.9f, -3.0f};
  CHECK(sample_token(logits, 0.0f, 0, rng) == 1);
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 4000; i++) counts[static_cast<size_t>(sample_token(logits, 1.0f, 2, rng))]++;
  CHECK(counts[0] == 0);
  CHECK(counts[3] == 0);
  CHECK(counts[1] / 4000.0 == doctest::Approx(1.0 / (1.0 + std::exp(-0.1))).epsilon(0.05));
}

TEST_CASE("model extension points: Linear output_delta, sublayer hooks, frozen weights get no gradient") {
  GPT model(small_config(true), 10);
  Rng rng(6);
  std::vector<int> ids = random_ids(10, 101, rng), targets = random_ids(10, 101, rng);
  std::vector<float> base = logits_of(model, ids, 2, 5);

  // A delta x @ D on c_attn equals adding D to its weight (what a LoRA merge does).
  Linear& c_attn = find_linear(model, "h.1.attn.c_attn");
  Tensor delta = random_leaf({24, 72}, rng, 0.05f);
  c_attn.output_delta = [&](const Tensor& x, const ForwardOptions&) { return matmul(x, delta); };
  std::vector<float> with_delta = logits_of(model, ids, 2, 5);
  CHECK(max_relative_diff(with_delta, base) > 1e-3f);
  c_attn.output_delta = nullptr;
  std::vector<float> weight = c_attn.weight.to_vector();
  for (size_t i = 0; i < weight.size(); i++) c_attn.weight.data()[i] += delta.data()[i];
  CHECK(max_relative_diff(logits_of(model, ids, 2, 5), with_delta) < 1e-5f);
  std::copy(weight.begin(), weight.end(), c_attn.weight.data());

  // Sublayer hooks: identity changes nothing; an adapter h + up(relu(down h)) gets gradients.
  Block& block = model.block(0);
  block.attention_output_hook = [](const Tensor& h, const ForwardOptions&) { return h; };
  CHECK(logits_of(model, ids, 2, 5) == base);
  Tensor down = random_leaf({24, 4}, rng, 0.1f), up = random_leaf({4, 24}, rng, 0.1f);
  std::vector<int> tags_seen;
  block.mlp_output_hook = [&](const Tensor& h, const ForwardOptions& options) {
    tags_seen = options.row_tags;
    return add(h, matmul(relu(matmul(h, down)), up));
  };
  model.freeze_all();
  ForwardOptions options;
  options.row_tags = {3, 4};
  backward(model.loss(ids, targets, 2, 5, options));
  CHECK(tags_seen == std::vector<int>{3, 4});
  CHECK(down.has_grad());
  CHECK(up.has_grad());
  for (auto& [name, tensor] : model.named_parameters()) {
    INFO(name);
    CHECK_FALSE(tensor.has_grad());
  }
}

TEST_CASE("model pooling: last real token, first token, masked mean, after an input prefix") {
  GPT model(small_config(true), 11);
  Rng rng(7);
  std::vector<int> ids = random_ids(8, 101, rng);
  ForwardOptions options;
  options.input_prefix = random_leaf({2, 24}, rng, 0.3f);
  options.padding_mask = {1, 1, 1, 1, 1, 1, 0, 0};
  NoGradGuard no_grad;
  Tensor hidden = model.forward(ids, 2, 4, options);  // (2, 2+4, 24)
  std::vector<float> h = hidden.to_vector();
  auto row = [&](int b, int t) { return std::vector<float>(h.begin() + (b * 6 + t) * 24, h.begin() + (b * 6 + t + 1) * 24); };
  std::vector<float> last = model.pool(hidden, 2, 4, Pooling::LastToken, options).to_vector();
  CHECK(std::vector<float>(last.begin(), last.begin() + 24) == row(0, 5));
  CHECK(std::vector<float>(last.begin() + 24, last.end()) == row(1, 3));
  std::vector<float> first = model.pool(hidden, 2, 4, Pooling::FirstToken, options).to_vector();
  CHECK(std::vector<float>(first.begin() + 24, first.end()) == row(1, 2));
  std::vector<float> mean = model.pool(hidden, 2, 4, Pooling::Mean, options).to_vector();
  for (int c = 0; c < 24; c++) CHECK(mean[static_cast<size_t>(24 + c)] == doctest::Approx((row(1, 2)[c] + row(1, 3)[c]) / 2));
  CHECK(model.default_pooling() == Pooling::LastToken);
}

TEST_CASE("model layer outputs: embeddings then every block's residual stream; the last through ln_f is forward's output") {
  GPT model(small_config(true, 101, 24, 3), 13);
  Rng rng(8);
  const std::vector<int> ids = random_ids(10, 101, rng);
  NoGradGuard no_grad;
  const std::vector<float> plain = model.forward(ids, 2, 5).to_vector();
  std::vector<Tensor> layers(7);  // stale contents are replaced, not appended to
  ForwardOptions options;
  options.layer_outputs = &layers;
  const std::vector<float> hidden = model.forward(ids, 2, 5, options).to_vector();
  CHECK(hidden == plain);
  REQUIRE(layers.size() == 4);  // embeddings + 3 blocks
  for (const Tensor& layer : layers) CHECK(layer.shape() == Shape{2, 5, 24});
  // Layer 0 is wte[id] + wpe[position]: row (b=1, t=2) by hand.
  const std::vector<float> embedded = layers[0].to_vector(), wte = model.wte.weight.to_vector(), wpe = model.wpe.weight.to_vector();
  for (int c = 0; c < 24; c++)
    CHECK(embedded[static_cast<size_t>(7 * 24 + c)] == doctest::Approx(wte[static_cast<size_t>(ids[7] * 24 + c)] + wpe[static_cast<size_t>(2 * 24 + c)]));
  CHECK(model.ln_f.forward(layers[3]).to_vector() == plain);
  // Each block changes the stream: no layer is a copy of the one before.
  for (size_t i = 1; i < layers.size(); i++) CHECK(layers[i].to_vector() != layers[i - 1].to_vector());
}

TEST_CASE("model masked LM: BERT's 15% with 80/10/10, specials untouched, seeded") {
  Rng data_rng(8);
  std::vector<int> ids = random_ids(40000, 1000, data_rng);
  for (size_t i = 0; i < ids.size(); i += 10) ids[i] = 0;  // special (e.g. padding)
  Rng rng(9), same(9);
  MaskedTokens m = mask_tokens(ids, 1000, 1, {0}, rng);
  CHECK(mask_tokens(ids, 1000, 1, {0}, same).inputs == m.inputs);
  int chosen = 0, masked = 0, kept = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    if (ids[i] == 0) {
      CHECK(m.targets[i] == -100);
      CHECK(m.inputs[i] == 0);
      continue;
    }
    if (m.targets[i] == -100) {
      CHECK(m.inputs[i] == ids[i]);
      continue;
    }
    CHECK(m.targets[i] == ids[i]);
    chosen++;
    masked += m.inputs[i] == 1;
    kept += m.inputs[i] == ids[i];
  }
  CHECK(chosen / 36000.0 == doctest::Approx(0.15).epsilon(0.05));
  CHECK(masked / static_cast<double>(chosen) == doctest::Approx(0.8).epsilon(0.03));
  CHECK(kept / static_cast<double>(chosen) == doctest::Approx(0.1).epsilon(0.15));
}

TEST_CASE("model config: config.json round trip, Hugging Face defaults, validation messages") {
  ModelConfig config = small_config(false);
  config.embd_pdrop = 0.1f;
  ModelConfig back = config_from_json(json::parse(config_to_json(config).dump()), "config.json");
  CHECK(back.vocab_size == 101);
  CHECK(back.n_embd == 24);
  CHECK(back.is_causal == false);
  CHECK(back.embd_pdrop == 0.1f);
  // A Hugging Face gpt2 config.json (abridged): no is_causal, dropouts 0.1, attn_pdrop accepted.
  ModelConfig hf = config_from_json(json::parse(R"({"activation_function": "gelu_new", "attn_pdrop": 0.1,
      "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
      "layer_norm_epsilon": 1e-05, "model_type": "gpt2"})"), "config.json");
  CHECK(hf.is_causal);
  CHECK(hf.resid_pdrop == doctest::Approx(0.1f));
  hf.validate("config.json");
  ModelConfig bad = small_config(true);
  bad.n_embd = 50;
  CHECK_THROWS_WITH_AS(bad.validate("config.json"), "config.json: n_embd 50 is not divisible by n_head 3", InputError);
  CHECK_THROWS_AS(GPT{bad}, InputError);
}

TEST_CASE("model gradient checkpointing: the same loss and gradients with dropout and a prefix, less memory held") {
  ModelConfig c = small_config(true, 50, 24, 3, 24);
  c.resid_pdrop = c.embd_pdrop = 0.1f;  // the recomputation must draw the forward's masks
  GPT model(c, 3);
  Rng data(4);
  const std::vector<int> ids = random_ids(2 * 16, c.vocab_size, data), targets = random_ids(2 * 16, c.vocab_size, data);
  Tensor prompt = Tensor::empty({3, c.n_embd});  // a trainable input prefix too
  fill_normal(prompt, data, 0.0f, 0.02f);
  prompt.set_requires_grad(true);
  std::vector<Tensor> trainable{prompt};
  for (auto& [name, t] : model.named_parameters()) trainable.push_back(t);

  float losses[2];
  size_t held[2];
  std::vector<std::vector<float>> grads[2];
  for (int checkpointing = 0; checkpointing < 2; checkpointing++) {
    model.gradient_checkpointing = checkpointing == 1;
    for (Tensor& t : trainable) t.drop_grad();
    Rng dropout(99);
    ForwardOptions options;
    options.dropout_rng = &dropout;
    options.input_prefix = prompt;
    const size_t before = pool_bytes_in_use();
    Tensor loss = model.loss(ids, targets, 2, 16, options);
    held[checkpointing] = pool_bytes_in_use() - before;  // what the forward keeps for the backward
    losses[checkpointing] = loss.item();
    backward(loss);
    for (const Tensor& t : trainable) grads[checkpointing].push_back(std::vector<float>(t.grad(), t.grad() + t.numel()));
  }
  model.gradient_checkpointing = false;
  CHECK(losses[0] == losses[1]);
  for (size_t i = 0; i < grads[0].size(); i++) CHECK(max_relative_diff(grads[1][i], grads[0][i]) <= 1e-6f);
  MESSAGE("bytes held between forward and backward: " << held[0] << " plain, " << held[1] << " checkpointed");
  CHECK(held[1] < held[0] / 2);
}

TEST_CASE("model gradient checkpointing: pretrain --gradient-checkpointing is the same run") {
  if (!file_exists(ta::testing::tinyadapt_binary())) {
    MESSAGE("skipped: no " << ta::testing::tinyadapt_binary());
    return;
  }
  ScratchDir dir("checkpointing");
  std::string corpus;
  Rng rng(3);
  for (int i = 0; i < 800; i++) corpus += std::string(1, static_cast<char>('a' + rng.below(6))) + (i % 9 == 8 ? " " : "");
  write_file_atomic(dir.file("corpus.txt"), corpus);
  const std::string args = "pretrain --corpus " + dir.file("corpus.txt") + " --vocab-size 257 --n-layer 2 --n-head 2 "
                           "--n-embd 16 --ctx 16 --batch 4 --steps 6 --dropout 0.1 --eval-every 3 --eval-batches 1 --out ";
  std::string output;
  REQUIRE(ta::testing::run_cli(args + dir.file("plain"), output, dir.path) == 0);
  REQUIRE(ta::testing::run_cli(args + dir.file("checkpointed") + " --gradient-checkpointing", output, dir.path) == 0);
  auto losses = [](const std::string& log) {  // the loss and gradient-norm columns of every row
    std::string kept;
    for (size_t start = log.find('\n') + 1, end; (end = log.find('\n', start)) != std::string::npos; start = end + 1) {
      const std::string row = log.substr(start, end - start);
      const size_t third = row.find(',', row.find(',', row.find(',') + 1) + 1);
      kept += row.substr(0, row.find(',', third + 1)) + "\n";
    }
    return kept;
  };
  const std::string plain = losses(read_file(dir.file("plain/log.csv")));
  CHECK(std::count(plain.begin(), plain.end(), '\n') == 6);  // one row per step
  CHECK(losses(read_file(dir.file("checkpointed/log.csv"))) == plain);
}
