// adapt/token_probe.h — a token-level probe with a control task (Hewitt &
// Liang 2019, "Designing and Interpreting Probes with Control Tasks").
//
// A probe's accuracy alone says little: a strong enough probe can memorise a
// label per word type whether or not the representation encodes the
// property. Hewitt & Liang therefore also train the same probe on a control
// task — labels drawn at random once per word type, with the real labels'
// distribution — and report selectivity = accuracy(property) −
// accuracy(control). A high accuracy with a low selectivity means the probe,
// not the representation, did the work.
//
// The property (computable from any text, no annotation needed): does this
// token start a sentence? True when the token before it ends with '.', '?'
// or '!' (closing quotes and brackets allowed after the mark). Like a
// part-of-speech tag it depends on context, not on the token type: the same
// " The" opens a sentence or follows a comma. The control task, as in the
// paper, depends on the type only: each token type (BPE token, our "word
// type") gets a random label, 1 with probability equal to the property's
// base rate. A representation that encodes the previous token's punctuation
// makes the property easy; one that encodes token identity makes the
// control easy; selectivity tells them apart.
//
// Features: the base model's last-layer hidden state at each position, over
// consecutive windows of n_positions tokens, computed once without a tape
// (the probe never runs the LM again). Train windows come from the first 80%
// of the token stream, test windows from the last 20%. Probes: the linear
// and the one-hidden-layer MLP heads of adapt/head.h, trained with AdamW.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/bpe.h"
#include "nn/gpt.h"

namespace ta::adapt {

struct TokenProbeOptions {
  long long train_tokens = 16384;  // positions used for training (at most)
  long long test_tokens = 4096;    // positions used for testing (at most)
  long long steps = 400;
  int batch = 64;
  float lr = 1e-2f;
  int mlp_hidden = 256;
  uint64_t seed = 1337;            // control labels, head init, batch order
};

struct TokenProbeResult {
  std::string probe;  // "linear" | "mlp"
  double accuracy = 0;          // on the property, test positions
  double control_accuracy = 0;  // on the control task, test positions
  double majority = 0;          // accuracy of always predicting the property's commoner class
  double selectivity() const { return accuracy - control_accuracy; }
};

// True when `previous_token_bytes` ends a sentence: its last byte that is not
// a closing quote, bracket or space is '.', '?' or '!'.
bool ends_sentence(const std::string& previous_token_bytes);

// Per token type (id < vocab_size): the control label, 1 with probability
// `rate`, drawn from `seed`.
std::vector<int> control_labels(int vocab_size, double rate, uint64_t seed);

// Trains and scores the linear and the MLP probe on `tokens` (a token stream
// of the model's tokenizer). InputError when the stream is too short.
std::vector<TokenProbeResult> run_token_probe(const GPT& model, const data::Tokenizer& tokenizer,
                                              const std::vector<int>& tokens, const TokenProbeOptions& options);

}  // namespace ta::adapt
