// nn/generate.h — sampling text from a causal model, with a KV cache.
//
// Each step feeds the tokens so far, takes the logits of the last position,
// and samples the next token: greedy (argmax) at temperature 0, otherwise
// from softmax(logits / temperature) restricted to the top_k largest logits
// (top_k 0 = the whole vocabulary), as nanoGPT's sample.py.
//
// The KV cache (layers.h, KVCache) keeps every layer's keys and values of the
// positions already processed, (1, P, C), and is passed to the model as the
// attention prefix, so a step runs the network on the one new token only and
// positions continue from the cache length. A user's attention prefix
// (prefix tuning) is the cache's first P rows: cache = [prefix ; past]. An
// input prefix (prompt tuning) is fed with the first step and cached like the
// text. With and without the cache the tokens are the same (bitwise at
// temperature 0 up to float summation order in the kernels).
//
// When the sequence no longer fits in n_positions, generation conditions on
// the most recent tokens that fit (as nanoGPT crops to block_size); the
// positions of that window shift each step, so the cache cannot be reused and
// each such step re-runs the window.
//
// Not here: batched generation, beam search, repetition penalties.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "nn/gpt.h"

namespace ta {

struct GenerateOptions {
  int max_new_tokens = 64;
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = no top-k restriction
  uint64_t seed = 0;         // the sampling Rng's seed
  bool use_cache = true;
  // Called with each new token as soon as it is chosen (streaming output);
  // returning false stops generation (an end-of-text token, say).
  std::function<bool(int token)> on_token;
};

// Returns the new tokens (not the prompt). `prompt` must be non-empty;
// `options` may carry an input prefix and per-layer attention prefixes of
// shape (k, C) / (P, C) or batch 1, and no masks or cache.
std::vector<int> generate(const GPT& model, const std::vector<int>& prompt, const GenerateOptions& generation,
                          const ForwardOptions& options = {});

// Picks one token from logits (V): argmax at temperature 0 (the first of
// equal maxima), else a draw from the tempered, top-k-restricted softmax.
int sample_token(const std::vector<float>& logits, float temperature, int top_k, Rng& rng);

}  // namespace ta
