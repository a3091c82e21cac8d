// nn/config.h — the one configuration struct of the base models, and config.json.
//
// The same struct describes GPT-2 (is_causal = true) and the bidirectional
// encoder (is_causal = false): they share every layer and differ only in the
// attention mask and the training objective (next token vs masked LM).
//
// config.json uses Hugging Face GPT2Config's field names, so a directory we
// write loads in transformers' GPT2LMHeadModel and a real gpt2 / distilgpt2
// config.json reads here. Our one addition is "is_causal" (absent = true).
//
// Not here: the GPT2Config fields we do not implement. We write them with the
// values that make Hugging Face compute what we compute (activation_function
// "gelu_new", attn_pdrop 0) and reject a config that asks for another
// architecture (another activation, n_inner != 4C, unscaled attention). One
// exception: attn_pdrop (dropout on attention probabilities, 0.1 in gpt2's
// config) is accepted and not applied, because the fused attention kernel has
// no dropout; evaluation is unaffected, training regularises slightly less.
#pragma once
#include <string>

#include "data/json.h"

namespace ta {

struct ModelConfig {
  int vocab_size = 50257;           // V: rows of the token embedding wte (and of the tied LM head)
  int n_positions = 1024;           // longest sequence: rows of the position embedding wpe
  int n_embd = 768;                 // C: channels of the residual stream
  int n_layer = 12;                 // number of transformer blocks
  int n_head = 12;                  // H: attention heads; head size hs = C / H
  float layer_norm_epsilon = 1e-5f; // eps of every LayerNorm
  bool is_causal = true;            // true: GPT-2; false: the encoder (bidirectional, masked LM)
  float embd_pdrop = 0.0f;          // dropout on wte + wpe during training
  float resid_pdrop = 0.0f;         // dropout on each sublayer output before the residual add

  int head_size() const { return n_embd / n_head; }

  // Throws InputError "SOURCE: problem" for sizes that cannot build a model,
  // e.g. "config.json: n_embd 50 is not divisible by n_head 3".
  void validate(const std::string& source) const;
};

// The config.json object (Hugging Face GPT2Config field names plus is_causal).
json::Value config_to_json(const ModelConfig& config);
// Reads the fields above from a parsed config.json; missing optional fields
// take GPT-2's defaults (layer_norm_epsilon 1e-5, dropouts 0.1 as GPT2Config).
ModelConfig config_from_json(const json::Value& value, const std::string& source);

ModelConfig read_config(const std::string& path);                // parse + validate
void write_config(const std::string& path, const ModelConfig& config);  // atomic

}  // namespace ta
