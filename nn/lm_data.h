// nn/lm_data.h — batches of a token stream for language-model training and
// evaluation.
//
// Training draws B windows of T+1 tokens at uniformly random offsets: the
// first T are the inputs, the last T the next-token targets (as nanoGPT's
// get_batch). Evaluation cuts the stream into consecutive windows instead, so
// every token is predicted exactly once.
#pragma once
#include <functional>
#include <vector>

#include "autograd/tensor.h"
#include "nn/gpt.h"

namespace ta {

struct TokenBatch {
  int B = 0, T = 0;
  std::vector<int> inputs;   // (B, T)
  std::vector<int> targets;  // (B, T): inputs shifted by one; -100 where there is no next token
};

// B random windows; `tokens` must hold at least T+1 tokens.
TokenBatch sample_windows(const std::vector<int>& tokens, int B, int T, Rng& rng);

// Rows [first, end) of a batch: one rank's shard of it under MPI (nn/distributed.h).
TokenBatch batch_rows(const TokenBatch& batch, int first, int end);

// Consecutive windows of at most T inputs covering tokens[0 .. n-1], each
// predicting the token after it; the last window may be shorter (its batch has
// B = 1 and a smaller T). Every token but the first is a target exactly once.
std::vector<TokenBatch> consecutive_windows(const std::vector<int>& tokens, int T);

struct LMLoss {
  double loss = 0;       // mean next-token cross-entropy, nats
  long long tokens = 0;  // predicted tokens
};

// Mean next-token loss of a causal model over `tokens`, cut into consecutive
// windows of at most `window` inputs (each token predicted once). options_for(B)
// gives a window's forward options (an adapter's prefix); none = the plain model.
// InputError for an encoder, which has no next-token loss.
LMLoss windowed_lm_loss(const GPT& model, const std::vector<int>& tokens, int window,
                        const std::function<ForwardOptions(int B)>& options_for = nullptr);

// The Rng for step `step` of a run seeded with `seed`: a resumed run draws the
// same batches as an uninterrupted one.
Rng step_rng(uint64_t seed, long long step);

}  // namespace ta
