// autograd/ops.h — every differentiable op: forward computes the output, and,
// when some input needs a gradient, records a backward closure written right
// below the forward code (see the .cpp files named in each section).
//
// Shapes use the legend of tensor.h (B, T, C, V, H, hs, P). Ops check their
// input shapes and throw std::invalid_argument("op: problem") on a mismatch.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "autograd/tensor.h"

namespace ta {

struct Bf16Matrix;  // autograd/kernels/gemm_bf16.h

// --- pointwise.cpp ----------------------------------------------------------
// Broadcasting as NumPy: shapes are aligned on the right; a dimension of 1 (or
// a missing one) stretches. add(x (B,T,C), bias (C)) is a bias add;
// mul(x (B,T,C), scale (B,T,1)) scales rows.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, float s);  // a + s
Tensor mul_scalar(const Tensor& a, float s);  // a * s
Tensor sqrt(const Tensor& x);
Tensor gelu(const Tensor& x);                 // tanh approximation, as GPT-2
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
// Inverted dropout: zeroes each value with probability p and scales the rest by
// 1/(1-p). The mask comes from `rng`, so a seed reproduces it. Identity when p == 0.
Tensor dropout(const Tensor& x, float p, Rng& rng);

// --- matmul.cpp -------------------------------------------------------------
// a (..., M, K) @ b (..., K, N) -> (..., M, N); with trans_a / trans_b the
// last two axes of a / b are read transposed. b may be 2-D and shared by
// every batch entry (a weight); otherwise the batch axes must be equal.
// dA is computed only when a needs a gradient, dB only when b does.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// The Linear layer in one op: x (..., in) @ weight (in, out) + bias (out)
// [+ addend (..., out)]. The weight is stored [in, out] as Hugging Face
// GPT-2's Conv1D. bias and addend may be undefined. The addend (a LoRA delta)
// is summed into the product's own buffer: the same as add(linear(x, W, b),
// addend), without the intermediate product and its gradient.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& addend = Tensor());
// A Linear with a LoRA update (Hu et al. 2021) in one op:
//   y = x @ weight + bias [+ addend] + scale · (x @ A^T) @ B^T,
// with A (r, in) and B (out, r) as PEFT stores them. The same as
// linear(x, W, b, add(addend, scale · matmul(matmul(x, A, false, true), B, false, true)))
// up to rounding, but the update is folded into a copy of the weight first
// (matmul.h, lora_fold), so the layer costs one product plus the fold and
// forms no (..., out) delta (see matmul.cpp).
Tensor lora_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& lora_A,
                   const Tensor& lora_B, float scale, const Tensor& addend = Tensor());

// --- shape.cpp --------------------------------------------------------------
Tensor sum(const Tensor& x);   // every element -> scalar
Tensor mean(const Tensor& x);  // every element -> scalar
Tensor sum(const Tensor& x, int axis);  // removes `axis`
Tensor reshape(const Tensor& x, Shape shape);  // same number of elements (copies)
Tensor transpose(const Tensor& x);             // swaps the last two axes (copies)
Tensor transpose(const Tensor& x, int axis0, int axis1);  // swaps any two axes (copies)
Tensor concat(const Tensor& a, const Tensor& b, int axis);   // equal shapes but for `axis`
Tensor slice(const Tensor& x, int axis, int start, int end);  // [start, end) along `axis`
// Rows of `table` (N, C) picked by ids (any shape, values in [0, N)):
// out has shape ids_shape + (C). Backward scatter-adds into the table's
// gradient, so a repeated id receives every contribution. Also used to gather
// the last real token of each sequence from (B*T, C) features.
Tensor embedding(const Tensor& table, const std::vector<int>& ids, Shape ids_shape);

// --- norm.cpp ---------------------------------------------------------------
// LayerNorm over the last axis, fused: x (..., C), weight (C), bias (C).
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor softmax(const Tensor& x);      // over the last axis
Tensor log_softmax(const Tensor& x);  // over the last axis
// Mean cross-entropy of logits (..., V) against targets (one per row of
// logits), fused with the log-softmax. Rows whose target is ignore_index do
// not count; the mean is over the rows that do (0 when none do).
Tensor cross_entropy(const Tensor& logits, const std::vector<int>& targets, int ignore_index = -100);
// The LM head and its loss in one op: cross_entropy(matmul(x, weight, false,
// true), targets) for x (..., C) and weight (V, C) (GPT-2's tied head, wte),
// the same value and gradients, without ever holding the (rows, V) logits:
// rows go in chunks, and the gradients are computed in the forward and kept
// until backward scales them by the loss's gradient (see norm.cpp).
Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const std::vector<int>& targets,
                            int ignore_index = -100);
// The same with the weight frozen in bfloat16 (--bf16; bf16.cpp's ops).
Tensor linear_cross_entropy_bf16(const Tensor& x, const std::shared_ptr<const Bf16Matrix>& weight,
                                 const std::vector<int>& targets, int ignore_index = -100);

// --- attention.cpp ----------------------------------------------------------
struct AttentionOptions {
  int n_head = 1;
  bool causal = true;
  // Extra key and value rows placed in front of the sequence's own keys and
  // values: K = [prefix_keys ; K], V = [prefix_values ; V], queries unchanged.
  // This is the hook for prefix tuning and for the KV cache of generation.
  // Shape (P, C) shared by every row of the batch, or (B, P, C) one per row.
  // Causality applies to the sequence's own keys; every prefix row is visible.
  Tensor prefix_keys, prefix_values;
  // When >= 0, only the first prefix_len rows (of each batch row) of the
  // prefix are keys and values; the rest are spare rows of a KV cache that
  // grows in place (nn/layers.h). Such a prefix cannot train. -1: every row.
  int prefix_len = -1;
  // Optional key mask of B * (P + T) bytes, row-major (B, P+T): 1 = a query
  // may attend to this key, 0 = it may not (padding). A query row that can see
  // no key at all outputs zeros.
  std::vector<uint8_t> key_mask;
};
// Multi-head scaled dot-product attention, fused: qkv (B, T, 3C) holds the
// queries, keys and values side by side (GPT-2's c_attn output); returns
// (B, T, C), the heads concatenated (before the output projection).
Tensor attention(const Tensor& qkv, const AttentionOptions& options);

// --- bf16.cpp ---------------------------------------------------------------
// A frozen weight stored in bfloat16 (kernels/gemm_bf16.h), for the base of
// an adapted model under --bf16 (GPT::store_frozen_in_bf16). Such a weight
// never trains — it has no float32 values to update — so only x, bias and
// addend receive gradients; x is rounded to bfloat16 inside the product and
// its gradient passes straight through the rounding (as PyTorch's autocast).
// y = x (..., K) @ op(W) + bias [+ addend]: op(W) = W stored (K, N), or Wᵀ
// with W stored (N, K) when `transposed` (the tied LM head, wte (V, C)).
Tensor linear_bf16(const Tensor& x, const std::shared_ptr<const Bf16Matrix>& weight, bool transposed,
                   const Tensor& bias, const Tensor& addend = Tensor());
// Rows of a bfloat16 table (N, C) picked by ids, widened to float32: shape
// ids_shape + (C); no gradient (the table is frozen). In shape.cpp, beside embedding.
Tensor embedding_bf16(const Bf16Matrix& table, const std::vector<int>& ids, Shape ids_shape);

// --- checkpoint.cpp ---------------------------------------------------------
// Gradient checkpointing (Chen et al. 2016): y = f(x), computed without a
// tape, so nothing f computes inside is kept; backward runs f(x) again with
// the tape on and back-propagates through that. Memory: x instead of every
// activation inside f; time: one more forward of f. f must compute the same
// values both times (give it the same dropout masks) and may use trainable
// tensors besides x, whose gradients it adds to as usual.
Tensor checkpoint(std::function<Tensor(const Tensor&)> f, const Tensor& x);

// --- reference.cpp ----------------------------------------------------------
// The fused ops above written as compositions of the plain ones (same
// arguments, same results up to rounding). The fused ops call them, after
// checking the inputs, when reference_path() is on (tensor.h).
namespace reference {
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& addend = Tensor());
Tensor lora_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& lora_A,
                   const Tensor& lora_B, float scale, const Tensor& addend = Tensor());
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor gelu(const Tensor& x);
Tensor cross_entropy(const Tensor& logits, const std::vector<int>& targets, int ignore_index = -100);
Tensor attention(const Tensor& qkv, const AttentionOptions& options);
}  // namespace reference

}  // namespace ta
