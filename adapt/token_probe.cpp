// adapt/token_probe.cpp — see token_probe.h.
#include "adapt/token_probe.h"

#include <algorithm>
#include <functional>

#include "adapt/head.h"
#include "autograd/ops.h"
#include "nn/lm_data.h"
#include "nn/trainer.h"

namespace ta::adapt {

bool ends_sentence(const std::string& previous_token_bytes) {
  for (auto it = previous_token_bytes.rbegin(); it != previous_token_bytes.rend(); ++it) {
    if (*it == '"' || *it == '\'' || *it == ')' || *it == ']' || *it == ' ') continue;
    return *it == '.' || *it == '?' || *it == '!';
  }
  return false;
}

int sentence_depth(const std::vector<bool>& ends_after, int t) {
  int depth = 0;
  while (depth < t && !ends_after[static_cast<size_t>(t - depth - 1)]) depth++;
  return depth;
}

std::vector<int> control_labels(int vocab_size, double rate, uint64_t seed) {
  Rng rng(seed ^ 0xC0417011ull);
  std::vector<int> labels(static_cast<size_t>(vocab_size));
  for (int& label : labels) label = rng.uniform() < rate ? 1 : 0;
  return labels;
}

namespace {

// The probe's inputs: one row per position.
struct PositionFeatures {
  Tensor features;             // (N,C) last-layer hidden states
  std::vector<int> ids;        // (N) token ids
  std::vector<size_t> places;  // (N) index into the token stream
  std::vector<int> depths;     // (N) sentence_depth of each position in its window
};

// Hidden states (N, C) of up to `limit` positions, in windows of
// n_positions tokens, with each position's token id, its place in the stream
// (the start property reads the token before) and its sentence depth. Every
// fifth window (4, 9, 14, ...) is a test window, the others train windows:
// both sets span the whole corpus. (A split by position in the corpus would
// test on the most recent speeches only, whose shorter sentences shift the
// depth property's classes: 78% one class where training saw 50%.)
PositionFeatures hidden_states(const GPT& model, const data::Tokenizer& tokenizer, const std::vector<int>& tokens,
                               bool test_windows, long long limit) {
  NoGradGuard no_grad;
  const size_t T = static_cast<size_t>(model.config().n_positions);
  const int C = model.config().n_embd;
  PositionFeatures out;
  std::vector<float> values;
  for (size_t w = 0, start = 0; start + T <= tokens.size(); w++, start += T) {
    if ((w % 5 == 4) != test_windows) continue;
    if (static_cast<long long>(out.ids.size()) + static_cast<long long>(T) > limit) break;
    const std::vector<int> window(tokens.begin() + static_cast<long>(start), tokens.begin() + static_cast<long>(start + T));
    Tensor hidden = model.forward(window, 1, static_cast<int>(T));  // (1,T,C)
    values.insert(values.end(), hidden.data(), hidden.data() + hidden.numel());
    out.ids.insert(out.ids.end(), window.begin(), window.end());
    std::vector<bool> ends_after(T);
    for (size_t t = 0; t < T; t++) ends_after[t] = ends_sentence(tokenizer.id_to_bytes(window[t]));
    for (size_t t = 0; t < T; t++) {
      out.places.push_back(start + t);
      out.depths.push_back(sentence_depth(ends_after, static_cast<int>(t)));
    }
  }
  if (out.ids.empty())
    throw InputError("probe-tokens: the corpus is too short for a " + std::string(test_windows ? "test" : "training") +
                     " window of " + std::to_string(T) + " tokens (every fifth window tests)");
  out.features = Tensor::from({static_cast<int>(out.ids.size()), C}, values);
  return out;
}

std::vector<int> labels_of(const std::vector<int>& ids, const std::vector<int>& label_of_type) {
  std::vector<int> labels;
  for (int id : ids) labels.push_back(label_of_type[static_cast<size_t>(id)]);
  return labels;
}

// Trains one probe head on (train features, labels) and returns its test accuracy.
double probe_accuracy(const GPT& model, const std::string& type, const PositionFeatures& train_set,
                      const std::vector<int>& train_labels, const PositionFeatures& test_set,
                      const std::vector<int>& test_labels, const TokenProbeOptions& o) {
  HeadConfig config;
  config.type = type;
  config.hidden = o.mlp_hidden;
  config.label_names = {"no", "yes"};
  Rng init(o.seed);
  Head head(config, model.config().n_embd, {}, init);
  TrainerOptions t;
  t.steps = o.steps;
  t.lr = o.lr;
  t.warmup = o.steps / 10;
  t.adamw.weight_decay = 0.0f;
  Trainer trainer(head.trainable_parameters(), t);
  const int n = static_cast<int>(train_labels.size());
  for (long long step = 0; step < o.steps; step++) {
    Rng rng = step_rng(o.seed, step);
    std::vector<int> rows(static_cast<size_t>(o.batch)), targets;
    for (int& r : rows) r = rng.below(n);
    for (int r : rows) targets.push_back(train_labels[static_cast<size_t>(r)]);
    trainer.step(step, [&](int) {
      Tensor x = embedding(train_set.features, rows, Shape{o.batch});  // (B,C) rows of the cache
      return MicroBatch{cross_entropy(head.logits(model, x), targets), o.batch};
    });
  }
  NoGradGuard no_grad;
  Tensor logits = head.logits(model, test_set.features);  // (N,2)
  long long correct = 0;
  for (size_t i = 0; i < test_labels.size(); i++)
    correct += (logits.data()[2 * i + 1] > logits.data()[2 * i] ? 1 : 0) == test_labels[i];
  return static_cast<double>(correct) / static_cast<double>(test_labels.size());
}

}  // namespace

std::vector<TokenProbeResult> run_token_probe(const GPT& model, const data::Tokenizer& tokenizer,
                                              const std::vector<int>& tokens, const TokenProbeOptions& o) {
  if (o.property != "depth" && o.property != "start")
    throw InputError("probe-tokens: --property must be depth or start, got \"" + o.property + "\"");
  const PositionFeatures train_set = hidden_states(model, tokenizer, tokens, false, o.train_tokens);
  const PositionFeatures test_set = hidden_states(model, tokenizer, tokens, true, o.test_tokens);

  std::string property;
  std::function<int(const PositionFeatures&, size_t)> label;  // the property of position i of a set
  if (o.property == "start") {
    property = "the token starts a sentence";
    label = [&](const PositionFeatures& set, size_t i) {
      const size_t place = set.places[i];
      return place > 0 && ends_sentence(tokenizer.id_to_bytes(tokens[place - 1])) ? 1 : 0;
    };
  } else {
    std::vector<int> depths = train_set.depths;  // the median training depth splits the classes
    std::nth_element(depths.begin(), depths.begin() + static_cast<long>(depths.size() / 2), depths.end());
    const int threshold = std::max(1, depths[depths.size() / 2]);
    property = "the token is at least " + std::to_string(threshold) + " tokens into its sentence";
    label = [threshold](const PositionFeatures& set, size_t i) { return set.depths[i] >= threshold ? 1 : 0; };
  }
  auto labels_for = [&](const PositionFeatures& set) {
    std::vector<int> labels;
    for (size_t i = 0; i < set.ids.size(); i++) labels.push_back(label(set, i));
    return labels;
  };
  const std::vector<int> train_property = labels_for(train_set), test_property = labels_for(test_set);
  const double rate = static_cast<double>(std::count(train_property.begin(), train_property.end(), 1)) / static_cast<double>(train_property.size());
  const std::vector<int> control = control_labels(tokenizer.vocab_size(), rate, o.seed);
  const std::vector<int> train_control = labels_of(train_set.ids, control), test_control = labels_of(test_set.ids, control);
  const double test_rate = static_cast<double>(std::count(test_property.begin(), test_property.end(), 1)) / static_cast<double>(test_property.size());

  std::vector<TokenProbeResult> results;
  for (const char* type : {"linear", "mlp"}) {
    TokenProbeResult r;
    r.probe = type;
    r.property = property;
    r.accuracy = probe_accuracy(model, type, train_set, train_property, test_set, test_property, o);
    r.control_accuracy = probe_accuracy(model, type, train_set, train_control, test_set, test_control, o);
    r.majority = std::max(test_rate, 1.0 - test_rate);
    results.push_back(r);
  }
  return results;
}

}  // namespace ta::adapt
