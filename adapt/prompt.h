// adapt/prompt.h — prompt tuning (Lester et al. 2021; PEFT's PromptTuning).
//
// k learnable vectors P (k, C), the "soft prompt", are placed before the
// token embeddings through ForwardOptions::input_prefix, so the residual
// stream is [P ; wte[ids]] + wpe, (B, k+T, C). As PEFT on GPT-2 the virtual
// tokens take positions 0..k-1 and the text k..k+T-1 (nn/gpt.h). The whole
// LM is frozen; only P trains (with the framework's head, the verbalizer by
// default, nothing else does: Lester's setting).
//
// Initialisation (MethodConfig::prompt_init), as Lester et al. describe
// their three (the prompt-initialisation ablation; paraphrased):
//   vocab   rows of wte for k tokens sampled, with replacement as PEFT's
//           SAMPLE_VOCAB, from the 5,000 most common tokens of the
//           pretraining data. Common by the base model directory's
//           pretraining.json "token_counts" (one count per token id in the
//           pretraining stream, written by `tinyadapt pretrain`); never a
//           special token, and when fewer than 5,000 tokens occur, every token
//           that occurs at least once. Without counts (a GPT-2 checkpoint)
//           every non-special token, uniformly (prompt_init_vocabulary below);
//   label   row l = the mean of wte over label l's word's tokens (a class
//           label of several tokens gets the average of their embeddings),
//           in label order and cut to k; when there are fewer labels than k
//           the other rows are vocab samples;
//   random  uniform in [-0.5, 0.5] (Lester's "random uniform").
// AttachContext carries the label words' tokens and the tokens to sample.
//
// The adapter file is PEFT's: one tensor `prompt_embeddings` [k, n_embd] and
// a PROMPT_TUNING adapter_config.json, so a PEFT prompt-tuning adapter for
// GPT-2 loads here and ours loads in PEFT.
#pragma once
#include <string>
#include <vector>

#include "adapt/method.h"
#include "data/bpe.h"

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
  // The tokens whose embeddings initialised the prompt rows: row j started as
  // the mean of wte over init_tokens()[j] — one sampled token, or a label
  // word's tokens. Empty for the random init.
  const std::vector<std::vector<int>>& init_tokens() const { return init_tokens_; }

 private:
  MethodConfig config_;
  GPT* model_ = nullptr;
  Tensor prompt_embeddings_;                     // (k, C), trainable
  std::vector<std::vector<int>> init_tokens_;    // (k) lists of ids, or empty
};

// The vocab init's pool (Lester et al.): the 5,000 most common tokens.
inline constexpr int kPromptInitCommonTokens = 5000;

// The `n` ids with the largest counts among those counted at least once,
// most frequent first (equal counts: the lower id first).
std::vector<int> most_frequent_tokens(const std::vector<int64_t>& counts, int n);

// model_dir/pretraining.json's "token_counts": one whole number >= 0 per
// token id, `vocab_size` of them. Empty when the file or the key is absent.
// InputError naming the file and the key for anything else.
std::vector<int64_t> read_token_counts(const std::string& model_dir, int vocab_size);

// The tokens the vocab init samples from (AttachContext::vocab_sample_ids):
// the kPromptInitCommonTokens most frequent non-special tokens by
// read_token_counts, or every non-special token when there are no counts.
std::vector<int> prompt_init_vocabulary(const std::string& model_dir, const data::Tokenizer& tokenizer);

// The adapter_config.json fields of PEFT's PromptLearningConfig, which prompt
// and prefix tuning share, for a causal LM: peft_type, task_type,
// num_virtual_tokens, token_dim, num_transformer_submodules (1: a decoder),
// num_attention_heads, num_layers, and inference_mode true, as PEFT's
// save_pretrained writes it.
json::Value prompt_learning_config(const std::string& peft_type, int num_virtual_tokens, const ModelConfig& model);

}  // namespace ta::adapt
