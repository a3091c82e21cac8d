// autograd/kernels/attention_kernel.cpp — the fast path of ta::attention;
// autograd/attention.cpp has the equations, autograd/reference.cpp the same
// attention in plain ops. What each trick here buys, measured on this 2-core
// machine at bench config B's shape (B 8, T 256, C 256, 8 heads, causal):
//
// - Heads in parallel. The (b, h) heads are independent; OpenMP hands them
//   out statically, one head per thread at a time.
// - Packed copies. A head's keys and values are copied out of qkv's strided
//   rows (3C floats apart) into per-thread scratch: transposed, (hs, P+T),
//   where they are the right operand of q Kᵀ and dy Vᵀ (pack_transposed), as
//   rows otherwise (pack_rows). Every product then reads them from the first-
//   and second-level caches as plain row-major matrices.
// - Register tiles. The products run on sgemm_small (gemm_small.cpp): 10–25%
//   faster than OpenBLAS's small-matrix kernels on these shapes.
// - Causal blocks. Causal attention walks the queries in blocks of
//   kCausalBlock rows and multiplies each block only against the keys it may
//   see, skipping most of the masked upper triangle: without it (one block
//   per head) forward and backward take 7.8–8.0 ms instead of 6.1–6.4 (min
//   of 60 calls, three runs each, alternating), 27% more.
// - att recomputed, not stored (as flash attention, Dao et al. 2022). The
//   forward keeps each query's softmax max and 1/sum (8 bytes); the backward
//   rebuilds its block of att from q and K. One more small product per block,
//   and (B, H, T, P+T) floats never written and read back: 96 MiB per step on
//   config B; peak memory of full training fell from 403 to 309 MiB. Unlike
//   flash attention, the softmax is not fused into the products with a
//   running max: a block's scores fit in the cache whole ((kCausalBlock, P+T)
//   causal, (T, P+T) otherwise).
// - Tried and removed: prefetching the next head's rows while computing this
//   one. It measured no difference, in the op alone (6.1–6.3 ms both) or in
//   the whole training step (config B, min of 15 steps: 361–364 ms both),
//   perhaps since the pool's 2 MiB pages keep the strided rows in the TLB.
//
// There is no dropout on att.
#include "autograd/kernels/attention_kernel.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "autograd/fastmath.h"
#include "autograd/matmul.h"

namespace ta {
namespace {

// Query rows per block in causal attention. On config B, 32 and 64 measure
// alike with sgemm_small; with OpenBLAS's kernels 16–48 did, and 64 was 8% slower.
constexpr int kCausalBlock = 32;

// The matrices of head (b, h), as pointers into buffers laid out like qkv
// (B,T,3C) and the prefix. The same struct serves the inputs and, with the
// same offsets, their gradients (a null pointer: no gradient wanted).
template <typename Float>  // float or const float
struct HeadMatrices {
  Float* query = nullptr;         // (T, hs), row stride 3C
  Float* key = nullptr;           // (T, hs), row stride 3C
  Float* value = nullptr;         // (T, hs), row stride 3C
  Float* prefix_key = nullptr;    // (P, hs), row stride C
  Float* prefix_value = nullptr;  // (P, hs), row stride C
};

// qkv and prefix_keys/values are base pointers (null: absent). prefix_batch_row
// is b for a (B,P,C) prefix and 0 for a shared (P,C) one.
template <typename Float>
HeadMatrices<Float> head_matrices(const AttentionDims& d, Float* qkv, Float* prefix_keys, Float* prefix_values,
                                  int b, int h, int prefix_batch_row) {
  HeadMatrices<Float> m;
  int64_t column = static_cast<int64_t>(h) * d.head_size;
  if (qkv) {
    m.query = qkv + static_cast<int64_t>(b) * d.T * 3 * d.C + column;
    m.key = m.query + d.C;
    m.value = m.query + 2 * d.C;
  }
  int64_t prefix_offset = static_cast<int64_t>(prefix_batch_row) * d.prefix_stride * d.C + column;
  if (prefix_keys) m.prefix_key = prefix_keys + prefix_offset;
  if (prefix_values) m.prefix_value = prefix_values + prefix_offset;
  return m;
}

// The largest of x[0, n), -inf when n = 0. A single running maximum would
// make every step wait for the one before (a max takes 4 cycles); 32 partial
// maxima, two 16-lane registers' worth, run as independent chains and are
// then folded in halves (16, 8, 4, 2, 1: five vector steps, not 32 serial ones).
float row_max(const float* x, int n) {
  constexpr int kLanes = 32;
  float partial[kLanes];
  for (float& p : partial) p = -INFINITY;
  int s = 0;
  for (; s + kLanes <= n; s += kLanes)
    for (int j = 0; j < kLanes; j++) partial[j] = x[s + j] > partial[j] ? x[s + j] : partial[j];
  for (int j = 0; s < n; s++, j++) partial[j] = x[s] > partial[j] ? x[s] : partial[j];
  for (int half = kLanes / 2; half > 0; half /= 2)
    for (int j = 0; j < half; j++) partial[j] = partial[j + half] > partial[j] ? partial[j + half] : partial[j];
  return partial[0];
}

// Hidden keys (mask[s] = 0) of a row of scores become -inf: exp_fast(-inf) = 0, no weight.
void hide_masked_keys(float* row, int visible_end, const uint8_t* mask) {
  if (mask)
    for (int s = 0; s < visible_end; s++)
      if (!mask[s]) row[s] = -INFINITY;
}

// Softmax of one row of scores over the keys s < visible_end that `mask`
// allows (null: all); the entries from visible_end to row_end become 0, and
// hidden keys too. A row with no visible key becomes all zeros, so its query
// outputs zeros. (Entries past row_end are never read: see head_forward.)
SoftmaxStats masked_softmax_row(float* row, int visible_end, int row_end, const uint8_t* mask) {
  hide_masked_keys(row, visible_end, mask);
  SoftmaxStats stats;
  stats.max = row_max(row, visible_end);
  if (stats.max == -INFINITY) {
    std::fill(row, row + row_end, 0.0f);
    return stats;
  }
  float total = 0.0f;
#pragma omp simd simdlen(16) reduction(+ : total)
  for (int s = 0; s < visible_end; s++) {
    row[s] = exp_fast(row[s] - stats.max);
    total += row[s];
  }
  stats.inverse_total = 1.0f / total;
#pragma omp simd simdlen(16)
  for (int s = 0; s < visible_end; s++) row[s] *= stats.inverse_total;
  std::fill(row + visible_end, row + row_end, 0.0f);
  return stats;
}

// The same row rebuilt in the backward from the same scores and the forward's
// stats, by the same operations (exp_fast of score - max, times 1/sum).
void softmax_row_from_stats(float* row, int visible_end, int row_end, const uint8_t* mask, SoftmaxStats stats) {
  if (stats.max == -INFINITY) {
    std::fill(row, row + row_end, 0.0f);
    return;
  }
  hide_masked_keys(row, visible_end, mask);
#pragma omp simd simdlen(16)
  for (int s = 0; s < visible_end; s++) row[s] = exp_fast(row[s] - stats.max) * stats.inverse_total;
  std::fill(row + visible_end, row + row_end, 0.0f);
}

// Copies the head's keys or values [prefix ; own] transposed into out (hs,
// P+T), row stride P+T: out[i][s] = dimension i of key (or value) s. q K^T
// and dy V^T then read the keys (values) as a plain row-major matrix.
void pack_transposed(const AttentionDims& d, const float* prefix_rows, const float* own_rows, float* out) {
  const int P = d.prefix_len, L = d.n_keys, hs = d.head_size;
  for (int s = 0; s < P; s++) {
    const float* row = prefix_rows + static_cast<int64_t>(s) * d.C;
    for (int i = 0; i < hs; i++) out[static_cast<int64_t>(i) * L + s] = row[i];
  }
  for (int s = 0; s < d.T; s++) {
    const float* row = own_rows + static_cast<int64_t>(s) * 3 * d.C;
    for (int i = 0; i < hs; i++) out[static_cast<int64_t>(i) * L + P + s] = row[i];
  }
}

// n rows of hs floats, row stride ld, copied to (n, hs) contiguous, and back
// (written, or added to). A head's rows lie 3C (or C) floats apart; the
// products read them many times, from a copy that sits in the first-level
// cache. (The loops are `omp simd` so that GCC keeps them inline rather than
// calling memmove for every 128-byte row.)
void gather_rows(const float* rows, int64_t ld, int n, int hs, float* out) {
  for (int s = 0; s < n; s++) {
    const float* from = rows + s * ld;
    float* to = out + static_cast<int64_t>(s) * hs;
#pragma omp simd
    for (int i = 0; i < hs; i++) to[i] = from[i];
  }
}
void scatter_rows(const float* packed, int n, int hs, bool add, float* rows, int64_t ld) {
  for (int s = 0; s < n; s++) {
    const float* from = packed + static_cast<int64_t>(s) * hs;
    float* to = rows + s * ld;
    if (add) {
#pragma omp simd
      for (int i = 0; i < hs; i++) to[i] += from[i];
    } else {
#pragma omp simd
      for (int i = 0; i < hs; i++) to[i] = from[i];
    }
  }
}

// The head's keys or values [prefix ; own] as one (P+T, hs) contiguous matrix.
void pack_rows(const AttentionDims& d, const float* prefix_rows, const float* own_rows, float* out) {
  gather_rows(prefix_rows, d.C, d.prefix_len, d.head_size, out);
  gather_rows(own_rows, 3 * d.C, d.T, d.head_size, out + static_cast<int64_t>(d.prefix_len) * d.head_size);
}

// Query rows per block: causal attention walks the queries in blocks of
// kCausalBlock, each multiplied only against the keys it may see; otherwise
// every query sees every key and one block covers them all.
int block_rows(const AttentionDims& d) { return d.causal ? std::min(kCausalBlock, d.T) : d.T; }

// Per-thread scratch of the forward, in floats: one block's rows of att
// (block, P+T), the head's [pk ; k]^T (hs, P+T) and [pv ; v] (P+T, hs).
// Rounded up to 16 K floats: in generation the number of keys grows by one a
// step, and the pool keeps buffers by exact size, so an exact size would leave
// one more cached buffer behind every token.
int64_t forward_scratch_size(const AttentionDims& d) {
  const int64_t exact = static_cast<int64_t>(block_rows(d) + 2 * d.head_size) * d.n_keys;
  return (exact + 16383) / 16384 * 16384;
}

// Forward of one head. out_head: (T, hs), row stride C. stats: (T), each
// query's softmax stats for the backward, or null when there is no backward.
// A causal block's rows of att are computed only up to the block's last key,
// P + keys: the entries further right are masked for all of its queries.
void head_forward(const AttentionDims& d, const HeadMatrices<const float>& in, const uint8_t* mask_row,
                  float* out_head, SoftmaxStats* stats, float* scratch) {
  const int P = d.prefix_len, L = d.n_keys, hs = d.head_size, ld_qkv = 3 * d.C, C = d.C;
  const int block = block_rows(d);
  float* att = scratch;                                          // (block, L)
  float* keys_t = att + static_cast<int64_t>(block) * L;         // (hs, L)
  float* values = keys_t + static_cast<int64_t>(hs) * L;         // (L, hs)
  pack_transposed(d, in.prefix_key, in.key, keys_t);
  pack_rows(d, in.prefix_value, in.value, values);
  for (int t0 = 0; t0 < d.T; t0 += block) {
    const int rows = std::min(block, d.T - t0);
    const int keys = P + (d.causal ? t0 + rows : d.T);  // the keys any query of the block may see
    // scores = scale · q [pk ; k]^T, then att = softmax(scores) row by row
    sgemm_small(false, rows, keys, hs, d.scale, in.query + static_cast<int64_t>(t0) * ld_qkv, ld_qkv, keys_t, L, 0.0f,
                att, L);
    for (int i = 0; i < rows; i++) {
      const int visible_end = P + (d.causal ? t0 + i + 1 : d.T);
      SoftmaxStats row_stats = masked_softmax_row(att + static_cast<int64_t>(i) * L, visible_end, keys, mask_row);
      if (stats) stats[t0 + i] = row_stats;
    }
    // y = att [pv ; v]
    sgemm_small(false, rows, hs, keys, 1.0f, att, L, values, hs, 0.0f, out_head + static_cast<int64_t>(t0) * C, C);
  }
}

// In the forward pass att = softmax(scores), so d_scores = att ⊙ (d_att −
// rowsum(d_att ⊙ att)). Overwrites d_att (one row, n entries) with d_scores.
void softmax_backward_row(const float* att, float* d_att, int n) {
  float weighted_sum = 0.0f;
#pragma omp simd simdlen(16) reduction(+ : weighted_sum)
  for (int s = 0; s < n; s++) weighted_sum += d_att[s] * att[s];
#pragma omp simd simdlen(16)
  for (int s = 0; s < n; s++) d_att[s] = att[s] * (d_att[s] - weighted_sum);
}

// Per-thread scratch of the backward, in floats: a block's att and d_att
// (block, P+T) each; the head's [pk ; k]^T and [pv ; v]^T (hs, P+T), [pk ; k]
// (P+T, hs), q and dy (T, hs); and its gradients dq (T, hs), d[pk ; k] and
// d[pv ; v] (P+T, hs).
int64_t backward_scratch_size(const AttentionDims& d) {
  const int64_t L = d.n_keys, T = d.T, hs = d.head_size;
  return 2 * block_rows(d) * L + hs * (5 * L + 3 * T);
}

// Backward of one head, block by block as the forward. Each block's att is
// computed again from q, k and the forward's stats (as flash attention does):
// cheaper than storing (B, H, T, P+T) floats and reading them back from
// memory. dy_head: (T, hs), row stride C. The gradients are summed in the
// scratch and then written to grad, where `fresh` says whether qkv's gradient
// holds garbage (written over) or an earlier gradient (added to).
void head_backward(const AttentionDims& d, const HeadMatrices<const float>& in, const uint8_t* mask_row,
                   const SoftmaxStats* stats, const float* dy_head, const HeadMatrices<float>& grad, bool fresh,
                   float* scratch) {
  const int P = d.prefix_len, L = d.n_keys, T = d.T, hs = d.head_size, C = d.C, ld_qkv = 3 * C;
  const int block = block_rows(d);
  float* att = scratch;                                          // (block, L)
  float* d_att = att + static_cast<int64_t>(block) * L;          // (block, L)
  float* keys_t = d_att + static_cast<int64_t>(block) * L;       // (hs, L)
  float* values_t = keys_t + static_cast<int64_t>(hs) * L;       // (hs, L)
  float* keys = values_t + static_cast<int64_t>(hs) * L;         // (L, hs)
  float* queries = keys + static_cast<int64_t>(L) * hs;          // (T, hs)
  float* dy = queries + static_cast<int64_t>(T) * hs;            // (T, hs)
  float* d_queries = dy + static_cast<int64_t>(T) * hs;          // (T, hs)
  float* d_keys = d_queries + static_cast<int64_t>(T) * hs;      // (L, hs)
  float* d_values = d_keys + static_cast<int64_t>(L) * hs;       // (L, hs)
  // Rows of d[pk ; k] and d[pv ; v] worth computing: the prefix's [0, P) and
  // the own keys' [P, L), each only when wanted.
  const int d_keys_from = grad.prefix_key ? 0 : P, d_values_from = grad.prefix_value ? 0 : P;
  const bool want_d_keys = grad.prefix_key || grad.key, want_d_values = grad.prefix_value || grad.value;
  const bool need_d_scores = grad.query || want_d_keys;
  pack_transposed(d, in.prefix_key, in.key, keys_t);
  pack_transposed(d, in.prefix_value, in.value, values_t);
  gather_rows(in.query, ld_qkv, T, hs, queries);
  gather_rows(dy_head, C, T, hs, dy);
  if (need_d_scores) pack_rows(d, in.prefix_key, in.key, keys);
  if (want_d_keys) std::fill_n(d_keys, static_cast<int64_t>(L) * hs, 0.0f);
  if (want_d_values) std::fill_n(d_values, static_cast<int64_t>(L) * hs, 0.0f);
  for (int t0 = 0; t0 < T; t0 += block) {
    const int rows = std::min(block, T - t0);
    const int keys_seen = P + (d.causal ? t0 + rows : T);
    const float* dy_rows = dy + static_cast<int64_t>(t0) * hs;      // (rows, hs)
    const float* q_rows = queries + static_cast<int64_t>(t0) * hs;  // (rows, hs)
    // att as the forward had it
    sgemm_small(false, rows, keys_seen, hs, d.scale, q_rows, hs, keys_t, L, 0.0f, att, L);
    for (int i = 0; i < rows; i++) {
      softmax_row_from_stats(att + static_cast<int64_t>(i) * L, P + (d.causal ? t0 + i + 1 : T), keys_seen, mask_row,
                             stats[t0 + i]);
    }
    // y = att [pv ; v]  ->  d_att = dy [pv ; v]^T,  d[pv ; v] += att^T dy
    sgemm_small(false, rows, keys_seen, hs, 1.0f, dy_rows, hs, values_t, L, 0.0f, d_att, L);
    if (want_d_values) {
      const int to = grad.value ? keys_seen : P;
      sgemm_small(true, to - d_values_from, hs, rows, 1.0f, att + d_values_from, L, dy_rows, hs, 1.0f,
                  d_values + static_cast<int64_t>(d_values_from) * hs, hs);
    }
    if (!need_d_scores) continue;
    for (int i = 0; i < rows; i++)
      softmax_backward_row(att + static_cast<int64_t>(i) * L, d_att + static_cast<int64_t>(i) * L, keys_seen);
    // scores = scale · q [pk ; k]^T  ->  dq = scale · d_scores [pk ; k],  d[pk ; k] += scale · d_scores^T q
    if (grad.query)
      sgemm_small(false, rows, hs, keys_seen, d.scale, d_att, L, keys, hs, 0.0f,
                  d_queries + static_cast<int64_t>(t0) * hs, hs);
    if (want_d_keys) {
      const int to = grad.key ? keys_seen : P;
      sgemm_small(true, to - d_keys_from, hs, rows, d.scale, d_att + d_keys_from, L, q_rows, hs, 1.0f,
                  d_keys + static_cast<int64_t>(d_keys_from) * hs, hs);
    }
  }
  // Write out: qkv's gradient as `fresh` says; a prefix's is added to (its targets start at zero or hold earlier gradient).
  const int64_t own = static_cast<int64_t>(P) * hs;  // offset of the own keys' rows in d_keys, d_values
  if (grad.query) scatter_rows(d_queries, T, hs, !fresh, grad.query, ld_qkv);
  if (grad.key) scatter_rows(d_keys + own, T, hs, !fresh, grad.key, ld_qkv);
  if (grad.value) scatter_rows(d_values + own, T, hs, !fresh, grad.value, ld_qkv);
  if (grad.prefix_key) scatter_rows(d_keys, P, hs, true, grad.prefix_key, C);
  if (grad.prefix_value) scatter_rows(d_values, P, hs, true, grad.prefix_value, C);
}

// grad (n) += Σ_b per_batch_row[b] (B, n): folds the per-row prefix gradients
// of a shared prefix into its one gradient.
void add_batch_sum(const float* per_batch_row, int B, int64_t n, float* grad) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float total = 0.0f;
    for (int b = 0; b < B; b++) total += per_batch_row[static_cast<int64_t>(b) * n + i];
    grad[i] += total;
  }
}

}  // namespace

void attention_forward_kernel(const AttentionDims& d, const Tensor& qkv, const Tensor& prefix_keys,
                              const Tensor& prefix_values, const std::vector<uint8_t>& key_mask, Tensor& out,
                              SoftmaxStats* stats) {
  const int B = d.B, H = d.n_head, T = d.T, L = d.n_keys;
  const int64_t scratch_size = forward_scratch_size(d);
  Tensor scratch = Tensor::empty({omp_get_max_threads(), static_cast<int>(scratch_size)});
  const float* prefix_keys_data = prefix_keys.defined() ? prefix_keys.data() : nullptr;
  const float* prefix_values_data = prefix_values.defined() ? prefix_values.data() : nullptr;

  auto out_of = [&](int b, int h) {  // (T, hs), row stride C
    return out.data() + static_cast<int64_t>(b) * T * d.C + static_cast<int64_t>(h) * d.head_size;
  };
#pragma omp parallel for schedule(static)
  for (int head = 0; head < B * H; head++) {
    const int b = head / H, h = head % H;
    HeadMatrices<const float> in =
        head_matrices(d, qkv.data(), prefix_keys_data, prefix_values_data, b, h, d.prefix_per_row ? b : 0);
    SoftmaxStats* head_stats = stats ? stats + static_cast<int64_t>(head) * T : nullptr;
    const uint8_t* mask_row =
        key_mask.empty() ? nullptr : key_mask.data() + static_cast<int64_t>(b) * L;  // (P+T)
    head_forward(d, in, mask_row, out_of(b, h), head_stats, scratch.data() + omp_get_thread_num() * scratch_size);
  }
}

void attention_backward_kernel(const AttentionDims& d, const Tensor& qkv, const Tensor& prefix_keys,
                               const Tensor& prefix_values, const std::vector<uint8_t>& key_mask,
                               const std::vector<SoftmaxStats>& stats, const float* d_out) {
  const int B = d.B, H = d.n_head, T = d.T, P = d.prefix_len, L = d.n_keys;
  const int64_t prefix_size = static_cast<int64_t>(P) * d.C;
  // d_qkv (B,T,3C): a fresh buffer is not zeroed; each head writes its slices.
  bool d_qkv_fresh = false;
  float* d_qkv = qkv.requires_grad() ? qkv.node()->grad_for_accumulate(&d_qkv_fresh) : nullptr;
  // The gradient of a prefix shared by the batch (P,C) gets a contribution from
  // every batch row, and heads (b, h) and (b', h) run concurrently: adding into
  // it directly would race. Each b adds into its own slice of a (B,P,C) scratch
  // instead, summed over b at the end. A (B,P,C) prefix has disjoint slices
  // already and is accumulated in place.
  auto prefix_grad_target = [&](const Tensor& prefix, Tensor& scratch) -> float* {
    if (!prefix.defined() || !prefix.requires_grad()) return nullptr;
    if (d.prefix_per_row) return prefix.node()->grad_or_zeros();
    scratch = Tensor::zeros({B, P, d.C});
    return scratch.data();
  };
  Tensor d_prefix_keys_rows, d_prefix_values_rows;  // (B,P,C), only for a shared prefix
  float* d_prefix_keys = prefix_grad_target(prefix_keys, d_prefix_keys_rows);
  float* d_prefix_values = prefix_grad_target(prefix_values, d_prefix_values_rows);
  const int64_t scratch_size = backward_scratch_size(d);
  Tensor scratch = Tensor::empty({omp_get_max_threads(), static_cast<int>(scratch_size)});
  const float* prefix_keys_data = prefix_keys.defined() ? prefix_keys.data() : nullptr;
  const float* prefix_values_data = prefix_values.defined() ? prefix_values.data() : nullptr;

  auto dy_of = [&](int b, int h) {  // (T, hs), row stride C
    return d_out + static_cast<int64_t>(b) * T * d.C + static_cast<int64_t>(h) * d.head_size;
  };
#pragma omp parallel for schedule(static)
  for (int head = 0; head < B * H; head++) {
    const int b = head / H, h = head % H;
    HeadMatrices<const float> in =
        head_matrices(d, qkv.data(), prefix_keys_data, prefix_values_data, b, h, d.prefix_per_row ? b : 0);
    HeadMatrices<float> grad = head_matrices(d, d_qkv, d_prefix_keys, d_prefix_values, b, h, b);
    const uint8_t* mask_row = key_mask.empty() ? nullptr : key_mask.data() + static_cast<int64_t>(b) * L;  // (P+T)
    head_backward(d, in, mask_row, stats.data() + static_cast<int64_t>(head) * T, dy_of(b, h), grad, d_qkv_fresh,
                  scratch.data() + omp_get_thread_num() * scratch_size);
  }

  if (d_prefix_keys_rows.defined())
    add_batch_sum(d_prefix_keys_rows.data(), B, prefix_size, prefix_keys.node()->grad_or_zeros());
  if (d_prefix_values_rows.defined())
    add_batch_sum(d_prefix_values_rows.data(), B, prefix_size, prefix_values.node()->grad_or_zeros());
}

}  // namespace ta
