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
// Two properties, computable from any text with no annotation. Like a
// part-of-speech tag, each depends on context, not on the token type:
//   depth (default)  is the token deep in its sentence: at least m tokens
//                    after the sentence's first token, where m is the median
//                    depth of the training positions, so the two classes are
//                    about equally common. Depth is counted inside the
//                    window the model sees (its first token counts as a
//                    sentence start), so the label uses only visible context.
//   start            does the token start a sentence. 97% of tokens do not,
//                    so accuracy sits near the majority and selectivity is
//                    hard to read; kept for comparison.
// A sentence ends with a token whose text ends with '.', '?' or '!' (closing
// quotes and brackets allowed after the mark). The control task, as in the
// paper, depends on the type only: each token type (BPE token, our "word
// type") gets a random label, 1 with probability equal to the property's
// base rate. A representation that encodes the context makes the property
// easy; one that encodes token identity makes the control easy; selectivity
// tells them apart.
//
// Features: the base model's last-layer hidden state at each position, over
// consecutive windows of n_positions tokens, computed once without a tape
// (the probe never runs the LM again). Every fifth window is a test window,
// the rest train windows, so both sets span the whole corpus. Probes: the linear
// and the one-hidden-layer MLP heads of adapt/head.h, trained with AdamW.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/bpe.h"
#include "nn/gpt.h"

namespace ta::adapt {

struct TokenProbeOptions {
  std::string property = "depth";  // "depth" | "start" (see above)
  long long train_tokens = 16384;  // positions used for training (at most)
  long long test_tokens = 4096;    // positions used for testing (at most)
  long long steps = 400;
  int batch = 64;
  float lr = 1e-2f;
  int mlp_hidden = 256;
  uint64_t seed = 1337;            // control labels, head init, batch order
};

struct TokenProbeResult {
  std::string probe;     // "linear" | "mlp"
  std::string property;  // in words, e.g. "the token is at least 12 tokens into its sentence"
  double accuracy = 0;          // on the property, test positions
  double control_accuracy = 0;  // on the control task, test positions
  double majority = 0;          // accuracy of always predicting the property's commoner class
  double selectivity() const { return accuracy - control_accuracy; }
};

// True when `previous_token_bytes` ends a sentence: its last byte that is not
// a closing quote, bracket or space is '.', '?' or '!'.
bool ends_sentence(const std::string& previous_token_bytes);

// The depth of position `t` of a window in its sentence: how many tokens
// since the sentence's first token, counting the window's first token as a
// start. ends_after[i] says whether window token i ends a sentence.
int sentence_depth(const std::vector<bool>& ends_after, int t);

// Per token type (id < vocab_size): the control label, 1 with probability
// `rate`, drawn from `seed`.
std::vector<int> control_labels(int vocab_size, double rate, uint64_t seed);

// Trains and scores the linear and the MLP probe on `tokens` (a token stream
// of the model's tokenizer). InputError when the stream is too short.
std::vector<TokenProbeResult> run_token_probe(const GPT& model, const data::Tokenizer& tokenizer,
                                              const std::vector<int>& tokens, const TokenProbeOptions& options);

}  // namespace ta::adapt
