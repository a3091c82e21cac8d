// nn/layers.h — the layers of GPT-2, each a Module over one fused op, and the
// per-call ForwardOptions that carry the extension points.
//
//   Linear     y = x W + b, W stored [in, out] as Hugging Face's Conv1D   (ta::linear)
//   Embedding  rows of a table picked by ids                               (ta::embedding)
//   LayerNorm  normalise the last axis, then scale and shift               (ta::layernorm)
//   MLP        c_proj(gelu_tanh(c_fc(x))), hidden width 4C                  (GPT-2's MLP)
//   Attention  c_proj(attention(c_attn(x))), qkv in one (B,T,3C) tensor     (ta::attention)
//   Block      pre-LN: h = x + attn(ln_1(x)); out = h + mlp(ln_2(h))       (GPT-2's Block)
//
// Extension points (nn/ names no adaptation method; adapt/ attaches here):
//   - ForwardOptions: per-call input prefix, per-layer attention prefix K/V,
//     masks, KV cache, dropout switch and per-row tags (see below);
//   - Linear::output_delta: a function whose result is added to the output
//     (LoRA adds (alpha/r)·B(A x));
//   - Block::attention_output_hook / mlp_output_hook: a function that maps a
//     sublayer's output to the value added to the residual stream (Houlsby
//     adapters: h -> h + W_up σ(W_down h)).
// Everything per call lives in ForwardOptions, never in the modules, so one
// batch may give each row its own prefix.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "autograd/kernels/gemm_bf16.h"
#include "autograd/ops.h"
#include "nn/module.h"

namespace ta {

// The keys and values of every position seen so far, per layer (generation).
struct KVCache {
  std::vector<Tensor> keys, values;  // n_layer entries, each (B, P, C); undefined while empty
  // Generation sets grow_in_place: a step then writes its keys and values
  // into spare rows of a buffer (B, capacity, C) that doubles when full, and
  // rows_used[layer] says how many rows hold keys. Otherwise (and whenever
  // a tape records: an in-place write is not on it) each step concatenates
  // a new (B, P+T, C) tensor, which copies the whole cache and, for every new
  // size, takes a new buffer: quadratic in the number of tokens, in time and
  // in the pool's memory.
  bool grow_in_place = false;
  std::vector<int> rows_used;  // per layer, once grown in place; empty before
  int rows(size_t layer) const {
    if (layer >= keys.size() || !keys[layer].defined()) return 0;
    return rows_used.empty() ? keys[layer].size(-2) : rows_used[layer];
  }
  int length() const { return rows(0); }
};

struct ForwardOptions {
  // Extension point 1 — input prefix (prompt tuning): (k, C) shared by every
  // row or (B, k, C), placed before the token embeddings, so the stream is
  // (B, k+T, C). As PEFT on GPT-2, the prefix rows get position embeddings
  // too: they take positions 0..k-1 and the text k..k+T-1 (shifted by P below).
  Tensor input_prefix;
  // Extension point 2 — attention prefix (prefix tuning): for every layer i,
  // prefix_keys[i] / prefix_values[i] of shape (P, C) or (B, P, C) are put in
  // front of that layer's keys and values. As Hugging Face GPT-2 given a past
  // of length P, positions then start at P. Empty, or one entry per layer.
  std::vector<Tensor> prefix_keys, prefix_values;
  // Which keys each row may attend to (1 = yes): padding_mask (B, T) for the
  // text tokens; prefix_mask (B, P+k) for the attention prefix then the input
  // prefix (a mixed batch whose rows use prefixes of different lengths).
  // Empty = every key visible.
  std::vector<uint8_t> padding_mask;
  std::vector<uint8_t> prefix_mask;
  // KV cache (generation): when set, each layer's attention prefix is the
  // cache (not prefix_keys), the step's own K and V are appended to it, and
  // positions continue from cache->length().
  KVCache* cache = nullptr;
  // Training: dropout is applied only when an Rng is given.
  Rng* dropout_rng = nullptr;
  // Per-row positions (B, k+T) of the input-prefix and text rows, replacing
  // the default P + index above; each must be in [0, n_positions). A mixed
  // batch whose rows have prefixes of different lengths, or left padding,
  // gives each row the positions it would have alone (adapt/serving.h), as
  // Hugging Face's position_ids. Empty = the default.
  std::vector<int> position_ids;
  // One integer per batch row that hooks may read (e.g. which adapter serves
  // each row of a mixed batch); nn/ itself never reads it.
  std::vector<int> row_tags;
  // Analysis (probing each layer): when set, GPT::forward replaces its
  // contents with the residual stream after the embeddings and after each
  // block, n_layer + 1 tensors (B,k+T,C), none through ln_f. Recorded on the
  // tape like any other value when one is active.
  std::vector<Tensor>* layer_outputs = nullptr;
};

// Applies inverted dropout when options.dropout_rng is set, else returns x.
Tensor dropout_if_training(const Tensor& x, float p, const ForwardOptions& options);

class Linear : public Module {
 public:
  Linear(int in_features, int out_features);
  // x (..., in) -> (..., out), plus the update (low_rank, else output_delta) when set.
  Tensor forward(const Tensor& x, const ForwardOptions& options) const;

  Tensor weight;  // (in, out)
  Tensor bias;    // (out)
  // Extension point 3: added to the output, same shape (..., out).
  std::function<Tensor(const Tensor& x, const ForwardOptions& options)> output_delta;
  // The same update in factored form, when it is one: output_delta(x) =
  // scale · (x Aᵀ) Bᵀ with A (r, in) and B (out, r). forward then applies it
  // through the fused op ta::lora_linear (W + s·AᵀBᵀ folded, then one product)
  // and does not call output_delta. LoRA sets both (output_delta alone while
  // its dropout acts); serving reads the factors to apply each user's update
  // to that user's rows.
  struct LowRankUpdate {
    Tensor A, B;
    float scale = 1.0f;
  };
  std::optional<LowRankUpdate> low_rank;
  // A frozen weight stored in bfloat16 (GPT::store_frozen_in_bf16): when set,
  // forward runs ta::linear_bf16 on it, the update through output_delta, and
  // `weight` keeps its shape but no values.
  std::shared_ptr<const Bf16Matrix> weight_bf16;
};

class Embedding : public Module {
 public:
  Embedding(int num_embeddings, int dim);
  Tensor forward(const std::vector<int>& ids, Shape ids_shape) const;  // ids_shape + (dim)
  Tensor weight;  // (num_embeddings, dim)
  std::shared_ptr<const Bf16Matrix> weight_bf16;  // as Linear's: the frozen table in bfloat16, when set
};

class LayerNorm : public Module {
 public:
  LayerNorm(int dim, float eps);
  Tensor forward(const Tensor& x) const;  // (..., C) -> (..., C)
  Tensor weight, bias;                    // (C), (C)
  float eps;
};

class MLP : public Module {
 public:
  explicit MLP(int n_embd);
  Tensor forward(const Tensor& x, const ForwardOptions& options) const;  // (B,T,C) -> (B,T,C)
  Linear c_fc;    // C -> 4C
  Linear c_proj;  // 4C -> C
};

class Attention : public Module {
 public:
  Attention(int n_embd, int n_head, bool causal, int layer_index);
  // x (B,T,C) -> (B,T,C). `base` carries the masks shared by every layer;
  // this layer adds its own prefix (or cache entry) from `options`.
  Tensor forward(const Tensor& x, const ForwardOptions& options, const AttentionOptions& base) const;
  Linear c_attn;  // C -> 3C: queries, keys, values side by side
  Linear c_proj;  // C -> C
  int n_embd, n_head;
  bool causal;
  int layer_index;
};

// (output of a sublayer, options) -> the value added to the residual stream.
using SublayerHook = std::function<Tensor(const Tensor& output, const ForwardOptions& options)>;

class Block : public Module {
 public:
  Block(int n_embd, int n_head, float eps, bool causal, float resid_pdrop, int layer_index);
  Tensor forward(const Tensor& x, const ForwardOptions& options, const AttentionOptions& base) const;
  LayerNorm ln_1;
  Attention attn;
  LayerNorm ln_2;
  MLP mlp;
  float resid_pdrop;
  // Extension point 4: applied to each sublayer's output (after its dropout)
  // before the residual add. Empty = identity.
  SublayerHook attention_output_hook, mlp_output_hook;
};

// The Linear modules of `root` whose dotted name matches `name` (module.h's
// rule: "c_attn" matches every layer's; "h.3.attn.c_attn" one).
std::vector<std::pair<std::string, Linear*>> find_linears(Module& root, const std::string& name);
// Exactly one match, else InputError naming `name`.
Linear& find_linear(Module& root, const std::string& name);

}  // namespace ta
