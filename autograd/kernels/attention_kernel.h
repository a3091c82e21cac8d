// autograd/kernels/attention_kernel.h — the fast path of ta::attention
// (autograd/attention.cpp holds the op, its equations and its backward story;
// autograd/reference.cpp the same attention in plain ops).
//
// What this file and its .cpp add is speed only: the heads in parallel,
// packed per-thread copies of each head's keys and values, sgemm_small's
// register tiles, causal blocking, and recomputing att in the backward
// instead of storing it. Each trick is described, with what it measured, in
// the .cpp's opening comment.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "autograd/tensor.h"

namespace ta {

// The geometry of one call, read off (and checked against) the inputs.
struct AttentionDims {
  int B = 0, T = 0, C = 0;
  int n_head = 1, head_size = 0;
  int prefix_len = 0;            // P; 0 without a prefix
  int prefix_stride = 0;         // rows per batch row in the prefix's storage: P, or a KV cache's capacity
  int n_keys = 0;                // P + T: the keys each query chooses among
  bool prefix_per_row = false;   // the prefix is (B, P, C) rather than shared (P, C)
  bool causal = true;
  float scale = 1.0f;            // 1 / sqrt(head_size)
};

// What the backward needs to rebuild a row of att from its scores: the
// row's largest visible score and 1 / the sum of exponentials (max = -inf: the
// query sees no key).
struct SoftmaxStats {
  float max = -INFINITY;
  float inverse_total = 0.0f;
};


// out (B,T,C) = attention over qkv (B,T,3C) and the prefix (absent: undefined
// tensors); key_mask as AttentionOptions (empty: every key). stats: (B,H,T),
// each query's softmax stats for the backward, or null when none will run.
void attention_forward_kernel(const AttentionDims& d, const Tensor& qkv, const Tensor& prefix_keys,
                              const Tensor& prefix_values, const std::vector<uint8_t>& key_mask, Tensor& out,
                              SoftmaxStats* stats);

// Adds the gradients of qkv and of the prefix (those that require one), given
// d_out (B,T,C) and the forward's stats.
void attention_backward_kernel(const AttentionDims& d, const Tensor& qkv, const Tensor& prefix_keys,
                               const Tensor& prefix_values, const std::vector<uint8_t>& key_mask,
                               const std::vector<SoftmaxStats>& stats, const float* d_out);

}  // namespace ta
