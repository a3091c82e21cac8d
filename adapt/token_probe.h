// adapt/token_probe.h — token-level probes of every layer, with a control
// task (Hewitt & Liang 2019, "Designing and Interpreting Probes with Control
// Tasks").
//
// Probing as analysis: if a small classifier reading a layer's hidden state
// can predict a property of the token (its part of speech), the
// representation stores that property. A probe's accuracy alone says little,
// though: a strong enough probe can memorise a label per word type whether or
// not the representation encodes the property. Hewitt & Liang therefore also
// train the same probe on a control task — labels drawn at random once per
// word type, with the real labels' distribution — and report selectivity =
// accuracy(property) − accuracy(control). A high accuracy with a low
// selectivity means the probe, not the representation, did the work.
//
// Properties (TokenProbeOptions::property):
//   pos     the coarse part of speech (data/brown.h: ten classes) of the word
//           a token ends, on the Brown corpus. A word's tag goes on the token
//           holding its last byte (its last BPE piece); its other pieces, and
//           a token ending inside a word or on a space, are not probed
//           (data::last_subtoken_words). Control type: the lower-cased word.
//           Train positions come from Brown's non-test files, test positions
//           from the held-out files (data::is_brown_probe_test), windows taken
//           in rounds: the first window of every file, then the second, ...,
//           files ordered by number, then genre (ca02, cb02, ..., cr02, ca03,
//           ...), so a few hundred windows already span all 15 genres.
//   depth   is the token deep in its sentence: at least m tokens after the
//           sentence's first token, m the median depth of the training
//           positions, so the two classes are about equally common. Counted
//           inside the window the model sees (its first token counts as a
//           sentence start).
//   start   does the token start a sentence (97% do not: accuracy sits near
//           the majority; kept for comparison).
// depth and start read any text (a token stream): a sentence ends with a
// token whose text ends with '.', '?' or '!' (closing quotes and brackets
// allowed after the mark); windows are consecutive n_positions-token cuts,
// every fifth one (4, 9, 14, ...) a test window, so both sets span the whole
// corpus. Control type: the BPE token.
//
// Features: the residual stream of every layer (0 = the embeddings, i = after
// block i; GPT::forward's layer_outputs), computed once per base without a
// tape and reused by every probe and seed, then standardised per dimension
// with the training positions' mean and sd (the embeddings' scale is ~0.02,
// the last block's ~1). Probes: the linear and the one-hidden-layer MLP heads
// of adapt/head.h, trained with AdamW on batches drawn from the training
// positions. Each seed redraws the control labels, the heads' initialisation
// and the batch order; bases (pretrained, untrained) share the positions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "adapt/report.h"
#include "data/bpe.h"
#include "data/brown.h"
#include "nn/gpt.h"

namespace ta::adapt {

struct TokenProbeOptions {
  std::string property = "depth";  // "pos" | "depth" | "start" (see above)
  long long train_tokens = 16000;  // probed positions for training (at most)
  long long test_tokens = 6000;    // probed positions for testing (at most)
  long long steps = 400;
  int batch = 64;
  float lr = 1e-2f;
  int mlp_hidden = 256;
  long long seeds = 1;             // runs with seeds seed, seed+1, ...: mean ± sd
  uint64_t seed = 1337;            // control labels, head init, batch order
};

// InputError naming the option: a property that is not pos, depth or start,
// --seeds below 1, a steps, batch, hidden width or learning rate that is not positive.
void check_token_probe_options(const TokenProbeOptions& options);

// One window the model reads, and what the probe is asked at each position.
struct ProbeWindow {
  std::vector<int> ids;     // (T) token ids, T <= n_positions
  std::vector<int> labels;  // (T) the property's class; -1 = not probed
  std::vector<int> types;   // (T) control-task type in [0, ProbeTask::n_types); -1 where not probed
};

// How many positions of `window` (of all `windows`) are probed (label >= 0).
long long probed_count(const ProbeWindow& window);
long long probed_count(const std::vector<ProbeWindow>& windows);

// The positions of a property's probe, labelled: built from a tokenizer and
// data, the same for every base that shares the tokenizer.
struct ProbeTask {
  std::string property;                  // in words: "the coarse part of speech of the word a token ends"
  std::vector<std::string> class_names;  // labels are indices into it
  std::vector<ProbeWindow> train, test;
  int n_types = 0;
  std::string control;                   // the control's type in words: "a random tag per word type"
};

// depth or start on a token stream of `tokenizer` (InputError for another
// property, or a stream without a full training and test window).
ProbeTask stream_probe_task(const data::Tokenizer& tokenizer, const std::vector<int>& tokens, int n_positions,
                            const TokenProbeOptions& options);
// pos on Brown files (InputError when they hold no train or no test file).
ProbeTask pos_probe_task(const data::Tokenizer& tokenizer, const std::vector<data::BrownFile>& files,
                         int n_positions, const TokenProbeOptions& options);

// A base model to probe, and what to call it in the results.
struct ProbeBase {
  std::string name;  // "pretrained", "untrained"
  const GPT* model = nullptr;
};

struct TokenProbeResult {
  std::string base;
  int layer = 0;      // 0 = the embeddings, i = after block i
  std::string probe;  // "linear" | "mlp"
  Stat accuracy;          // on the property, test positions, over seeds
  Stat control_accuracy;  // on the control task
  Stat selectivity;       // accuracy − control accuracy, per seed
  double majority = 0;    // always predicting the training positions' commonest class, on the test positions
};

// For each base, layer and probe (in that order): trains on task.train and
// scores on task.test, options.seeds times.
std::vector<TokenProbeResult> run_token_probe(const std::vector<ProbeBase>& bases, const ProbeTask& task,
                                              const TokenProbeOptions& options);

// Per type (0 .. n_types-1): a control label drawn from `distribution`
// (class probabilities), seeded.
std::vector<int> control_labels(int n_types, const std::vector<double>& distribution, uint64_t seed);

// True when `previous_token_bytes` ends a sentence: its last byte that is not
// a closing quote, bracket or space is '.', '?' or '!'.
bool ends_sentence(const std::string& previous_token_bytes);

// The depth of position `t` of a window in its sentence: how many tokens
// since the sentence's first token, counting the window's first token as a
// start. ends_after[i] says whether window token i ends a sentence.
int sentence_depth(const std::vector<bool>& ends_after, int t);

}  // namespace ta::adapt
