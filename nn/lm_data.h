// nn/lm_data.h — batches of a token stream for language-model training and
// evaluation.
//
// Training draws B windows of T+1 tokens at uniformly random offsets: the
// first T are the inputs, the last T the next-token targets (as nanoGPT's
// get_batch). Evaluation cuts the stream into consecutive windows instead, so
// every token is predicted exactly once.
#pragma once
#include <vector>

#include "autograd/tensor.h"

namespace ta {

struct TokenBatch {
  int B = 0, T = 0;
  std::vector<int> inputs;   // (B, T)
  std::vector<int> targets;  // (B, T): inputs shifted by one; -100 where there is no next token
};

// B random windows; `tokens` must hold at least T+1 tokens.
TokenBatch sample_windows(const std::vector<int>& tokens, int B, int T, Rng& rng);

// Consecutive windows of at most T inputs covering tokens[0 .. n-1], each
// predicting the token after it; the last window may be shorter (its batch has
// B = 1 and a smaller T). Every token but the first is a target exactly once.
std::vector<TokenBatch> consecutive_windows(const std::vector<int>& tokens, int T);

// The Rng for step `step` of a run seeded with `seed`: a resumed run draws the
// same batches as an uninterrupted one.
Rng step_rng(uint64_t seed, long long step);

}  // namespace ta
