// tests/test_prompt_prefix.cpp — prompt tuning and prefix tuning (adapt/prompt.h, adapt/prefix.h).
//
// On tiny random GPTs built here: 20 AdamW steps leave every base parameter
// bit-identical and move the prompt / prefix; the trainable counts follow
// their formulas; the three prompt inits do what they say; save -> new method
// -> load gives the same logits (the reparameterised prefix saved folded);
// positions: a prompt made of wte rows and a prefix made of the KV cache of
// real tokens reproduce the model run on those tokens; KV-cache generation
// with a prefix gives the uncached tokens.
//
// PEFT parity: tools/reference/torch_peft_prompt_prefix.py implements PEFT's
// prompt tuning and prefix tuning on GPT-2 in plain torch (float64), writes
// PEFT adapter directories with random values and the next-token loss of a
// fixed token sequence; loaded here onto the same base model they must give
// the same loss (1e-4) and logits, both through the method and through
// adapt::load_adapted + adapt::lm_loss (what `tinyadapt eval-lm --adapter`
// runs). Live when /usr/bin/python3 imports torch; the committed fixtures in
// tests/fixtures/peft/ everywhere (TINYADAPT_UPDATE_FIXTURES=1 rewrites them).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/prefix.h"
#include "adapt/prompt.h"
#include "adapt/runner.h"
#include "data/bpe.h"
#include "data/io.h"
#include "nn/checkpoint.h"
#include "nn/generate.h"
#include "tests/helpers.h"

using namespace ta;
using ta::testing::max_relative_diff;
using ta::testing::ScratchDir;
using ta::testing::torch_available;
using namespace ta::adapt;

namespace {

ModelConfig tiny_config(int vocab = 61, int n_embd = 24, int n_layer = 2, int n_positions = 40) {
  return ta::testing::small_config(true, vocab, n_embd, n_layer, n_positions);
}

MethodConfig prompt_config(int k, const std::string& init = "vocab") {
  MethodConfig c;
  c.method = "prompt";
  c.num_virtual_tokens = k;
  c.prompt_init = init;
  return c;
}

MethodConfig prefix_config(int k, bool projection = false, int hidden = 16) {
  MethodConfig c;
  c.method = "prefix";
  c.num_virtual_tokens = k;
  c.prefix_projection = projection;
  c.prefix_hidden = hidden;
  return c;
}

std::vector<int> random_ids(size_t n, int vocab, Rng& rng) {
  std::vector<int> ids(n);
  for (int& id : ids) id = rng.below(vocab);
  return ids;
}

// Next-token targets for one row of ids: targets[t] = ids[t+1], the last ignored.
std::vector<int> next_tokens(const std::vector<int>& ids) {
  std::vector<int> targets(ids.begin() + 1, ids.end());
  targets.push_back(-100);
  return targets;
}

// The text's next-token loss (B = 1) with the method's options.
Tensor text_loss(const GPT& model, const Method& method, const std::vector<int>& ids) {
  ForwardOptions options;
  method.prepare(options, 1);
  return model.loss(ids, next_tokens(ids), 1, static_cast<int>(ids.size()), options);
}

// Logits (T, V) of the text rows (B = 1), without recording.
std::vector<float> text_logits(const GPT& model, const ForwardOptions& options, const std::vector<int>& ids) {
  NoGradGuard no_grad;
  int T = static_cast<int>(ids.size());
  Tensor hidden = model.forward(ids, 1, T, options);  // (1,k+T,C)
  int k = hidden.size(1) - T;
  return model.logits(slice(hidden, 1, k, k + T)).to_vector();
}

std::vector<float> method_logits(const GPT& model, const Method& method, const std::vector<int>& ids) {
  ForwardOptions options;
  method.prepare(options, 1);
  return text_logits(model, options, ids);
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float diff = 0;
  for (size_t i = 0; i < a.size(); i++) diff = std::max(diff, std::fabs(a[i] - b[i]));
  return diff;
}

// Redraws every matrix with sd 0.3 instead of GPT-2's 0.02: a freshly
// initialised GPT's predictions hardly depend on attention, so neither would a
// test of what a prefix does to them.
void sharpen(GPT& model) {
  Rng rng(11);
  for (auto& [name, tensor] : model.named_parameters())
    if (tensor.rank() == 2) fill_normal(tensor, rng, 0.0f, 0.3f);
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::map<std::string, std::vector<float>> snapshot(const std::vector<OptimParam>& params) {
  std::map<std::string, std::vector<float>> values;
  for (const OptimParam& p : params) values[p.name] = p.tensor.to_vector();
  return values;
}

// 20 AdamW steps on one fixed sequence; then every base parameter must be
// bit-identical (and own no gradient buffer) and every trainable one moved.
void check_only_method_trains(GPT& model, Method& method) {
  auto base_before = model.named_parameters();
  std::vector<std::vector<float>> base_values;
  for (auto& [name, tensor] : base_before) base_values.push_back(tensor.to_vector());
  std::vector<OptimParam> trainable = method.trainable_parameters();
  auto trainable_before = snapshot(trainable);
  AdamW optimizer(trainable);
  CHECK(optimizer.state_floats() == static_cast<size_t>(2 * method.added_parameters()));
  Rng rng(3);
  std::vector<int> ids = random_ids(10, model.config().vocab_size, rng);
  float first_loss = 0, last_loss = 0;
  for (int step = 0; step < 20; step++) {
    optimizer.zero_grad();
    Tensor loss = text_loss(model, method, ids);
    backward(loss);
    optimizer.step(1e-2f);
    (step == 0 ? first_loss : last_loss) = loss.item();
  }
  CHECK(last_loss < first_loss);
  for (size_t i = 0; i < base_before.size(); i++) {
    INFO("base parameter " << base_before[i].first);
    CHECK(bit_identical(base_before[i].second.to_vector(), base_values[i]));
    CHECK_FALSE(base_before[i].second.has_grad());
  }
  for (const OptimParam& p : trainable) {
    INFO("trainable " << p.name);
    CHECK(max_abs_diff(p.tensor.to_vector(), trainable_before[p.name]) > 1e-4f);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Training touches only the prompt / prefix; counts follow the formulas

TEST_CASE("prompt tuning: 20 steps move only the prompt; k·C trainable values") {
  GPT model(tiny_config(), 1);
  PromptTuning prompt(prompt_config(5));
  Rng rng(2);
  prompt.attach(model, {}, rng);
  CHECK(prompt.added_parameters() == 5 * 24);
  REQUIRE(prompt.trainable_parameters().size() == 1);
  CHECK(prompt.trainable_parameters()[0].name == "prompt_embeddings");
  CHECK(prompt.trainable_parameters()[0].tensor.shape() == Shape{5, 24});
  CHECK(model.count_parameters(true) == 0);  // the LM is frozen
  check_only_method_trains(model, prompt);
}

TEST_CASE("prefix tuning: 20 steps move only the prefix; k·2·L·C trainable values") {
  GPT model(tiny_config(), 1);
  PrefixTuning prefix(prefix_config(4));
  Rng rng(2);
  prefix.attach(model, {}, rng);
  CHECK(prefix.added_parameters() == 4 * 2 * 2 * 24);
  REQUIRE(prefix.trainable_parameters().size() == 1);
  CHECK(prefix.trainable_parameters()[0].tensor.shape() == Shape{4, 2 * 2 * 24});
  CHECK(model.count_parameters(true) == 0);
  check_only_method_trains(model, prefix);
}

TEST_CASE("prefix tuning with the reparameterisation: P' and the MLP train, the LM does not") {
  GPT model(tiny_config(), 1);
  const int k = 4, C = 24, L = 2, hidden = 16;
  PrefixTuning prefix(prefix_config(k, true, hidden));
  Rng rng(2);
  prefix.attach(model, {}, rng);
  CHECK(prefix.reparameterised());
  // P' + W1 + b1 + W2 + b2
  CHECK(prefix.added_parameters() == k * C + C * hidden + hidden + hidden * 2 * L * C + 2 * L * C);
  CHECK(prefix.trainable_parameters().size() == 5);
  CHECK(prefix.prefix_table().shape() == Shape{k, 2 * L * C});
  check_only_method_trains(model, prefix);
}

// ---------------------------------------------------------------------------
// Prompt initialisations (Lester et al.'s three)

// Whether prompt row j is the mean of wte's rows for `ids` (to float rounding).
bool row_is_mean_embedding(const Tensor& prompt, int j, const GPT& model, const std::vector<int>& ids) {
  const int C = prompt.size(1);
  for (int c = 0; c < C; c++) {
    double mean = 0;
    for (int id : ids) mean += model.wte.weight.data()[static_cast<size_t>(id) * C + c];
    mean /= static_cast<double>(ids.size());
    if (std::fabs(prompt.data()[static_cast<size_t>(j) * C + c] - mean) > 1e-6) return false;
  }
  return true;
}

// A tokenizer of 256 bytes + `merges` two-byte tokens + <|endoftext|>: a
// vocabulary larger than 5,000 without a corpus.
data::Tokenizer wide_tokenizer(int merges) {
  std::vector<std::pair<int, int>> pairs;
  for (int r = 0; r < merges; r++) pairs.push_back({r / 256, r % 256});
  return data::Tokenizer::from_merges(pairs, {"<|endoftext|>"});
}

TEST_CASE("prompt init: most_frequent_tokens picks the n most counted ids, ties by id, never an uncounted one") {
  const std::vector<int64_t> counts = {5, 0, 9, 5, 1, 9};
  CHECK(most_frequent_tokens(counts, 3) == std::vector<int>{2, 5, 0});
  CHECK(most_frequent_tokens(counts, 10) == std::vector<int>{2, 5, 0, 3, 4});  // id 1 never occurs
  CHECK(most_frequent_tokens(counts, 0).empty());
  CHECK(kPromptInitCommonTokens == 5000);
}

TEST_CASE("prompt init vocab: the pool is the 5,000 most common non-special tokens of pretraining.json; rows come only from it") {
  ScratchDir scratch("prompt_vocab");
  const data::Tokenizer tokenizer = wide_tokenizer(5800);  // 6,057 tokens, <|endoftext|> the last
  const int V = tokenizer.vocab_size(), eot = tokenizer.special_id("<|endoftext|>");
  REQUIRE(V == 6057);
  // Without pretraining.json (a GPT-2 checkpoint): every token but the special one.
  std::vector<int> all = prompt_init_vocabulary(scratch.path, tokenizer);
  CHECK(all.size() == static_cast<size_t>(V - 1));
  CHECK(std::find(all.begin(), all.end(), eot) == all.end());
  // Token i counted i times (id 0 never), <|endoftext|> most of all: the
  // pool is ids 6055 down to 1056, the special token left out.
  json::Value counts = json::Value::array();
  for (int id = 0; id < V; id++) counts.push(id == eot ? 1e9 : static_cast<double>(id));
  json::Value file = json::Value::object();
  file.set("steps", 200);
  file.set("token_counts", counts);
  write_file_atomic(scratch.file("pretraining.json"), file.dump());
  const std::vector<int> pool = prompt_init_vocabulary(scratch.path, tokenizer);
  REQUIRE(pool.size() == 5000);
  CHECK(pool.front() == 6055);
  CHECK(pool.back() == 1056);

  // k = 3000 rows drawn from the pool: a sampler over the whole vocabulary
  // would draw about 3000 · 1057/6057 ≈ 520 ids below 1056.
  GPT model(tiny_config(V, 6, 1, 8), 1);
  PromptTuning prompt(prompt_config(3000, "vocab"));
  AttachContext context;
  context.vocab_sample_ids = pool;
  Rng rng(5);
  prompt.attach(model, context, rng);
  REQUIRE(prompt.init_tokens().size() == 3000);
  std::set<int> drawn;
  for (size_t j = 0; j < prompt.init_tokens().size(); j++) {
    const std::vector<int>& ids = prompt.init_tokens()[j];
    REQUIRE(ids.size() == 1);
    drawn.insert(ids[0]);
    if (ids[0] < 1056 || ids[0] == eot) FAIL("row " << j << " drew token " << ids[0] << ", outside the pool");
    if (j % 97 == 0) CHECK(row_is_mean_embedding(prompt.prompt_embeddings(), static_cast<int>(j), model, ids));
  }
  CHECK(drawn.size() > 1500);  // sampled, not one token repeated
}

TEST_CASE("prompt init vocab: a small vocabulary gives the tokens that occur; bad token_counts are InputErrors naming the file") {
  ScratchDir scratch("prompt_counts");
  const data::Tokenizer tokenizer = data::Tokenizer::byte_level({"<|endoftext|>"});  // 257 tokens
  auto write_counts = [&](const std::string& counts) {
    write_file_atomic(scratch.file("pretraining.json"), "{\"token_counts\": " + counts + "}");
  };
  std::string counts = "[";  // the first 256 counts: ids 200..255 occur
  for (int id = 0; id < 256; id++) counts += std::string(id ? "," : "") + (id < 200 ? "0" : "3");
  write_counts(counts + ", 7]");
  std::vector<int> pool = prompt_init_vocabulary(scratch.path, tokenizer);
  std::vector<int> expected;
  for (int id = 200; id < 256; id++) expected.push_back(id);  // 256 is <|endoftext|>
  CHECK(pool == expected);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[1, 2, 3]", "has 3 counts; the tokenizer has 257 tokens"},
      {counts + ", -1]", "token_counts: expected a whole number"},
      {counts + ", 0.5]", "token_counts: expected a whole number"},
      {"\"many\"", "token_counts"}};
  for (const auto& [text, message] : bad) {
    CAPTURE(text.substr(0, 20));
    write_counts(text);
    try {
      prompt_init_vocabulary(scratch.path, tokenizer);
      FAIL("accepted");
    } catch (const InputError& e) {
      CHECK(std::string(e.what()).find("pretraining.json") != std::string::npos);
      CHECK(std::string(e.what()).find(message) != std::string::npos);
    }
  }
  write_file_atomic(scratch.file("pretraining.json"), "{\"steps\": 10}");  // no counts: every ordinary token
  CHECK(prompt_init_vocabulary(scratch.path, tokenizer).size() == 256);
}

TEST_CASE("prompt init label: row l is the mean embedding of label l's word's tokens, then vocab samples; cut to k") {
  GPT model(tiny_config(), 1);
  AttachContext context;
  context.label_word_ids = {{3, 4}, {7}, {9, 10, 11}};
  context.vocab_sample_ids = {40, 41, 42};
  {
    PromptTuning prompt(prompt_config(6, "label"));
    Rng rng(5);
    prompt.attach(model, context, rng);
    const std::vector<std::vector<int>>& rows = prompt.init_tokens();
    REQUIRE(rows.size() == 6);
    CHECK(std::vector<std::vector<int>>(rows.begin(), rows.begin() + 3) == context.label_word_ids);
    for (int j = 0; j < 6; j++) {
      INFO("row " << j);
      CHECK(row_is_mean_embedding(prompt.prompt_embeddings(), j, model, rows[static_cast<size_t>(j)]));
      if (j >= 3) CHECK((rows[static_cast<size_t>(j)].size() == 1 && rows[static_cast<size_t>(j)][0] >= 40));
    }
    CHECK_FALSE(row_is_mean_embedding(prompt.prompt_embeddings(), 0, model, {3}));  // the mean, not the first token
  }
  PromptTuning shorter(prompt_config(2, "label"));
  Rng rng(5);
  shorter.attach(model, context, rng);
  CHECK(shorter.init_tokens() == std::vector<std::vector<int>>{{3, 4}, {7}});
  CHECK(row_is_mean_embedding(shorter.prompt_embeddings(), 0, model, {3, 4}));
  CHECK(row_is_mean_embedding(shorter.prompt_embeddings(), 1, model, {7}));
}

TEST_CASE("prompt init random: uniform in [-0.5, 0.5]; unknown inits are InputErrors") {
  GPT model(tiny_config(), 1);
  PromptTuning prompt(prompt_config(20, "random"));
  Rng rng(5);
  prompt.attach(model, {}, rng);
  CHECK(prompt.init_tokens().empty());
  std::vector<float> values = prompt.prompt_embeddings().to_vector();
  float lo = 1, hi = -1, total = 0;
  for (float v : values) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    total += v;
  }
  CHECK(lo >= -0.5f);
  CHECK(hi <= 0.5f);
  CHECK(lo < -0.45f);  // the whole range is used (480 draws)
  CHECK(hi > 0.45f);
  CHECK(std::fabs(total / static_cast<float>(values.size())) < 0.05f);
  CHECK_THROWS_AS(PromptTuning(prompt_config(4, "words")), InputError);
  CHECK_THROWS_AS(PromptTuning(prompt_config(0)), InputError);
  CHECK_THROWS_AS(PrefixTuning(prefix_config(0)), InputError);
}

// ---------------------------------------------------------------------------
// Save -> load

TEST_CASE("prompt and prefix: save_tensors -> new method -> load_tensors gives identical logits") {
  Rng data_rng(9);
  std::vector<int> ids = random_ids(8, 61, data_rng);
  for (const MethodConfig& config : {prompt_config(5, "random"), prefix_config(3)}) {
    INFO("method " << config.method);
    GPT model(tiny_config(), 1);
    std::unique_ptr<Method> saved = config.method == "prompt" ? std::unique_ptr<Method>(new PromptTuning(config))
                                                              : std::unique_ptr<Method>(new PrefixTuning(config));
    Rng rng(4);
    saved->attach(model, {}, rng);
    std::vector<NamedArray> tensors = saved->save_tensors();
    REQUIRE(tensors.size() == 1);
    CHECK(tensors[0].name == "prompt_embeddings");

    GPT reloaded_model(tiny_config(), 1);
    std::unique_ptr<Method> loaded = config.method == "prompt" ? std::unique_ptr<Method>(new PromptTuning(config))
                                                               : std::unique_ptr<Method>(new PrefixTuning(config));
    Rng other_rng(77);
    loaded->attach(reloaded_model, {}, other_rng);
    CHECK_FALSE(bit_identical(method_logits(reloaded_model, *loaded, ids), method_logits(model, *saved, ids)));
    loaded->load_tensors(tensors, "adapter.safetensors");
    CHECK(bit_identical(method_logits(reloaded_model, *loaded, ids), method_logits(model, *saved, ids)));

    tensors[0].shape[0] += 1;
    tensors[0].values.resize(tensors[0].values.size() + static_cast<size_t>(tensors[0].shape[1]));
    CHECK_THROWS_AS(loaded->load_tensors(tensors, "adapter.safetensors"), InputError);
    CHECK_THROWS_AS(loaded->load_tensors({}, "adapter.safetensors"), InputError);
  }
}

TEST_CASE("prefix with the reparameterisation: the folded P saved gives the MLP's logits") {
  Rng data_rng(9);
  std::vector<int> ids = random_ids(8, 61, data_rng);
  const int k = 3, C = 24, L = 2;
  GPT model(tiny_config(), 1);
  PrefixTuning trained(prefix_config(k, true, 12));
  Rng rng(4);
  trained.attach(model, {}, rng);
  std::vector<NamedArray> tensors = trained.save_tensors();
  REQUIRE(tensors.size() == 1);
  CHECK(tensors[0].name == "prompt_embeddings");
  CHECK(tensors[0].shape == std::vector<int64_t>{k, 2 * L * C});  // the plain table, not P' or the MLP

  PrefixTuning loaded(prefix_config(k, true, 12));
  Rng other_rng(77);
  loaded.attach(model, {}, other_rng);
  loaded.load_tensors(tensors, "adapter.safetensors");
  CHECK_FALSE(loaded.reparameterised());  // the MLP is dropped once folded
  CHECK(loaded.added_parameters() == k * 2 * L * C);
  CHECK(loaded.trainable_parameters().size() == 1);
  CHECK(max_abs_diff(method_logits(model, loaded, ids), method_logits(model, trained, ids)) < 1e-6f);
}

// ---------------------------------------------------------------------------
// Positions: virtual tokens at 0..k-1, the text at k..k+T-1

// The prefix table (k, 2LC) in PEFT's layout holding a KV cache's keys and
// values: row j = [K_0[j] V_0[j] K_1[j] V_1[j] ...].
NamedArray table_from_cache(const KVCache& cache, int k, int C) {
  const int L = static_cast<int>(cache.keys.size());
  NamedArray table{"prompt_embeddings", {k, 2 * L * C}, std::vector<float>(static_cast<size_t>(k) * 2 * L * C)};
  for (int i = 0; i < L; i++)
    for (int j = 0; j < k; j++) {
      float* row = table.values.data() + static_cast<size_t>(j) * 2 * L * C;
      std::memcpy(row + 2 * i * C, cache.keys[static_cast<size_t>(i)].data() + j * C, sizeof(float) * C);
      std::memcpy(row + (2 * i + 1) * C, cache.values[static_cast<size_t>(i)].data() + j * C, sizeof(float) * C);
    }
  return table;
}

TEST_CASE("positions: prefix from the KV cache of tokens a, prompt of wte rows of tokens b == the model on [a; b; text]") {
  // Prefix tuning puts the text at k.. (a past of length k); prompt tuning
  // puts the virtual tokens at the positions after that and the text after
  // them. So a prefix holding the keys and values the model computes for
  // tokens a (positions 0..k-1), plus a prompt holding wte[b] (positions
  // k..2k-1), must give the text the hidden states of the plain sequence
  // [a; b; text]. This also checks the table's per-layer key/value layout.
  const int k = 3, C = 24, T = 6;
  GPT model(tiny_config(), 1);
  PromptTuning prompt(prompt_config(k, "vocab"));
  PrefixTuning prefix(prefix_config(k));
  Rng rng(8);
  prompt.attach(model, {}, rng);
  prefix.attach(model, {}, rng);
  std::vector<int> a = random_ids(k, 61, rng), text = random_ids(T, 61, rng);
  KVCache cache;
  {
    NoGradGuard no_grad;
    ForwardOptions caching;
    caching.cache = &cache;
    model.forward(a, 1, k, caching);
  }
  prefix.load_tensors({table_from_cache(cache, k, C)}, "cache");

  ForwardOptions options;
  prompt.prepare(options, 1);
  prefix.prepare(options, 1);
  std::vector<float> ours = text_logits(model, options, text);

  std::vector<int> whole = a;
  for (const std::vector<int>& row : prompt.init_tokens()) whole.push_back(row[0]);  // one sampled token each
  whole.insert(whole.end(), text.begin(), text.end());
  std::vector<float> plain = text_logits(model, {}, whole);
  std::vector<float> plain_text(plain.end() - static_cast<long>(ours.size()), plain.end());
  CHECK(max_abs_diff(ours, plain_text) < 1e-5f);

  ForwardOptions prompt_only;  // and without the prefix, the prompt alone is [b; text]
  prompt.prepare(prompt_only, 1);
  std::vector<int> b_text(whole.begin() + k, whole.end());
  std::vector<float> plain_b = text_logits(model, {}, b_text);
  CHECK(max_abs_diff(text_logits(model, prompt_only, text),
                     std::vector<float>(plain_b.end() - static_cast<long>(ours.size()), plain_b.end())) < 1e-5f);
}

TEST_CASE("prompt and prefix: one (k, C) prompt / prefix serves every row of a batch") {
  GPT model(tiny_config(), 1);
  sharpen(model);
  PromptTuning prompt(prompt_config(3, "random"));
  PrefixTuning prefix(prefix_config(2, true));
  Rng rng(4);
  prompt.attach(model, {}, rng);
  prefix.attach(model, {}, rng);
  std::vector<int> first = random_ids(5, 61, rng), second = random_ids(5, 61, rng), both = first;
  both.insert(both.end(), second.begin(), second.end());
  ForwardOptions batch_options, row_options;
  prompt.prepare(batch_options, 2);
  prefix.prepare(batch_options, 2);
  prompt.prepare(row_options, 1);
  prefix.prepare(row_options, 1);
  NoGradGuard no_grad;
  Tensor hidden = model.forward(both, 2, 5, batch_options);  // (2,k+5,C)
  std::vector<float> batched = model.logits(slice(hidden, 1, 3, 8)).to_vector();  // (2,5,V)
  std::vector<float> rows = text_logits(model, row_options, first), row_2 = text_logits(model, row_options, second);
  rows.insert(rows.end(), row_2.begin(), row_2.end());
  CHECK(max_abs_diff(batched, rows) < 1e-5f);
}

// ---------------------------------------------------------------------------
// Generation with the KV cache

TEST_CASE("generate: with a prefix (and with a prompt) cached and uncached greedy tokens are identical") {
  GPT model(tiny_config(61, 24, 2, 40), 3);
  sharpen(model);  // so that attention, and with it the prefix, decides the tokens
  PrefixTuning prefix(prefix_config(4));
  PromptTuning prompt(prompt_config(4, "random"));
  Rng rng(6);
  prefix.attach(model, {}, rng);
  prompt.attach(model, {}, rng);
  GenerateOptions greedy;
  greedy.max_new_tokens = 12;
  greedy.temperature = 0;
  for (const Method* method : {static_cast<const Method*>(&prefix), static_cast<const Method*>(&prompt)}) {
    INFO("method " << method->name());
    ForwardOptions options;
    method->prepare(options, 1);
    greedy.use_cache = true;
    std::vector<int> cached = generate(model, {5, 17, 3}, greedy, options);
    greedy.use_cache = false;
    std::vector<int> uncached = generate(model, {5, 17, 3}, greedy, options);
    CHECK(cached.size() == 12);
    CHECK(cached == uncached);
    CHECK(cached != generate(model, {5, 17, 3}, greedy));  // the method changes what is generated
  }
}

// ---------------------------------------------------------------------------
// PEFT parity

namespace {

// Loads DIR/<name> (a PEFT adapter) onto `model` and compares the losses and
// logits with the reference's; also checks our adapter_config fields equal PEFT's.
void check_peft_case(GPT& model, const std::string& dir, const std::string& name,
                     const std::map<std::string, NamedArray>& expected) {
  INFO("case " << name);
  std::string adapter = dir + "/" + name;
  json::Value peft = json::parse_file(adapter + "/adapter_config.json");
  std::unique_ptr<Method> method = make_method(method_config_from_json(peft, adapter));  // read by peft_type
  CHECK(method->name() == (name == "prompt" ? "prompt" : "prefix"));
  Rng rng(1);
  method->attach(model, {}, rng);
  method->load_tensors(read_safetensors(adapter + "/adapter_model.safetensors"), adapter);
  json::Value ours = method->peft_config();
  for (const auto& [key, value] : ours.members()) {
    INFO("adapter_config field " << key);
    if (key == "prompt_tuning_init") continue;  // how PEFT initialises before loading: no effect on a loaded adapter
    REQUIRE(peft.find(key) != nullptr);
    CHECK(peft.find(key)->dump() == value.dump());
  }
  std::vector<int> ids;
  for (float v : expected.at("ids").values) ids.push_back(static_cast<int>(v));
  NoGradGuard no_grad;
  float loss = text_loss(model, *method, ids).item(), reference = expected.at(name + ".loss").values[0];
  MESSAGE("PEFT parity " << name << ": loss " << loss << " vs reference " << reference << " (|diff| "
                         << std::fabs(loss - reference) << ")");
  CHECK(std::fabs(loss - reference) < 1e-4f);
  CHECK(max_abs_diff(method_logits(model, *method, ids), expected.at(name + ".logits").values) < 1e-4f);
  float base_loss = model.loss(ids, next_tokens(ids), 1, static_cast<int>(ids.size())).item();
  CHECK(std::fabs(base_loss - reference) > 0.05f);  // the adapter matters: ignoring it cannot pass

  const AdaptedModel adapted = load_adapted(dir, adapter, false);  // the eval-lm --adapter path
  const LMLoss lm = lm_loss(adapted, ids);
  CHECK(lm.tokens == static_cast<long long>(ids.size()) - 1);
  CHECK(std::fabs(lm.loss - reference) < 1e-4);
}

// PEFT's prompt-tuning training loss also scores ids[0] from the last virtual
// token: the logits of rows k-1..k+T-2 of [P; text] against ids.
void check_peft_prompt_training_loss(GPT& model, const std::string& dir, const std::map<std::string, NamedArray>& expected) {
  std::string adapter = dir + "/prompt";
  PromptTuning prompt(method_config_from_json(json::parse_file(adapter + "/adapter_config.json"), adapter));
  Rng rng(1);
  prompt.attach(model, {}, rng);
  prompt.load_tensors(read_safetensors(adapter + "/adapter_model.safetensors"), adapter);
  std::vector<int> ids;
  for (float v : expected.at("ids").values) ids.push_back(static_cast<int>(v));
  NoGradGuard no_grad;
  const int T = static_cast<int>(ids.size()), k = prompt.prompt_embeddings().size(0);
  ForwardOptions options;
  prompt.prepare(options, 1);
  Tensor hidden = model.forward(ids, 1, T, options);  // (1,k+T,C)
  float loss = cross_entropy(model.logits(slice(hidden, 1, k - 1, k - 1 + T)), ids).item();
  CHECK(std::fabs(loss - expected.at("prompt.peft_training_loss").values[0]) < 1e-4f);
}

const char* kPeftCases[] = {"prompt", "prefix", "prefix_projection"};

void check_peft_dir(GPT& model, const std::string& dir) {
  std::map<std::string, NamedArray> expected;
  for (NamedArray& a : read_safetensors(dir + "/expected.safetensors")) expected[a.name] = a;
  for (const std::string name : kPeftCases) check_peft_case(model, dir, name, expected);
  check_peft_prompt_training_loss(model, dir, expected);
}

// A model directory (with a small BPE tokenizer, for load_adapted) and the
// reference's adapters and expected losses beside it.
void run_reference(const GPT& model, const std::string& dir) {
  make_dirs(dir);
  save_model(model, dir);
  std::string corpus;
  for (int i = 0; i < 20; i++) corpus += "the cat sat on the mat\n";
  data::train_bpe(corpus, 262, {"<|endoftext|>"}).save(dir);
  std::string command = "/usr/bin/python3 tools/reference/torch_peft_prompt_prefix.py " + dir + " " + dir;
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

TEST_CASE("prompt/prefix PEFT parity: adapters written by the torch reference give its loss (live, odd sizes)") {
  if (!torch_available()) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch (the fixture test still runs)");
    return;
  }
  ScratchDir scratch("prompt_prefix");
  GPT model(tiny_config(301, 48, 3, 19), 42);
  sharpen(model);
  run_reference(model, scratch.path);
  check_peft_dir(model, scratch.path);
}

TEST_CASE("prompt/prefix PEFT parity: committed fixtures from the torch reference") {
  const std::string dir = "tests/fixtures/peft";
  if (std::getenv("TINYADAPT_UPDATE_FIXTURES") != nullptr) {
    GPT model(tiny_config(263, 24, 2, 16), 42);
    sharpen(model);
    run_reference(model, dir);
  }
  std::unique_ptr<GPT> model = load_model(dir);
  check_peft_dir(*model, dir);
}
