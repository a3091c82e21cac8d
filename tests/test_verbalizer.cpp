// tests/test_verbalizer.cpp — the verbalizer's whole-word scores
// (adapt/verbalizer.h, the verbalizer of adapt/head.h).
//
// By hand: on a tiny random GPT with prompt tuning, and with prefix tuning,
// attached, the head's score of each label word (one of one token, two
// sharing their first token, of 2 and 3 tokens) for texts of different
// lengths in one right-padded batch equals Σ_j log_softmax of a separate
// plain forward pass over [text; word], and so does the gradient that
// reaches the prompt / prefix. Single-token words: the fast path equals the
// old restricted logits, and the whole-word scores up to a per-row constant.
// On the keyword task (tests/fixtures/adapt/keyword): words sharing their
// first token train and are told apart; empty and identical words are
// refused naming them; save -> load gives identical predictions and the file
// records every word's tokens; texts are truncated to leave the words room.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/runner.h"
#include "adapt/verbalizer.h"
#include "nn/checkpoint.h"
#include "tests/helpers.h"

using namespace ta;
using namespace ta::adapt;
using ta::testing::max_relative_diff;
using ta::testing::save_keyword_base;
using ta::testing::ScratchDir;
using ta::testing::small_method_config;

namespace {

// A tiny random GPT (matrices drawn with sd 0.3, so that a prompt or prefix
// moves the next-token distribution well above the tolerances) with `method`
// attached and a verbalizer over `words`, held as an AdaptedModel.
AdaptedModel tiny_adapted(const std::string& method, const std::vector<std::vector<int>>& words) {
  ModelConfig c;
  c.vocab_size = 61;
  c.n_positions = 24;
  c.n_embd = 24;
  c.n_layer = 2;
  c.n_head = 3;
  AdaptedModel a{"", std::make_unique<GPT>(c, 1), data::Tokenizer::byte_level(), 0, small_method_config(method),
                 nullptr, nullptr};
  Rng rng(11);
  for (auto& [name, tensor] : a.model->named_parameters())
    if (tensor.rank() == 2) fill_normal(tensor, rng, 0.0f, 0.3f);
  a.method = make_method(a.method_config);
  a.method->attach(*a.model, AttachContext{}, rng);
  for (const OptimParam& p : a.method->trainable_parameters()) {  // away from the init
    Tensor t = p.tensor;
    fill_normal(t, rng, 0.0f, 0.5f);
  }
  HeadConfig head;
  head.type = "verbalizer";
  for (size_t l = 0; l < words.size(); l++) {
    head.label_names.push_back("label" + std::to_string(l));
    head.label_words.push_back(" label" + std::to_string(l));
  }
  a.head = std::make_unique<Head>(head, c.n_embd, words, rng);
  return a;
}

// Three texts of different lengths, right-padded into one batch.
const std::vector<EncodedExample> kTexts = {{{1, 2, 3, 4, 5}, 0}, {{8, 9}, 1}, {{10, 20, 30, 40, 50, 60, 2}, 2}};

Batch all_texts() { return make_batch(kTexts, {0, 1, 2}); }

// log p(word | text) from one plain forward pass over [text; word but its
// last] with the method's prefix, on the tape: Σ_j log_softmax(logits)[word[j]].
Tensor plain_word_log_prob(const AdaptedModel& a, const std::vector<int>& text, const std::vector<int>& word) {
  std::vector<int> ids = text;
  ids.insert(ids.end(), word.begin(), word.end() - 1);
  const int n = static_cast<int>(ids.size()), V = a.model->config().vocab_size;
  const ForwardOptions options = a.forward_options(1, nullptr);
  Tensor hidden = a.model->forward(ids, 1, n, options);  // (1,k+n,C)
  const int k = hidden.size(1) - n;
  Tensor log_probs = log_softmax(a.model->logits(slice(hidden, 1, k, k + n)));  // (1,n,V)
  std::vector<int> picks;  // word[j] is predicted at the text's last token + j
  for (size_t j = 0; j < word.size(); j++) picks.push_back((static_cast<int>(text.size()) - 1 + static_cast<int>(j)) * V + word[j]);
  return sum(embedding(reshape(log_probs, {n * V, 1}), picks, Shape{static_cast<int>(picks.size())}));
}

// The gradient of Σ weights ⊙ scores on the method's one trainable tensor, then cleared.
std::vector<float> gradient_of(const AdaptedModel& a, const Tensor& weighted_sum) {
  backward(weighted_sum);
  Tensor trainable = a.method->trainable_parameters().at(0).tensor;
  REQUIRE(trainable.has_grad());
  std::vector<float> grad(trainable.grad(), trainable.grad() + trainable.numel());
  trainable.zero_grad();
  return grad;
}

}  // namespace

TEST_CASE("verbalizer: whole-word scores and their gradient equal separate plain forward passes (prompt and prefix tuning)") {
  const std::vector<std::vector<int>> words = {{5}, {7, 9}, {7, 11, 3}};  // labels 1 and 2 share their first token
  for (const std::string method : {"prompt", "prefix"}) {
    CAPTURE(method);
    AdaptedModel a = tiny_adapted(method, words);
    REQUIRE(a.head->needs_text_keys());
    CHECK(a.head->continuation_positions() == 2);
    const Tensor weights = Tensor::from({3, 3}, {0.3f, -1.1f, 0.7f, 1.3f, 0.2f, -0.6f, -0.4f, 0.9f, 1.7f});
    const Tensor scores = a.label_logits(all_texts(), nullptr);  // (3,3)
    REQUIRE(scores.shape() == Shape{3, 3});
    const std::vector<float> ours = gradient_of(a, sum(mul(scores, weights)));  // backward consumes the tape
    std::vector<float> expected;
    Tensor expected_sum;
    for (size_t b = 0; b < kTexts.size(); b++)
      for (size_t l = 0; l < words.size(); l++) {
        Tensor score = plain_word_log_prob(a, kTexts[b].ids, words[l]);
        expected.push_back(score.item());
        Tensor weighted = mul_scalar(score, weights.data()[b * 3 + l]);
        expected_sum = expected_sum.defined() ? add(expected_sum, weighted) : weighted;
      }
    MESSAGE(method << ": scores " << scores.to_vector()[1] << " " << scores.to_vector()[2] << " ... vs " << expected[1] << " "
                   << expected[2] << " (max relative diff " << max_relative_diff(scores.to_vector(), expected) << ")");
    CHECK(max_relative_diff(scores.to_vector(), expected) <= 1e-5f);
    CHECK(std::fabs(expected[1] - expected[2]) > 0.1f);  // the words sharing a first token score apart
    // The gradient reaches the prompt / prefix through the kept keys.
    const std::vector<float> theirs = gradient_of(a, expected_sum);
    CHECK(max_relative_diff(ours, theirs) <= 1e-4f);
    CHECK(*std::max_element(theirs.begin(), theirs.end()) > 1e-3f);
  }
}

TEST_CASE("verbalizer: single-token words take the fast path, the old restricted logits, equal to the whole-word scores up to a row constant") {
  const std::vector<std::vector<int>> words = {{5}, {7}, {11}};
  AdaptedModel a = tiny_adapted("prompt", words);
  CHECK_FALSE(a.head->needs_text_keys());
  CHECK(a.head->continuation_positions() == 0);
  NoGradGuard no_grad;
  const Batch batch = all_texts();
  const std::vector<float> fast = a.label_logits(batch, nullptr).to_vector();  // (3,3)
  // The old verbalizer: the LM's logits at the last real token, at each word's token.
  const Tensor last = a.features(batch, nullptr);                    // (3,C)
  const std::vector<float> lm = a.model->logits(last).to_vector();  // (3,V)
  const int V = a.model->config().vocab_size;
  std::vector<float> restricted;
  for (int b = 0; b < 3; b++)
    for (const std::vector<int>& word : words) restricted.push_back(lm[static_cast<size_t>(b * V + word[0])]);
  CHECK(max_relative_diff(fast, restricted) <= 1e-5f);
  // The whole-word scores (the general path, forced) are log-probabilities:
  // fast − whole = logsumexp of the row's LM logits, the same for every label.
  ForwardOptions options = a.forward_options(batch.B, nullptr);
  options.padding_mask = batch.padding_mask;
  TextKeys keys;
  forward_keeping_keys(*a.model, batch.ids, batch.B, batch.T, options, keys);
  const std::vector<float> whole = word_log_probs(*a.model, last, words, keys, {}).to_vector();
  for (int b = 0; b < 3; b++) {
    CAPTURE(b);
    double top = -1e30, total = 0;
    for (int v = 0; v < V; v++) top = std::max(top, static_cast<double>(lm[static_cast<size_t>(b * V + v)]));
    for (int v = 0; v < V; v++) total += std::exp(lm[static_cast<size_t>(b * V + v)] - top);
    const double logsumexp = top + std::log(total);
    for (int l = 0; l < 3; l++) {
      const size_t i = static_cast<size_t>(b * 3 + l);
      CHECK(whole[i] < 0.0f);
      CHECK(fast[i] - whole[i] == doctest::Approx(logsumexp).epsilon(1e-5));
    }
  }
  // So softmax and cross-entropy over the labels are the same.
  const Tensor fast_t = Tensor::from({3, 3}, fast), whole_t = Tensor::from({3, 3}, whole);
  CHECK(max_relative_diff(softmax(fast_t).to_vector(), softmax(whole_t).to_vector()) <= 1e-5f);
  CHECK(cross_entropy(fast_t, {0, 1, 2}).item() == doctest::Approx(cross_entropy(whole_t, {0, 1, 2}).item()).epsilon(1e-5));
}

namespace {

// The keyword task on a tiny random GPT whose tokenizer makes " the bad" and
// " the good" two tokens each, sharing " the".
struct Fixture {
  ScratchDir scratch{"verbalizer"};
  std::string model_dir = scratch.path + "/base";
  data::Task task = data::load_task("tests/fixtures/adapt/keyword/train.tsv", 7);

  Fixture() { save_keyword_base(task, model_dir, 24); }

  AdaptedModel adapted(const std::string& method, const std::vector<std::string>& label_words, uint64_t seed = 11) const {
    HeadRequest request;
    request.type = "verbalizer";
    request.label_words = label_words;
    return create_adapted(model_dir, small_method_config(method),
                          resolve_head(request, method, read_config(model_dir + "/config.json"), task.label_names), seed);
  }
  std::vector<EncodedExample> encoded(const AdaptedModel& a, const std::string& split) const {
    return encode_examples(task.split(split), a.tokenizer, a.max_text_tokens(), split);
  }
};

RunOptions quick_run(long long steps, float lr) {
  RunOptions o;
  o.steps = steps;
  o.lr = lr;
  o.batch = 8;
  o.warmup = 0;
  o.show_progress = false;
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("verbalizer: label words that share their first token train and are told apart") {
  // The first token's log-probability is the same for both labels, so only
  // the continuation (the second token, after the text and " the") can tell
  // them apart: a verbalizer reading first tokens would tie on every text.
  // Fine-tuning under the verbalizer: a frozen random base gives a prompt or
  // prefix too little to steer in a test's budget (the first test checks
  // their scores and gradients by hand).
  Fixture f;
  AdaptedModel a = f.adapted("finetune", {"the bad", "the good"});  // labels bad, good
  const std::vector<std::vector<int>> tokens = label_word_tokens(a.head->config().label_words, a.tokenizer, 24);
  REQUIRE(tokens[0].size() == 2);
  REQUIRE(tokens[1].size() == 2);
  REQUIRE(tokens[0][0] == tokens[1][0]);  // the old verbalizer refused these words
  const std::vector<size_t> counts = data::label_counts(f.task.test, 2);
  const double majority = static_cast<double>(*std::max_element(counts.begin(), counts.end())) / f.task.test.size();
  const TrainResult r = train(a, f.encoded(a, "train"), f.encoded(a, "val"), quick_run(60, 3e-3f));
  const double train_accuracy = evaluate(a, f.encoded(a, "train")).accuracy, test_accuracy = evaluate(a, f.encoded(a, "test")).accuracy;
  MESSAGE("words sharing their first token: train accuracy " << train_accuracy << ", test " << test_accuracy << " (majority "
                                                             << majority << "), loss " << r.losses.front() << " -> " << r.losses.back());
  CHECK(train_accuracy > 0.95);
  CHECK(test_accuracy > majority + 0.2);
  CHECK(r.losses.back() < 0.3f * r.losses.front());
}

TEST_CASE("verbalizer: empty words and words with identical tokens are refused naming the words") {
  Fixture f;
  const data::Tokenizer tokenizer = data::Tokenizer::load(f.model_dir);
  CHECK(error_of([&] { label_word_tokens({" the good", " the good"}, tokenizer, 24); })
            .find("label words ' the good' and ' the good' are the same tokens") != std::string::npos);
  CHECK(error_of([&] { label_word_tokens({" good", " "}, tokenizer, 24); }).find("label word 2 (' ') is empty") != std::string::npos);
  CHECK(error_of([&] { label_word_tokens({"", " good"}, tokenizer, 24); }).find("label word 1 ('') is empty") != std::string::npos);
  CHECK(error_of([&] { label_word_tokens({" good", " the good"}, tokenizer, 1); }).find("label word ' the good' has 2 tokens") !=
        std::string::npos);
  CHECK(error_of([&] { f.adapted("prompt", {"good", ""}); }).find("the word for label 'good' is empty") != std::string::npos);
  CHECK(error_of([&] { f.adapted("prompt", {"the good", "the good"}); }).find("' the good' and ' the good'") != std::string::npos);
  // A word that is a prefix of another is scored (lm-eval's rule), not refused.
  CHECK(label_word_tokens({" the", " the good"}, tokenizer, 24).size() == 2);
}

TEST_CASE("verbalizer: save -> load gives identical predictions; the file records each word's tokens and is checked") {
  Fixture f;
  AdaptedModel a = f.adapted("prompt", {"the bad", "good"});
  Rng rng(3);
  for (const OptimParam& p : a.trainable_parameters()) {
    Tensor t = p.tensor;
    fill_normal(t, rng, 0.0f, 0.5f);
  }
  const std::string dir = f.scratch.path + "/prompt";
  save_adapter(a, dir);
  const std::vector<std::vector<int>> words = label_word_tokens(a.head->config().label_words, a.tokenizer, 24);
  const std::vector<NamedArray> tensors = read_safetensors(dir + "/adapter_model.safetensors");
  const NamedArray* saved = nullptr;
  for (const NamedArray& t : tensors)
    if (t.name == "head.label_tokens") saved = &t;
  REQUIRE(saved != nullptr);
  CHECK(saved->shape == std::vector<int64_t>{2, 2});  // (L, M): " good" padded with -1
  CHECK(saved->values == std::vector<float>{static_cast<float>(words[0][0]), static_cast<float>(words[0][1]),
                                            static_cast<float>(words[1][0]), -1.0f});

  const AdaptedModel loaded = load_adapted(f.model_dir, dir, true);
  const std::vector<std::vector<float>> ours = predict_logits(a, f.encoded(a, "test"));
  CHECK(predict_logits(loaded, f.encoded(loaded, "test")) == ours);
  CHECK(ours[0][0] < 0.0f);  // log-probabilities

  // A file from before whole-word scoring (one first token per word), and other tokens, are refused.
  std::vector<NamedArray> old = tensors;
  for (NamedArray& t : old)
    if (t.name == "head.label_tokens") t = NamedArray{t.name, {2}, {static_cast<float>(words[0][0]), static_cast<float>(words[1][0])}};
  CHECK(error_of([&] { loaded.head->load_tensors(old, "old.safetensors"); })
            .find("old.safetensors: head.label_tokens holds one token per label, but label word ' the bad' has 2 tokens") !=
        std::string::npos);
  std::vector<NamedArray> other = tensors;
  for (NamedArray& t : other)
    if (t.name == "head.label_tokens") t.values[1] += 1;
  CHECK(error_of([&] { loaded.head->load_tensors(other, "other.safetensors"); }).find("differ") != std::string::npos);

  // Single-token words keep the old format: (L) first tokens.
  const AdaptedModel single = f.adapted("prompt", {"bad", "good"});
  for (const NamedArray& t : single.head->save_tensors())
    if (t.name == "head.label_tokens") CHECK(t.shape == std::vector<int64_t>{2});
}

TEST_CASE("verbalizer: texts are truncated to leave the label words room after them") {
  Fixture f;
  const AdaptedModel a = f.adapted("prompt", {"the bad", "the good"});  // 4 virtual tokens, words of 2 tokens
  CHECK(a.max_text_tokens() == 24 - 4 - 1);
  const AdaptedModel single = f.adapted("prompt", {"bad", "good"});
  CHECK(single.max_text_tokens() == 24 - 4);
  data::Example longest;
  for (int i = 0; i < 30; i++) longest.text_a += " then";
  const std::vector<EncodedExample> encoded = encode_examples({longest}, a.tokenizer, a.max_text_tokens(), "long");
  REQUIRE(encoded[0].ids.size() == 19);
  NoGradGuard no_grad;
  CHECK(a.label_logits(make_batch(encoded, {0}), nullptr).numel() == 2);  // the last word token sits at position 23
  std::vector<EncodedExample> too_long = encoded;
  too_long[0].ids.push_back(too_long[0].ids.back());
  CHECK(error_of([&] { a.label_logits(make_batch(too_long, {0}), nullptr); }).find("exceeds n_positions 24") != std::string::npos);
}
