// autograd/reference.cpp — the reference path: every fused op written as the
// composition of plain ops that it is equal to (up to rounding).
//
// With the reference path on (tensor.h: reference_path; `--reference` on the
// command line, TINYADAPT_REFERENCE=1 in the environment), each fused op in
// matmul.cpp, norm.cpp, pointwise.cpp and attention.cpp hands its inputs to
// the function of the same name here, after checking their shapes. Every line
// below is then one op on the tape, so a whole training step can be read and
// stepped through as the equations of the papers, and its gradient is the
// tape's, not a hand-written backward. tests/test_reference.cpp trains every
// method both ways and holds logits, loss and gradients to each other.
//
// The only primitives are matmul (BLAS), the broadcasting arithmetic, the
// row-wise softmax / log_softmax, and the moves (slice, concat, reshape,
// transpose, sum): each has its own gradient check in tests/test_autograd.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/ops.h"

namespace ta::reference {

// y = x W + b [+ addend]: the Linear layer, W stored (in, out).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& addend) {
  Tensor y = matmul(x, weight);         // (..., out)
  if (bias.defined()) y = add(y, bias);  // + b broadcast over the rows
  if (addend.defined()) y = add(y, addend);
  return y;
}

// LoRA (Hu et al. 2021): y = x W + b [+ addend] + s · (x Aᵀ) Bᵀ, A (r, in), B (out, r).
Tensor lora_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& lora_A,
                   const Tensor& lora_B, float scale, const Tensor& addend) {
  Tensor down = matmul(x, lora_A, false, true);    // (..., r)
  Tensor update = matmul(down, lora_B, false, true);  // (..., out)
  return add(reference::linear(x, weight, bias, addend), mul_scalar(update, scale));
}

// The mean over the last axis, kept as an axis of 1 so that it broadcasts back: (..., C) -> (..., 1).
static Tensor mean_last_axis(const Tensor& x) {
  Shape kept = x.shape();
  kept.dims[kept.rank - 1] = 1;
  return reshape(mul_scalar(sum(x, -1), 1.0f / static_cast<float>(x.shape().last())), kept);
}

// LayerNorm (Ba et al. 2016): y = (x − μ) / sqrt(σ² + eps) · w + b, μ and σ² per row.
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  Tensor centred = sub(x, mean_last_axis(x));               // x − μ          (..., C)
  Tensor variance = mean_last_axis(mul(centred, centred));  // σ²             (..., 1)
  Tensor normalised = div(centred, sqrt(add_scalar(variance, eps)));
  return add(mul(normalised, weight), bias);
}

// GELU, GPT-2's tanh form: 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))).
Tensor gelu(const Tensor& x) {
  const float sqrt_2_over_pi = 0.7978845608028654f;
  Tensor cube = mul(mul(x, x), x);
  Tensor u = mul_scalar(add(x, mul_scalar(cube, 0.044715f)), sqrt_2_over_pi);
  return mul(mul_scalar(x, 0.5f), add_scalar(tanh(u), 1.0f));
}

// Cross-entropy: −(1/n) Σ_r log softmax(logits_r)[target_r] over the n rows
// whose target is not ignore_index, written as the sum of log p against a
// constant (rows, V) matrix holding −1/n at each counted row's target. (The
// targets were checked by ta::cross_entropy, which calls this.)
Tensor cross_entropy(const Tensor& logits, const std::vector<int>& targets, int ignore_index) {
  const int V = logits.shape().last();
  const int64_t rows = logits.shape().rows();
  const int64_t count = static_cast<int64_t>(targets.size()) - std::count(targets.begin(), targets.end(), ignore_index);
  Tensor pick = Tensor::zeros(logits.shape());  // (..., V)
  for (int64_t r = 0; r < rows; r++)
    if (targets[r] != ignore_index) pick.data()[r * V + targets[r]] = -1.0f / static_cast<float>(count);
  return sum(mul(log_softmax(logits), pick));
}

// (B, L, C) -> (B, H, L, hs): head h's columns h·hs .. (h+1)·hs as a matrix of its own.
static Tensor split_heads(const Tensor& x, int n_head) {
  const int B = x.size(0), L = x.size(1), C = x.size(2);
  return transpose(reshape(x, {B, L, n_head, C / n_head}), 1, 2);
}

// (B, H, T, hs) -> (B, T, C): the heads side by side again.
static Tensor merge_heads(const Tensor& y) {
  const int B = y.size(0), H = y.size(1), T = y.size(2), hs = y.size(3);
  return reshape(transpose(y, 1, 2), {B, T, H * hs});
}

// A prefix shared by the batch (P, C) as one copy per row (B, P, C): added to
// zeros, so broadcasting's backward sums the rows' gradients into it.
static Tensor prefix_per_row(const Tensor& prefix, int B) {
  if (prefix.rank() == 3) return prefix;
  return add(Tensor::zeros({B, prefix.size(0), prefix.size(1)}), prefix);
}

// Scaled dot-product attention (Vaswani et al. 2017), the heads as a batch axis:
//   K = [prefix_keys ; k], V = [prefix_values ; v]       (B, H, P+T, hs)
//   att = softmax(q Kᵀ / sqrt(hs) + mask)               (B, H, T, P+T)
//   y = att V                                            (B, H, T, hs)
// The mask is a constant: 0 where query t may see key s (the key mask allows
// it, and it is a prefix row or s − P <= t when causal), −1e30 elsewhere, so
// that exp gives exactly 0 there. A query that sees no key at all is multiplied
// by 0 after the softmax (the fused kernel outputs zeros for it too).
Tensor attention(const Tensor& qkv, const AttentionOptions& options) {
  const int B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, H = options.n_head;
  Tensor q = slice(qkv, 2, 0, C), k = slice(qkv, 2, C, 2 * C), v = slice(qkv, 2, 2 * C, 3 * C);  // (B,T,C)
  int P = 0;
  if (options.prefix_keys.defined()) {
    P = options.prefix_len >= 0 ? options.prefix_len : options.prefix_keys.size(-2);  // a KV cache's rows in use
    k = concat(slice(prefix_per_row(options.prefix_keys, B), 1, 0, P), k, 1);    // (B,P+T,C)
    v = concat(slice(prefix_per_row(options.prefix_values, B), 1, 0, P), v, 1);  // (B,P+T,C)
  }
  const int L = P + T;
  Tensor mask = Tensor::empty({B, 1, T, L});   // broadcast over the heads
  Tensor sees_a_key = Tensor::empty({B, 1, T, 1});
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      bool any = false;
      for (int s = 0; s < L; s++) {
        bool allowed = options.key_mask.empty() || options.key_mask[static_cast<size_t>(b) * L + s];
        bool visible = allowed && (!options.causal || s < P || s - P <= t);
        mask.data()[(static_cast<int64_t>(b) * T + t) * L + s] = visible ? 0.0f : -1e30f;
        any = any || visible;
      }
      sees_a_key.data()[static_cast<int64_t>(b) * T + t] = any ? 1.0f : 0.0f;
    }
  const float scale = 1.0f / std::sqrt(static_cast<float>(C / H));
  Tensor scores = mul_scalar(matmul(split_heads(q, H), split_heads(k, H), false, true), scale);  // (B,H,T,L)
  Tensor att = mul(softmax(add(scores, mask)), sees_a_key);                                      // (B,H,T,L)
  return merge_heads(matmul(att, split_heads(v, H)));                                            // (B,T,C)
}

}  // namespace ta::reference
