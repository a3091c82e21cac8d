// nn/generate.cpp — see generate.h.
#include "nn/generate.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "data/io.h"

namespace ta {

int sample_token(const std::vector<float>& logits, float temperature, int top_k, Rng& rng) {
  if (temperature <= 0.0f) return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  float threshold = -INFINITY;  // logits below it are excluded (top-k)
  if (top_k > 0 && top_k < static_cast<int>(logits.size())) {
    std::vector<float> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
    threshold = sorted[static_cast<size_t>(top_k - 1)];
  }
  float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> weights(logits.size(), 0.0);  // unnormalised softmax of logits / temperature
  double total = 0;
  for (size_t v = 0; v < logits.size(); v++)
    if (logits[v] >= threshold) total += weights[v] = std::exp((logits[v] - max_logit) / temperature);
  double target = rng.uniform() * total;
  for (size_t v = 0; v < logits.size(); v++) {
    target -= weights[v];
    if (target < 0 && weights[v] > 0) return static_cast<int>(v);
  }
  return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());  // rounding at the end
}

// The logits (V) of the last row of hidden (1, L, C).
static std::vector<float> last_logits(const GPT& model, const Tensor& hidden) {
  int last = hidden.size(1) - 1;
  return model.logits(slice(hidden, 1, last, last + 1)).to_vector();  // (1,1,V)
}

// A tensor of shape (P,C) or (1,P,C) as (1,P,C).
static Tensor as_batch_of_one(const Tensor& t) {
  return t.rank() == 2 ? reshape(t, {1, t.size(0), t.size(1)}) : t;
}

// Runs the model with a KV cache, carrying it across steps.
class CachedRunner {
 public:
  CachedRunner(const GPT& model, const ForwardOptions& options) : model_(model), options_(options) {}

  // Logits for the next token after `window` (the tokens conditioned on).
  // `window_shifted` says the window no longer starts where the cache does.
  std::vector<float> step(const std::vector<int>& window, bool window_shifted) {
    if (window_shifted || cached_tokens_ == 0) reset();
    std::vector<int> fresh(window.begin() + cached_tokens_, window.end());
    ForwardOptions step_options;
    step_options.cache = &cache_;
    step_options.row_tags = options_.row_tags;
    if (cached_tokens_ == 0) step_options.input_prefix = options_.input_prefix;
    Tensor hidden = model_.forward(fresh, 1, static_cast<int>(fresh.size()), step_options);  // (1,k+T,C)
    cached_tokens_ = window_shifted ? 0 : static_cast<int>(window.size());
    return last_logits(model_, hidden);
  }

 private:
  void reset() {  // the cache holds the attention prefix only: [prefix ; nothing yet]
    cache_ = KVCache{};
    cache_.grow_in_place = true;
    for (size_t i = 0; i < options_.prefix_keys.size(); i++) {
      cache_.keys.push_back(as_batch_of_one(options_.prefix_keys[i]));
      cache_.values.push_back(as_batch_of_one(options_.prefix_values[i]));
    }
    cached_tokens_ = 0;
  }

  const GPT& model_;
  const ForwardOptions& options_;
  KVCache cache_;
  int cached_tokens_ = 0;  // how many tokens of the window the cache holds
};

static void check_generation_inputs(const GPT& model, const std::vector<int>& prompt, const ForwardOptions& options) {
  if (!model.config().is_causal) throw InputError("generate: the model is an encoder (is_causal false); it cannot generate");
  if (prompt.empty()) throw InputError("generate: the prompt is empty");
  if (options.cache || !options.padding_mask.empty() || !options.prefix_mask.empty())
    throw std::invalid_argument("generate: options may not carry a cache or masks");
}

std::vector<int> generate(const GPT& model, const std::vector<int>& prompt, const GenerateOptions& generation,
                          const ForwardOptions& options) {
  check_generation_inputs(model, prompt, options);
  NoGradGuard no_grad;
  int prefix_length = (options.prefix_keys.empty() ? 0 : options.prefix_keys[0].size(-2)) +
                      (options.input_prefix.defined() ? options.input_prefix.size(-2) : 0);
  size_t window_size = static_cast<size_t>(model.config().n_positions - prefix_length);
  if (model.config().n_positions <= prefix_length) throw InputError("generate: the prefix fills the whole context");

  Rng rng(generation.seed);
  CachedRunner cached(model, options);
  std::vector<int> tokens = prompt, generated;
  for (int step = 0; step < generation.max_new_tokens; step++) {
    bool shifted = tokens.size() > window_size;
    std::vector<int> window(tokens.end() - static_cast<long>(std::min(tokens.size(), window_size)), tokens.end());
    std::vector<float> logits;
    if (generation.use_cache) {
      logits = cached.step(window, shifted);
    } else {
      logits = last_logits(model, model.forward(window, 1, static_cast<int>(window.size()), options));
    }
    int next = sample_token(logits, generation.temperature, generation.top_k, rng);
    tokens.push_back(next);
    generated.push_back(next);
    if (generation.on_token && !generation.on_token(next)) break;
  }
  return generated;
}

}  // namespace ta
