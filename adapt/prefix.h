// adapt/prefix.h — prefix tuning (Li & Liang 2021; PEFT's PrefixTuning).
//
// Every layer i gets k learnable key rows and k value rows, (k, C) each, put
// in front of that layer's own keys and values through
// ForwardOptions::prefix_keys[i] / prefix_values[i]: K = [Pk_i ; K],
// V = [Pv_i ; V], the queries unchanged, every prefix row visible to every
// query. The text then takes positions k..k+T-1, as Hugging Face GPT-2 given
// a past of length k (which is how PEFT feeds the prefix). The LM is frozen.
//
// All prefixes live in one table P (k, 2·L·C), PEFT's layout: row j holds,
// for layer 0, 1, ..., L-1, that layer's key then its value for virtual token
// j, each C wide with the heads side by side (head h at channels h·hs..),
// exactly as the model splits heads. (PEFT's get_prompt views the table as
// (B, k, 2L, H, hs) and permutes it to per-layer (2, B, H, k, hs) pairs:
// index 2i is layer i's key, 2i+1 its value.) So
//   prefix_keys[i]   = P[:, (2i)·C   : (2i+1)·C]   (k, C)
//   prefix_values[i] = P[:, (2i+1)·C : (2i+2)·C]   (k, C)
//
// Reparameterisation (MethodConfig::prefix_projection, Li & Liang §4.3):
// while training, P = MLP(P') with P' (k, C) and
//   MLP(x) = tanh(x W1 + b1) W2 + b2,  W1 (C, prefix_hidden), W2 (prefix_hidden, 2·L·C)
// as PEFT's PrefixEncoder. Only P' and the MLP train. Saving writes the P the
// MLP computes (folded), so the file has one format either way and loading
// never needs the MLP: after load_tensors the method holds the plain table.
//
// Initialisation as PEFT's (torch defaults): the plain table and P' are
// N(0, 1) (nn.Embedding); W1, b1 uniform in ±1/sqrt(C), W2, b2 uniform in
// ±1/sqrt(prefix_hidden) (nn.Linear).
//
// KV-cache generation (nn/generate.h) puts the prefix in the cache's first k
// rows: cache = [prefix ; past].
#pragma once
#include <string>
#include <vector>

#include "adapt/method.h"

namespace ta::adapt {

class PrefixTuning : public Method {
 public:
  explicit PrefixTuning(const MethodConfig& config);
  std::string name() const override { return "prefix"; }

  void attach(GPT& model, const AttachContext& context, Rng& rng) override;
  // options.prefix_keys / prefix_values: one (k, C) entry per layer, sliced
  // from prefix_table() (through the MLP when reparameterised; recorded on
  // the tape when training, so gradients reach P or P' and the MLP).
  void prepare(ForwardOptions& options, int batch) const override;

  std::vector<OptimParam> trainable_parameters() const override;
  // k·2·L·C; with an unfolded reparameterisation k·C + the MLP instead.
  int64_t added_parameters() const override;

  std::vector<NamedArray> save_tensors() const override;  // the folded P
  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override;
  json::Value peft_config() const override;

  // P (k, 2·L·C): the plain table, or the MLP applied to P'.
  Tensor prefix_table() const;
  bool reparameterised() const { return prefix_input_.defined(); }

 private:
  MethodConfig config_;
  GPT* model_ = nullptr;
  Tensor prefix_table_;  // (k, 2LC): trainable P when not reparameterised (or once folded)
  // The reparameterisation P = MLP(P'); undefined when off or folded.
  Tensor prefix_input_;                           // P' (k, C)
  Tensor encoder_in_weight_, encoder_in_bias_;    // W1 (C, hidden), b1 (hidden)
  Tensor encoder_out_weight_, encoder_out_bias_;  // W2 (hidden, 2LC), b2 (2LC)
};

}  // namespace ta::adapt
