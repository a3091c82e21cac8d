// adapt/prompt.h — prompt tuning (Lester et al. 2021; PEFT's PromptTuning).
//
// k learnable vectors P (k, C), the "soft prompt", are placed before the
// token embeddings through ForwardOptions::input_prefix, so the residual
// stream is [P ; wte[ids]] + wpe, (B, k+T, C). As PEFT on GPT-2 the virtual
// tokens take positions 0..k-1 and the text k..k+T-1 (nn/gpt.h). The whole
// LM is frozen; only P trains (with the framework's head, the verbalizer by
// default, nothing else does: Lester's setting).
//
// Initialisation (MethodConfig::prompt_init), Lester §3.2:
//   vocab   rows of wte for k tokens drawn uniformly from [0, vocab_size)
//           (AttachContext::vocab_size: the real tokens, no specials), with
//           replacement as PEFT's SAMPLE_VOCAB;
//   label   rows of wte for the label words' tokens, concatenated in label
//           order and cut to k; when there are fewer than k such tokens the
//           rest are vocab samples (Lester; PEFT's TEXT init would instead
//           repeat the text);
//   random  uniform in [-0.5, 0.5] (Lester's "random uniform").
//
// The adapter file is PEFT's: one tensor `prompt_embeddings` [k, n_embd] and
// a PROMPT_TUNING adapter_config.json, so a PEFT prompt-tuning adapter for
// GPT-2 loads here and ours loads in PEFT.
#pragma once
#include <string>
#include <vector>

#include "adapt/method.h"

namespace ta::adapt {

class PromptTuning : public Method {
 public:
  explicit PromptTuning(const MethodConfig& config);
  std::string name() const override { return "prompt"; }

  void attach(GPT& model, const AttachContext& context, Rng& rng) override;
  // options.input_prefix = P (k, C), shared by every row of the batch.
  void prepare(ForwardOptions& options, int batch) const override;

  std::vector<OptimParam> trainable_parameters() const override;
  int64_t added_parameters() const override;  // k·C

  std::vector<NamedArray> save_tensors() const override;
  void load_tensors(const std::vector<NamedArray>& tensors, const std::string& source) override;
  json::Value peft_config() const override;

  const Tensor& prompt_embeddings() const { return prompt_embeddings_; }  // (k, C)
  // The token ids whose embeddings initialised the prompt rows (vocab and
  // label inits; empty for random). Row j started as wte[init_token_ids()[j]].
  const std::vector<int>& init_token_ids() const { return init_token_ids_; }

 private:
  MethodConfig config_;
  GPT* model_ = nullptr;
  Tensor prompt_embeddings_;          // (k, C), trainable
  std::vector<int> init_token_ids_;   // (k) or empty
};

// The adapter_config.json fields of PEFT's PromptLearningConfig, which prompt
// and prefix tuning share, for a causal LM: peft_type, task_type,
// num_virtual_tokens, token_dim, num_transformer_submodules (1: a decoder),
// num_attention_heads, num_layers, and inference_mode true, as PEFT's
// save_pretrained writes it.
json::Value prompt_learning_config(const std::string& peft_type, int num_virtual_tokens, const ModelConfig& model);

}  // namespace ta::adapt
