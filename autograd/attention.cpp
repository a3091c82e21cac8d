// autograd/attention.cpp — fused multi-head scaled dot-product attention: the
// op, its equations and its backward story. The code that computes it fast is
// autograd/kernels/attention_kernel.cpp; the same equations as plain ops, which
// the tests hold the kernel to, are autograd/reference.cpp: attention.
//
// For each batch row b and head h, with q, k, v the head's (T, hs) column
// slices of qkv (B, T, 3C) and the optional prefix rows put in front of the
// keys and values (prefix tuning, Li & Liang 2021; or a KV cache):
//   K = [prefix_keys ; k]      (P+T, hs)      V = [prefix_values ; v]   (P+T, hs)
//   scores = scale · q K^T     (T, P+T)       scale = 1 / sqrt(hs)
//   att = softmax(scores) over the visible keys, 0 on the others    (T, P+T)
//   y = att V                  (T, hs)  ->  out[b, :, h·hs : (h+1)·hs]
// (Vaswani et al. 2017, eq. 1.) Key s is visible to query t when the key mask
// allows it and, if causal, it is a prefix row or an own key with s <= t. A
// query that sees no key outputs zeros and passes back zero gradient.
//
// Backward, read bottom-up from the forward equations:
//   y = att V                  ->  d_att = dy V^T,  dV += att^T dy
//   att = softmax(scores)      ->  d_scores = att ⊙ (d_att − rowsum(d_att ⊙ att))
//   scores = scale · q K^T     ->  dq += scale · d_scores K,  dK += scale · d_scores^T q
// dq, dk, dv are computed only when qkv needs a gradient, the prefix's only
// when the prefix does (prefix tuning trains it; a KV cache does not).
//
// As flash attention (Dao et al. 2022), att is not stored for the backward:
// the forward keeps each query's softmax max and 1/sum, and the backward
// computes att again from q and K. How the heads are computed fast (packing,
// causal blocks, register tiles) is autograd/kernels/attention_kernel.cpp.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/kernels/attention_kernel.h"
#include "autograd/ops.h"

namespace ta {
namespace {

AttentionDims check_attention_inputs(const Tensor& qkv, const AttentionOptions& options, const char* op) {
  if (!qkv.defined() || qkv.rank() != 3 || qkv.size(2) == 0 || qkv.size(2) % 3 != 0)
    shape_error(op, "qkv must have shape (B,T,3C) with C > 0, got " +
                        (qkv.defined() ? qkv.shape().str() : std::string("an undefined tensor")));
  AttentionDims d;
  d.B = qkv.size(0);
  d.T = qkv.size(1);
  d.C = qkv.size(2) / 3;
  d.n_head = options.n_head;
  if (d.n_head < 1 || d.C % d.n_head != 0)
    shape_error(op, "C = " + std::to_string(d.C) + " is not divisible by n_head = " + std::to_string(d.n_head));
  d.head_size = d.C / d.n_head;
  const Tensor& keys = options.prefix_keys;
  const Tensor& values = options.prefix_values;
  if (keys.defined() != values.defined()) shape_error(op, "prefix_keys and prefix_values must be given together");
  if (keys.defined()) {
    if (keys.shape() != values.shape())
      shape_error(op, "prefix_keys " + keys.shape().str() + " and prefix_values " + values.shape().str() +
                          " differ in shape");
    bool shared = keys.rank() == 2 && keys.size(1) == d.C;
    bool per_row = keys.rank() == 3 && keys.size(0) == d.B && keys.size(2) == d.C;
    if (!shared && !per_row)
      shape_error(op, "the prefix must be (P," + std::to_string(d.C) + ") or (" + std::to_string(d.B) + ",P," +
                          std::to_string(d.C) + "), got " + keys.shape().str());
    d.prefix_per_row = per_row;
    d.prefix_len = d.prefix_stride = keys.size(-2);
    if (options.prefix_len >= 0) {  // a KV cache with spare rows: only the first prefix_len are keys
      if (options.prefix_len > keys.size(-2))
        shape_error(op, "prefix_len " + std::to_string(options.prefix_len) + " exceeds the prefix's " +
                            std::to_string(keys.size(-2)) + " rows");
      if (needs_grad({&keys, &values})) shape_error(op, "a prefix with spare rows (prefix_len) cannot train");
      d.prefix_len = options.prefix_len;
    }
  }
  d.n_keys = d.prefix_len + d.T;
  size_t mask_size = static_cast<size_t>(d.B) * static_cast<size_t>(d.n_keys);
  if (!options.key_mask.empty() && options.key_mask.size() != mask_size)
    shape_error(op, "key_mask has " + std::to_string(options.key_mask.size()) + " bytes, expected B*(P+T) = " +
                        std::to_string(mask_size));
  d.causal = options.causal;
  d.scale = 1.0f / std::sqrt(static_cast<float>(d.head_size));
  return d;
}

}  // namespace

Tensor attention(const Tensor& qkv, const AttentionOptions& options) {
  const AttentionDims d = check_attention_inputs(qkv, options, "attention");
  if (reference_path()) return reference::attention(qkv, options);
  const Tensor& prefix_keys = options.prefix_keys;
  const Tensor& prefix_values = options.prefix_values;
  const bool recording = needs_grad({&qkv, &prefix_keys, &prefix_values});
  Tensor out = Tensor::empty({d.B, d.T, d.C});  // (B,T,C)
  // The backward gets each query's softmax stats, (B,H,T), not att itself.
  auto stats = std::make_shared<std::vector<SoftmaxStats>>(recording ? static_cast<size_t>(d.B) * d.n_head * d.T : 0);
  attention_forward_kernel(d, qkv, prefix_keys, prefix_values, options.key_mask, out,
                           recording ? stats->data() : nullptr);
  if (recording)
    record(out, "attention", [d, qkv, prefix_keys, prefix_values, key_mask = options.key_mask, stats](Node& node) {
      attention_backward_kernel(d, qkv, prefix_keys, prefix_values, key_mask, *stats, node.grad.data());
    });
  return out;
}

}  // namespace ta
