// nn/gpt.h — the base models: GPT-2, and the bidirectional encoder built from
// the same blocks (config.is_causal picks one).
//
// GPT-2 exactly (Radford et al. 2019; Hugging Face GPT2LMHeadModel; nanoGPT):
//   x = wte[ids] + wpe[positions]                         (B,T,C) learned positions
//   x = block_i(x) for i < n_layer                        pre-LN blocks (layers.h)
//   hidden = ln_f(x)                                      (B,T,C)
//   logits = hidden @ wte^T                               (B,T,V) LM head tied to wte
// Initialisation as GPT-2 / nanoGPT: weights N(0, 0.02), the two c_proj
// weights of each block N(0, 0.02/sqrt(2·n_layer)) (residual scaling), biases
// 0, LayerNorm weights 1, from a seeded ta::Rng.
//
// The encoder (is_causal = false) is the same network with bidirectional
// attention, trained with BERT's masked-LM objective (mask_tokens below). Its
// MLM head is the same tied projection hidden @ wte^T after ln_f: BERT adds a
// dense + GELU + LayerNorm transform before its tied decoder, which we omit so
// both bases share one checkpoint layout (Hugging Face GPT-2's) and one head.
//
// Positions: text token t sits at position P + k + t, where P is the length of
// the attention prefix (or of the KV cache) and k of the input prefix; input
// prefix row j sits at P + j. This is PEFT's convention for prompt tuning and
// Hugging Face GPT-2's for a past of length P (prefix tuning, generation).
// ForwardOptions::position_ids overrides this per row (mixed batches).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"

namespace ta {

// How a task head reads one feature vector per sequence.
enum class Pooling {
  LastToken,   // the last real (unpadded) text token: the GPT's summary
  FirstToken,  // the first text token: the encoder's [CLS]-style summary
  Mean,        // mean over the real text tokens
};

class GPT : public Module {
 public:
  // A model with GPT-2's initialisation drawn from Rng(seed). Validates `config`.
  // initialise = false leaves every parameter zero (load_model overwrites them all).
  explicit GPT(const ModelConfig& config, uint64_t seed = 0, bool initialise = true);

  const ModelConfig& config() const { return config_; }
  int n_layer() const { return config_.n_layer; }
  Block& block(int i) { return *blocks_[static_cast<size_t>(i)]; }

  // ids (B*T, row-major) -> hidden states after ln_f, (B, k+T, C) where k is
  // the input prefix length (0 without one). Positions: see the top of file.
  // options.layer_outputs, when set, also receives every layer's residual
  // stream before ln_f (layer 0 = embeddings, layer i = after block i).
  Tensor forward(const std::vector<int>& ids, int B, int T, const ForwardOptions& options = {}) const;
  // hidden (..., C) -> logits (..., V) through the tied head: hidden @ wte^T.
  Tensor logits(const Tensor& hidden) const;
  // --bf16: stores every frozen weight matrix (wte, the blocks' Linear
  // weights) in bfloat16 (autograd/kernels/gemm_bf16.h): half their memory,
  // and products at more than twice float32's rate where the CPU has
  // AVX512-BF16. Call it once the adaptation is attached (what trains is
  // then known), or load the model so (load_model's bf16_matrices); a cast
  // weight cannot be saved or trained afterwards. Returns the number of
  // values stored in bfloat16 (0: nothing is frozen).
  int64_t store_frozen_in_bf16();
  // The matrices that can be stored in bfloat16, by checkpoint key
  // ("h.0.attn.c_attn.weight"); store() gives one its bfloat16 values,
  // freezes it and frees its float32 storage.
  struct Bf16Slot {
    std::string key;
    Tensor* weight;
    std::shared_ptr<const Bf16Matrix>* bf16;
    void store(Bf16Matrix matrix) const;
  };
  std::vector<Bf16Slot> bf16_slots();
  // Mean cross-entropy of the logits at the B*T text positions against
  // `targets` (B*T; -100 = ignored). The caller shifts targets for the GPT
  // (targets[t] = ids[t+1]) and masks them for the encoder (mask_tokens).
  Tensor loss(const std::vector<int>& ids, const std::vector<int>& targets, int B, int T,
              const ForwardOptions& options = {}) const;
  // hidden (B, k+T, C) from forward(..., options) -> (B, C) features of the
  // text tokens, skipping the k input-prefix rows and honouring
  // options.padding_mask. Computed as one batched product weights @ hidden.
  Tensor pool(const Tensor& hidden, int B, int T, Pooling pooling, const ForwardOptions& options = {}) const;
  Pooling default_pooling() const { return config_.is_causal ? Pooling::LastToken : Pooling::FirstToken; }

  Embedding wte;  // (V, C) token embedding, also the LM head
  Embedding wpe;  // (n_positions, C)
  LayerNorm ln_f;

  // Gradient checkpointing (autograd/ops.h, checkpoint): when a tape is on,
  // each block keeps its input only and recomputes its activations in the
  // backward, with the same dropout masks. Less memory for one more forward
  // pass of the blocks; the same gradients. Off by default (--gradient-checkpointing).
  bool gradient_checkpointing = false;

 private:
  void initialise(uint64_t seed);
  Tensor embed(const std::vector<int>& ids, int B, int T, int first_position, const ForwardOptions& options) const;
  AttentionOptions shared_attention_options(int B, int T, int P, int k, const ForwardOptions& options) const;

  ModelConfig config_;
  std::vector<Block*> blocks_;  // owned through add_module ("transformer.h.i")
};

// BERT's masking for the masked-LM objective (Devlin et al. 2019, §3.1): each
// position whose id is not in `special_ids` is chosen with probability
// `mask_probability`; a chosen one becomes `mask_id` 80% of the time, a
// uniformly random id in [0, vocab_size) 10%, and stays unchanged 10%.
// targets hold the original id at chosen positions and -100 elsewhere.
struct MaskedTokens {
  std::vector<int> inputs, targets;
};
MaskedTokens mask_tokens(const std::vector<int>& ids, int vocab_size, int mask_id,
                         const std::vector<int>& special_ids, Rng& rng, float mask_probability = 0.15f);

}  // namespace ta
