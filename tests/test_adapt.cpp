// tests/test_adapt.cpp — the adaptation framework (adapt/): the method
// registry, heads, batching, the runner, adapter directories, and the
// methods probe, probe-mlp, finetune and bitfit, and the token probe. A generic test runs every
// registered method (the other files' too) through "frozen parameters are
// bit-identical after training, trainable ones moved".
//
// Fixture: a tiny random GPT (2 layers, C = 32) in a temporary directory,
// with a BPE tokenizer trained on the fixture task
// tests/fixtures/adapt/keyword/ — short texts whose label (good / bad) is
// set by their last word (great, lovely, superb / awful, broken, terrible),
// so a head on the last token's features can learn it. The ood split uses
// other filler words.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/report.h"
#include "adapt/runner.h"
#include "adapt/token_probe.h"
#include "data/tasks.h"
#include "nn/checkpoint.h"
#include "tests/helpers.h"

using namespace ta;
using namespace ta::adapt;
using ta::testing::save_keyword_base;
using ta::testing::small_method_config;
using ta::testing::ScratchDir;

namespace {

// A tiny random GPT and a tokenizer that knows the label words " good" and
// " bad" as single tokens, saved as a model directory; and the keyword task.
struct Fixture {
  ScratchDir scratch{"adapt"};
  std::string model_dir = scratch.path + "/base";
  data::Task task = data::load_task("tests/fixtures/adapt/keyword/train.tsv", 7);

  Fixture() { save_keyword_base(task, model_dir, 48); }

  AdaptedModel adapted(const std::string& method, const std::string& head_type = "", uint64_t seed = 11) const {
    const MethodConfig config = small_method_config(method);
    HeadRequest request;
    request.type = head_type;
    request.hidden = config.probe_hidden;
    return create_adapted(model_dir, config, resolve_head(request, method, read_config(model_dir + "/config.json"), task.label_names), seed);
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

// Every parameter of the model and the method, by node (a method's tensors
// may or may not be registered in the model tree).
std::map<const Node*, std::pair<std::string, std::vector<float>>> snapshot(const AdaptedModel& a) {
  std::map<const Node*, std::pair<std::string, std::vector<float>>> values;
  for (auto& [name, t] : a.model->named_parameters()) values[t.node()] = {name, t.to_vector()};
  for (const OptimParam& p : a.trainable_parameters()) values[p.tensor.node()] = {p.name, p.tensor.to_vector()};
  return values;
}

// After 20 steps: frozen values bit-identical, every trainable tensor moved,
// optimiser state = 2 × trainable.
void check_frozen_and_moved(const Fixture& f, const std::string& method) {
  CAPTURE(method);
  AdaptedModel a = f.adapted(method);
  const auto before = snapshot(a);
  std::set<const Node*> trainable;
  for (const OptimParam& p : a.trainable_parameters()) trainable.insert(p.tensor.node());
  const RunOptions run = quick_run(20, default_run_options(method).lr);
  const TrainResult result = train(a, f.encoded(a, "train"), f.encoded(a, "val"), run);
  CHECK(result.optimizer_state_floats == 2 * static_cast<size_t>(trainable_report(a).trainable));
  for (const auto& [node, named] : before) {
    CAPTURE(named.first);
    const std::vector<float> now(node->data.data(), node->data.data() + node->shape.numel());
    if (trainable.count(node)) CHECK(now != named.second);
    else CHECK(now == named.second);
  }
}

int64_t sum_of_biases(const GPT& model) {
  int64_t n = 0;
  for (auto& [name, t] : model.named_parameters())
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) n += t.numel();
  return n;
}

}  // namespace

TEST_CASE("adapt registry: every method by name; an unknown one lists the known") {
  const std::vector<std::string> names = method_names();
  for (const char* ours : {"probe", "probe-mlp", "finetune", "bitfit"})
    CHECK(std::find(names.begin(), names.end(), ours) != names.end());
  MethodConfig config;
  config.method = "nonsense";
  try {
    make_method(config);
    FAIL("no InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("unknown method 'nonsense'") != std::string::npos);
    CHECK(std::string(e.what()).find("bitfit") != std::string::npos);
  }
}

TEST_CASE("adapt method config: JSON round trip with PEFT's names; PEFT files read by peft_type") {
  MethodConfig c;
  c.method = "lora";
  c.lora_rank = 4;
  c.lora_alpha = 8;
  c.target_modules = {"c_attn", "c_fc"};
  c.lora_dropout = 0.05f;
  const json::Value v = method_config_to_json(c);
  CHECK(v.at("r").as_int() == 4);
  CHECK(v.at("adapter_init_std").as_number() == 0.01);  // written as the user's decimal, not 0.0099999997
  CHECK(v.at("lora_dropout").as_number() == 0.05);
  const MethodConfig back = method_config_from_json(v, "cfg");
  CHECK(back.method == "lora");
  CHECK(back.lora_rank == 4);
  CHECK(back.lora_alpha == 8.0f);
  CHECK(back.lora_dropout == 0.05f);
  CHECK(back.adapter_init_std == c.adapter_init_std);
  CHECK(back.target_modules == c.target_modules);
  const json::Value peft = json::parse(R"({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 7})");
  const MethodConfig from_peft = method_config_from_json(peft, "cfg");
  CHECK(from_peft.method == "prompt");
  CHECK(from_peft.num_virtual_tokens == 7);
  CHECK_THROWS_AS(method_config_from_json(json::parse(R"({"peft_type": "IA3"})"), "cfg"), InputError);
}

TEST_CASE("adapt task data: pair separator, longest-first truncation, right padding, seeded epochs") {
  const data::Tokenizer tok = data::Tokenizer::byte_level({"<|endoftext|>"});
  CHECK(pair_separator(tok) == std::vector<int>{tok.special_id("<|endoftext|>")});
  CHECK(pair_separator(data::Tokenizer::byte_level()) == std::vector<int>{'\n'});
  data::Example pair{1, "abcdefgh", "xy", "d"};
  // Budget 7 = 6 text + 1 separator: the longer text_a loses its tail, both keep their heads.
  const std::vector<EncodedExample> e = encode_examples({pair, {0, "<|endoftext|>", "", "e"}}, tok, 7, "t");
  CHECK(e[0].ids == std::vector<int>{'a', 'b', 'c', 'd', tok.special_id("<|endoftext|>"), 'x', 'y'});
  CHECK(e[0].label == 1);
  CHECK(e[1].ids.size() == 7);  // special text in untrusted input stays bytes, cut to 7
  const Batch b = make_batch({{{1, 2, 3}, 0}, {{4}, 1}}, {0, 1});
  CHECK(b.T == 3);
  CHECK(b.ids == std::vector<int>{1, 2, 3, 4, 0, 0});
  CHECK(b.padding_mask == std::vector<uint8_t>{1, 1, 1, 1, 0, 0});
  EpochSampler s1(10, 4, 5), s2(10, 4, 5), s3(10, 4, 6);
  std::vector<size_t> epoch;
  for (int step = 0; step < 3; step++) {
    const std::vector<size_t> idx = s1.indices_for_step(step);
    CHECK(idx == s2.indices_for_step(step));
    epoch.insert(epoch.end(), idx.begin(), idx.end());
  }
  std::vector<size_t> first_ten(epoch.begin(), epoch.begin() + 10);
  std::sort(first_ten.begin(), first_ten.end());
  CHECK(first_ten == std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});  // each example once per epoch
  CHECK(s3.indices_for_step(0) != s1.indices_for_step(0));
}

TEST_CASE("adapt report: PEFT's line, thousands separators, four decimals") {
  CHECK(report_line({12288, 1234567}) == "trainable params: 12,288 || all params: 1,234,567 || trainable%: 0.9953");
  CHECK(with_thousands(999) == "999");
  CHECK(with_thousands(1000) == "1,000");
}

TEST_CASE("adapt metrics: accuracy, macro-F1 over the labels that occur, mean loss") {
  // targets 0 0 1 1, predictions 0 1 1 1: label 0 F1 = 2/3, label 1 F1 = 4/5.
  const Evaluation e = score({0, 1, 1, 1}, {0, 0, 1, 1}, {1, 2, 3, 4}, 3);
  CHECK(e.accuracy == doctest::Approx(0.75));
  CHECK(e.macro_f1 == doctest::Approx((2.0 / 3 + 0.8) / 2));
  CHECK(e.loss == doctest::Approx(2.5));
  CHECK(e.n == 4);
}

TEST_CASE("adapt frozen/moved: probe, probe-mlp, finetune, bitfit after 20 steps") {
  Fixture f;
  for (const std::string method : {"probe", "probe-mlp", "finetune", "bitfit"}) check_frozen_and_moved(f, method);
}

TEST_CASE("adapt frozen/moved: every registered method") {
  Fixture f;
  for (const std::string& method : method_names()) check_frozen_and_moved(f, method);
}

TEST_CASE("adapt trainable counts equal their formulas") {
  Fixture f;
  const int64_t C = 32, L = 2, H = 8;
  AdaptedModel probe = f.adapted("probe"), mlp = f.adapted("probe-mlp"), ft = f.adapted("finetune"), bitfit = f.adapted("bitfit");
  const int64_t base = probe.model->count_parameters();
  CHECK(trainable_report(probe).trainable == C * L + L);
  CHECK(trainable_report(mlp).trainable == C * H + H + H * L + L);
  CHECK(trainable_report(ft).trainable == base + C * L + L);
  CHECK(trainable_report(bitfit).trainable == sum_of_biases(*bitfit.model) + C * L + L);
  CHECK(trainable_report(bitfit).all == base + C * L + L);
  // GPT-2 biases: per block ln_1, c_attn (3C), attn.c_proj, ln_2, c_fc (4C), mlp.c_proj; then ln_f.
  CHECK(sum_of_biases(*bitfit.model) == 2 * (C + 3 * C + C + C + 4 * C + C) + C);
  AdaptedModel verbalized = f.adapted("bitfit", "verbalizer");
  CHECK(trainable_report(verbalized).trainable == sum_of_biases(*verbalized.model));
}

TEST_CASE("adapt save -> load: identical predictions, head included; the base directory is untouched") {
  Fixture f;
  const std::string base_weights = read_file(f.model_dir + "/model.safetensors");
  for (const std::string method : {"probe", "probe-mlp", "finetune", "bitfit"}) {
    CAPTURE(method);
    AdaptedModel a = f.adapted(method);
    train(a, f.encoded(a, "train"), {}, quick_run(10, default_run_options(method).lr));
    const std::string dir = f.scratch.path + "/" + method;
    save_adapter(a, dir);
    const AdaptedModel loaded = load_adapted(f.model_dir, dir, true);
    CHECK(loaded.head->config().type == a.head->config().type);
    CHECK(predict_logits(loaded, f.encoded(loaded, "test")) == predict_logits(a, f.encoded(a, "test")));
    CHECK_THROWS_AS(save_adapter(a, f.model_dir), InputError);
  }
  CHECK(read_file(f.model_dir + "/model.safetensors") == base_weights);
}

TEST_CASE("adapt: on the keyword task the loss falls and accuracy beats the majority class") {
  Fixture f;
  const std::vector<size_t> counts = data::label_counts(f.task.test, 2);
  const double majority = static_cast<double>(*std::max_element(counts.begin(), counts.end())) / f.task.test.size();
  for (const std::string method : {"probe", "probe-mlp", "finetune", "bitfit", "lora", "adapter"}) {
    CAPTURE(method);
    AdaptedModel a = f.adapted(method);
    const TrainResult r = train(a, f.encoded(a, "train"), f.encoded(a, "val"), quick_run(120, default_run_options(method).lr));
    auto mean = [](const std::vector<float>& v, size_t from, size_t to) {
      double s = 0;
      for (size_t i = from; i < to; i++) s += v[i];
      return s / static_cast<double>(to - from);
    };
    const double test_accuracy = evaluate(a, f.encoded(a, "test")).accuracy;
    CHECK(mean(r.losses, 110, 120) < 0.7 * mean(r.losses, 0, 10));
    CHECK(test_accuracy > majority + 0.1);
  }
}

TEST_CASE("adapt load: a missing head tensor, a stray tensor, a missing file are InputErrors naming the file") {
  Fixture f;
  AdaptedModel a = f.adapted("probe");
  const std::string dir = f.scratch.path + "/probe";
  save_adapter(a, dir);
  const std::string tensors_path = dir + "/adapter_model.safetensors";
  std::vector<NamedArray> tensors = read_safetensors(tensors_path);
  // Without the tensors_fingerprint (as in a config PEFT wrote), the tensor
  // file's contents are what is checked.
  json::Value config = json::parse(read_file(dir + "/adapter_config.json"));
  json::Value without_fingerprint = json::Value::object();
  for (const auto& [key, value] : config.members())
    if (key != "tensors_fingerprint") without_fingerprint.set(key, value);
  write_file_atomic(dir + "/adapter_config.json", without_fingerprint.dump(2));
  auto without = [&](const std::string& name) {
    std::vector<NamedArray> kept;
    for (const NamedArray& t : tensors)
      if (t.name != name) kept.push_back(t);
    return kept;
  };
  write_safetensors(tensors_path, without("head.weight"));
  CHECK_THROWS_WITH_AS(load_adapted(f.model_dir, dir, true), (tensors_path + ": tensor head.weight is missing").c_str(), InputError);
  std::vector<NamedArray> stray = tensors;
  stray.push_back({"transformer.wte.weight", {1}, {0.0f}});
  write_safetensors(tensors_path, stray);
  CHECK_THROWS_AS(load_adapted(f.model_dir, dir, true), InputError);
  ::unlink(tensors_path.c_str());
  CHECK_THROWS_WITH_AS(load_adapted(f.model_dir, dir, true), doctest::Contains(tensors_path.c_str()), InputError);
  ::unlink((dir + "/adapter_config.json").c_str());
  CHECK_THROWS_WITH_AS(load_adapted(f.model_dir, dir, true), doctest::Contains("adapter_config.json"), InputError);
}

TEST_CASE("adapt load: tensors that are not the ones the config was saved with are refused (a save cut short)") {
  Fixture f;
  const std::string dir = f.scratch.path + "/lora", other = f.scratch.path + "/lora-other";
  save_adapter(f.adapted("lora"), dir);
  AdaptedModel b = f.adapted("lora");
  for (const OptimParam& p : b.trainable_parameters()) {
    Tensor t = p.tensor;
    for (int64_t i = 0; i < t.numel(); i++) t.data()[i] += 0.5f;  // same shapes, other values
  }
  save_adapter(b, other);
  CHECK_NOTHROW(load_adapted(f.model_dir, dir, true));
  // The tensor file of another save under this config: what a kill between
  // the two writes of a re-run into the same --out leaves behind.
  write_file_atomic(dir + "/adapter_model.safetensors", read_file(other + "/adapter_model.safetensors"));
  CHECK_THROWS_WITH_AS(load_adapted(f.model_dir, dir, true),
                       doctest::Contains((dir + "/adapter_model.safetensors: is not the tensor file").c_str()), InputError);
}

TEST_CASE("adapt probe: features are cached, so training the head never runs the LM") {
  Fixture f;
  for (const std::string method : {"probe", "probe-mlp"}) {
    CAPTURE(method);
    std::vector<long long> forward_calls;
    for (long long steps : {20, 40}) {
      AdaptedModel a = f.adapted(method);
      long long calls = 0;
      a.model->block(0).attention_output_hook = [&calls](const Tensor& out, const ForwardOptions&) {
        calls++;
        return out;
      };
      train(a, f.encoded(a, "train"), f.encoded(a, "val"), quick_run(steps, 1e-2f));
      forward_calls.push_back(calls);
    }
    // One forward per evaluation batch of 32 while caching train (96) and val (24): 3 + 1.
    CHECK(forward_calls[0] == 4);
    CHECK(forward_calls[1] == 4);
  }
}

TEST_CASE("adapt heads: default per method, verbalizer scores the label words' first tokens") {
  Fixture f;
  const ModelConfig gpt = read_config(f.model_dir + "/config.json");
  ModelConfig encoder = gpt;
  encoder.is_causal = false;
  const std::vector<std::string> labels = f.task.label_names;
  CHECK(resolve_head({}, "prompt", gpt, labels).type == "verbalizer");
  CHECK(resolve_head({}, "prompt", encoder, labels).type == "linear");
  CHECK(resolve_head({}, "probe-mlp", gpt, labels).type == "mlp");
  CHECK(resolve_head({}, "bitfit", encoder, labels).pooling == Pooling::FirstToken);
  HeadRequest mean_classifier, verbalizer;
  mean_classifier.type = "classifier";
  mean_classifier.pooling = "mean";
  verbalizer.type = "verbalizer";
  CHECK(resolve_head(mean_classifier, "lora", gpt, labels).pooling == Pooling::Mean);
  CHECK_THROWS_AS(resolve_head(verbalizer, "prompt", encoder, labels), InputError);
  CHECK(resolve_head({}, "bitfit", gpt, labels).label_words == std::vector<std::string>{" bad", " good"});

  // The verbalizer's logits are the LM's logits at the last real token, at the label words' tokens.
  AdaptedModel a = f.adapted("bitfit", "verbalizer");
  const std::vector<std::vector<int>> words = label_word_tokens(a.head->config().label_words, a.tokenizer, 48);
  REQUIRE(words == std::vector<std::vector<int>>{{words[0][0]}, {words[1][0]}});  // one token each: the fast path
  const std::vector<int> tokens = {words[0][0], words[1][0]};
  const std::vector<EncodedExample> test = f.encoded(a, "test");
  const std::vector<std::vector<float>> scores = predict_logits(a, test);
  NoGradGuard no_grad;
  const std::vector<int>& ids = test[0].ids;
  Tensor lm = a.model->logits(a.model->forward(ids, 1, static_cast<int>(ids.size())));  // (1,T,V)
  const float* last = lm.data() + (ids.size() - 1) * static_cast<size_t>(lm.size(-1));
  CHECK(scores[0][0] == doctest::Approx(last[tokens[0]]).epsilon(1e-5));
  CHECK(scores[0][1] == doctest::Approx(last[tokens[1]]).epsilon(1e-5));
}

TEST_CASE("adapt token probe: depth and sentence-start properties, every layer, control labels by type, selectivity = difference") {
  CHECK(ends_sentence(" war."));
  CHECK(ends_sentence("?\")"));
  CHECK(ends_sentence("! "));
  CHECK_FALSE(ends_sentence(" Mr"));
  CHECK_FALSE(ends_sentence(","));
  CHECK_FALSE(ends_sentence(""));
  const std::vector<int> control = control_labels(5000, {0.75, 0.25}, 3);
  CHECK(control == control_labels(5000, {0.75, 0.25}, 3));
  CHECK(control != control_labels(5000, {0.75, 0.25}, 4));
  const double rate = static_cast<double>(std::count(control.begin(), control.end(), 1)) / 5000.0;
  CHECK(rate == doctest::Approx(0.25).epsilon(0.1));

  // Depth in the sentence, inside the window: "A b. C d e" -> 0 1 2 0 1 2
  // (the window's first token counts as a start, the token after "." as one).
  const std::vector<bool> ends_after = {false, false, true, false, false, false};
  const std::vector<int> want = {0, 1, 2, 0, 1, 2};
  for (int t = 0; t < 6; t++) CHECK(sentence_depth(ends_after, t) == want[static_cast<size_t>(t)]);

  Fixture f;
  const AdaptedModel a = f.adapted("probe");
  std::string text;
  for (const data::Example& e : f.task.train) text += e.text_a + ". ";
  const std::vector<int> tokens = a.tokenizer.encode(text);
  const int T = a.model->config().n_positions;
  TokenProbeOptions o;
  o.steps = 30;
  o.mlp_hidden = 8;
  o.seeds = 2;
  for (const char* property : {"depth", "start"}) {
    o.property = property;
    const ProbeTask task = stream_probe_task(a.tokenizer, tokens, T, o);
    // Every window is whole; the fifth, tenth, ... windows of the stream test.
    REQUIRE(!task.test.empty());
    CHECK(task.test[0].ids == std::vector<int>(tokens.begin() + 4 * T, tokens.begin() + 5 * T));
    CHECK(task.train[4].ids == std::vector<int>(tokens.begin() + 5 * T, tokens.begin() + 6 * T));
    CHECK(task.train[0].types == task.train[0].ids);  // the control's type is the token
    const std::vector<TokenProbeResult> results = run_token_probe({{"base", a.model.get()}}, task, o);
    REQUIRE(results.size() == 2 * 3);  // (embeddings + 2 blocks) × (linear, mlp)
    for (const TokenProbeResult& r : results) {
      CHECK(r.accuracy.values.size() == 2);
      CHECK(r.accuracy.mean() >= 0.0);
      CHECK(r.accuracy.mean() <= 1.0);
      for (size_t s = 0; s < 2; s++) CHECK(r.selectivity.values[s] == r.accuracy.values[s] - r.control_accuracy.values[s]);
    }
    CHECK(task.property.find(o.property == "depth" ? "into its sentence" : "starts a sentence") != std::string::npos);
    if (o.property == "depth") {  // the median splits the training positions into about equal classes
      long long deep = 0, n = 0;
      for (const ProbeWindow& w : task.train) {
        deep += std::count(w.labels.begin(), w.labels.end(), 1);
        n += static_cast<long long>(w.labels.size());
      }
      CHECK(static_cast<double>(deep) / static_cast<double>(n) == doctest::Approx(0.5).epsilon(0.3));
    }
  }
  o.property = "length";
  CHECK_THROWS_AS(stream_probe_task(a.tokenizer, tokens, T, o), InputError);
  CHECK_THROWS_AS(check_token_probe_options(o), InputError);
  o.property = "depth";
  o.train_tokens = T - 1;  // smaller than one window
  CHECK_THROWS_WITH_AS(stream_probe_task(a.tokenizer, tokens, T, o), doctest::Contains("--train-tokens"), InputError);
}

TEST_CASE("adapt lm_loss: an adapter's prefix shortens the windows so long texts fit; no method = the base's loss") {
  Fixture f;
  const AdaptedModel probe = f.adapted("probe");
  std::string text;
  for (const data::Example& e : f.task.train) text += e.text_a + ". ";
  const std::vector<int> tokens = probe.tokenizer.encode(text);
  REQUIRE(tokens.size() > 200);  // several windows of n_positions = 48
  const LMLoss base = lm_loss(probe, tokens);
  CHECK(base.tokens == static_cast<long long>(tokens.size()) - 1);
  NoGradGuard no_grad;
  const std::vector<int> first(tokens.begin(), tokens.begin() + 48), targets(tokens.begin() + 1, tokens.begin() + 49);
  CHECK(lm_loss(probe, std::vector<int>(tokens.begin(), tokens.begin() + 49)).loss ==
        doctest::Approx(probe.model->loss(first, targets, 1, 48).item()));
  const std::vector<std::string> names = method_names();
  if (std::find(names.begin(), names.end(), "prompt") != names.end()) {
    const AdaptedModel prompt = f.adapted("prompt");
    REQUIRE(prompt.prefix_length() == 4);
    CHECK(prompt.max_text_tokens() == 44);
    CHECK(lm_loss(prompt, tokens).tokens == static_cast<long long>(tokens.size()) - 1);
  }
}
