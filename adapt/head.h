// adapt/head.h — task heads: what turns the base model's hidden states into
// one score per label.
//
// Three kinds, all reading one pooled feature vector per sequence (B,C):
//   linear      logits = f W + b                         W (C,L), b (L)
//               (a linear probe; the classifier of fine-tuning, BitFit, LoRA, adapters)
//   mlp         logits = act(f W1 + b1) W2 + b2          W1 (C,H), W2 (H,L); act ReLU or GELU
//               (the one-hidden-layer MLP probe of Hewitt & Liang)
//   verbalizer  logits_l = log p(w_l | x)                w_l label l's word as tokens
//               The log-probability of each label word's whole token
//               sequence after the text (lm-eval-harness's rule;
//               adapt/verbalizer.h). When every word is one token this is
//               f E[w_l]^T (E = wte, the tied LM head) up to a per-row
//               constant: the fast path. It has no parameters of its own, so
//               prompt and prefix tuning can train nothing but the prompt /
//               prefix (Lester et al. 2021, §2). GPT only: pooling is always
//               the last real token.
//
// Pooling (GPT::pool): the last real token (GPT), the first token (encoder),
// or the mean of the real tokens.
//
// Saved with the adapter under "head.*" (adapt/README.md): linear
// head.weight / head.bias; mlp head.hidden.weight, head.hidden.bias,
// head.out.weight, head.out.bias; verbalizer head.label_tokens (the words'
// token ids as floats: (L) when every word is one token, else (L,M) padded
// with −1; checked against the tokenizer on load). Weights are stored
// [in, out] as the rest of the model. load_tensors never falls back to a
// fresh initialisation: a missing head tensor is an InputError.
#pragma once
#include <string>
#include <vector>

#include "adapt/verbalizer.h"
#include "data/json.h"
#include "nn/gpt.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

namespace ta::adapt {

struct HeadConfig {
  std::string type = "linear";         // linear | mlp | verbalizer
  Pooling pooling = Pooling::LastToken;
  int hidden = 256;                    // mlp: hidden units
  std::string activation = "relu";     // mlp: relu | gelu
  std::vector<std::string> label_names;
  std::vector<std::string> label_words;  // verbalizer: one word per label, e.g. " spam"
  // The adapter directory whose head this one's weights were copied from
  // before training (--init-head, adapt/head_init.h; LP-FT); "" = a fresh head.
  // Provenance only: saved and read back, never acted on.
  std::string initialized_from;
};

std::string pooling_name(Pooling pooling);  // "last" | "first" | "mean"
Pooling pooling_from_name(const std::string& name, const std::string& source);

json::Value head_config_to_json(const HeadConfig& config);
HeadConfig head_config_from_json(const json::Value& value, const std::string& source);

class Head : public Module {
 public:
  // `label_tokens`: for the verbalizer, each label word's tokens
  // (label_word_tokens); ignored by the other kinds. Weights drawn from
  // `rng`: N(0, 0.02) as GPT-2's initializer_range, biases zero.
  Head(const HeadConfig& config, int n_embd, std::vector<std::vector<int>> label_tokens, Rng& rng);

  const HeadConfig& config() const { return config_; }
  int num_labels() const { return static_cast<int>(config_.label_names.size()); }
  // Records where this head's weights came from (HeadConfig::initialized_from).
  void set_initialized_from(const std::string& adapter_dir) { config_.initialized_from = adapter_dir; }

  // The pooling features() applies: the verbalizer reads the last token's LM
  // logits whatever config().pooling says.
  Pooling pooling() const { return config_.type == "verbalizer" ? Pooling::LastToken : config_.pooling; }
  // A verbalizer with a word of two or more tokens: its logits continue the
  // text, so the text pass must keep its keys (forward_keeping_keys).
  bool needs_text_keys() const { return continuation_positions() > 0; }
  // Positions a text must leave free for the label words after it (0 for
  // every head but a verbalizer with multi-token words).
  int continuation_positions() const { return adapt::continuation_positions(label_tokens_); }

  // hidden (B,k+T,C) from GPT::forward with `options` -> features (B,C).
  Tensor features(const GPT& model, const Tensor& hidden, int B, int T, const ForwardOptions& options) const;
  // features (R,C) -> label logits (R,L). When needs_text_keys(), `keys` is
  // the text pass's and `rows` says which of its rows the features are
  // (empty: rows 0..R-1).
  Tensor logits(const GPT& model, const Tensor& features, const TextKeys* keys = nullptr,
                const std::vector<int>& rows = {}) const;

  // Trainable tensors under their saved names ("head.weight", ...).
  std::vector<OptimParam> trainable_parameters() const;
  std::vector<NamedArray> save_tensors() const;
  // InputError naming `source` on a missing tensor, a wrong shape, or
  // verbalizer tokens that differ from the ones this head was built with
  // (a file from before whole-word scoring, holding one token per
  // multi-token word, among them).
  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source);

 private:
  HeadConfig config_;
  std::vector<std::vector<int>> label_tokens_;  // verbalizer: (L) words of tokens
  Tensor weight, bias;          // linear (C,L),(L); mlp's first layer (C,H),(H)
  Tensor out_weight, out_bias;  // mlp's second layer (H,L),(L)
};

}  // namespace ta::adapt
