// autograd/norm.cpp — fused row-wise kernels over the last axis: layernorm,
// softmax, log-softmax, cross-entropy fused with its log-softmax, and the LM
// head's product fused with its cross-entropy (linear_cross_entropy).
// Forward and backward are pairs with explicit caches, as in llm.c.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/fastmath.h"
#include "autograd/kernels/gemm_bf16.h"
#include "autograd/matmul.h"
#include "autograd/ops.h"

namespace ta {

// ---------------------------------------------------------------------------
// LayerNorm: y = (x - mean) · rstd · w + b, rstd = 1 / sqrt(var + eps), per row.
// Cache: mean and rstd per row (rows,). Backward, with n = (x - mean) · rstd:
//   dw += dy · n,  db += dy,
//   dx += rstd · (dn - mean(dn) - n · mean(dn · n)),  dn = dy · w.

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  const int C = x.shape().last();
  if (weight.rank() != 1 || weight.size(0) != C || bias.rank() != 1 || bias.size(0) != C)
    shape_error("layernorm", "x " + x.shape().str() + " needs weight and bias of (" + std::to_string(C) + "), got " +
                                 weight.shape().str() + " and " + bias.shape().str());
  if (reference_path()) return reference::layernorm(x, weight, bias, eps);
  const int64_t rows = x.shape().rows();
  Tensor out = Tensor::empty(x.shape());
  Tensor stats = Tensor::empty(Shape{static_cast<int>(rows), 2});  // (rows, [mean, rstd])
  const float *in = x.data(), *w = weight.data(), *b = bias.data();
  float *y = out.data(), *st = stats.data();
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = in + r * C;
    // (omp simd: without it a float sum is not vectorised, as that reorders it)
    float mean = 0;
#pragma omp simd reduction(+ : mean)
    for (int c = 0; c < C; c++) mean += xr[c];
    mean /= C;
    float var = 0;
#pragma omp simd reduction(+ : var)
    for (int c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
    float rstd = 1.0f / std::sqrt(var / C + eps);
    for (int c = 0; c < C; c++) y[r * C + c] = (xr[c] - mean) * rstd * w[c] + b[c];
    st[2 * r] = mean;
    st[2 * r + 1] = rstd;
  }
  if (!needs_grad({&x, &weight, &bias})) return out;
  // Backward reads x always (for dx and dw) and the weight only for dx.
  Tensor w_value = x.requires_grad() ? weight : Tensor();
  record(out, "layernorm", [x, W = GradRef(weight), Bias = GradRef(bias), w_value, stats, rows, C](Node& o) {
    const float *in = x.data(), *dy = o.grad.data(), *st = stats.data();
    bool fresh = false;  // a fresh dx is written rather than added to zeros
    float* dx = x.requires_grad() ? x.node()->grad_for_accumulate(&fresh) : nullptr;
    float* dw = W.requires_grad() ? W.grad_or_zeros() : nullptr;
    float* db = Bias.requires_grad() ? Bias.grad_or_zeros() : nullptr;
    const float* w = dx ? w_value.data() : nullptr;
    // dw and db sum over rows: each thread sums its rows into its own slice of
    // `partial` ([dw | db] per thread), added together at the end.
    const int threads = rows * C > kParallelMin ? omp_get_max_threads() : 1;
    std::vector<float> partial(dw || db ? static_cast<size_t>(threads) * 2 * C : 0, 0.0f);
#pragma omp parallel num_threads(threads)
    {
      float* my_dw = partial.empty() ? nullptr : partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * C;
      float* my_db = my_dw ? my_dw + C : nullptr;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++) {
        const float mean = st[2 * r], rstd = st[2 * r + 1];
        const float *xr = in + r * C, *dyr = dy + r * C;
        if (dx) {
          float dn_mean = 0, dn_n_mean = 0;
#pragma omp simd reduction(+ : dn_mean, dn_n_mean)
          for (int c = 0; c < C; c++) {
            float dn = dyr[c] * w[c];
            dn_mean += dn;
            dn_n_mean += dn * (xr[c] - mean) * rstd;
          }
          dn_mean /= C;
          dn_n_mean /= C;
          float* dxr = dx + r * C;
          for (int c = 0; c < C; c++) {
            float n = (xr[c] - mean) * rstd;
            float g = rstd * (dyr[c] * w[c] - dn_mean - n * dn_n_mean);
            if (fresh) dxr[c] = g;  // (loop-invariant: the compiler hoists it)
            else dxr[c] += g;
          }
        }
        if (my_dw)
          for (int c = 0; c < C; c++) {
            my_dw[c] += dyr[c] * (xr[c] - mean) * rstd;
            my_db[c] += dyr[c];
          }
      }
    }
    for (int t = 0; t < threads && !partial.empty(); t++)
      for (int c = 0; c < C; c++) {
        if (dw) dw[c] += partial[static_cast<size_t>(t) * 2 * C + c];
        if (db) db[c] += partial[static_cast<size_t>(t) * 2 * C + C + c];
      }
  });
  return out;
}

// ---------------------------------------------------------------------------
// Row-wise log-sum-exp, the stable way: max + log(sum(exp(x - max))).

static float log_sum_exp(const float* row, int n) {
  float max = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; i++) max = std::max(max, row[i]);
  float total = 0;
#pragma omp simd reduction(+ : total)
  for (int i = 0; i < n; i++) total += exp_fast(row[i] - max);
  return max + std::log(total);
}

// softmax: y = exp(x - lse); backward dx = y · (dy - sum(dy · y)).
Tensor softmax(const Tensor& x) {
  const int C = x.shape().last();
  const int64_t rows = x.shape().rows();
  Tensor out = Tensor::empty(x.shape());
  for (int64_t r = 0; r < rows; r++) {
    float lse = log_sum_exp(x.data() + r * C, C);
    for (int c = 0; c < C; c++) out.data()[r * C + c] = exp_fast(x.data()[r * C + c] - lse);
  }
  if (!needs_grad({&x})) return out;
  out.node()->keeps_value = true;  // backward reads y
  record(out, "softmax", [X = GradRef(x), rows, C](Node& o) {
    float* dx = X.grad_or_zeros();
    const float *y = o.data.data(), *dy = o.grad.data();
    for (int64_t r = 0; r < rows; r++) {
      float dot = 0;
      for (int c = 0; c < C; c++) dot += dy[r * C + c] * y[r * C + c];
      for (int c = 0; c < C; c++) dx[r * C + c] += y[r * C + c] * (dy[r * C + c] - dot);
    }
  });
  return out;
}

// log_softmax: y = x - lse; backward dx = dy - exp(y) · sum(dy).
Tensor log_softmax(const Tensor& x) {
  const int C = x.shape().last();
  const int64_t rows = x.shape().rows();
  Tensor out = Tensor::empty(x.shape());
  for (int64_t r = 0; r < rows; r++) {
    float lse = log_sum_exp(x.data() + r * C, C);
    for (int c = 0; c < C; c++) out.data()[r * C + c] = x.data()[r * C + c] - lse;
  }
  if (!needs_grad({&x})) return out;
  out.node()->keeps_value = true;  // backward reads y
  record(out, "log_softmax", [X = GradRef(x), rows, C](Node& o) {
    float* dx = X.grad_or_zeros();
    const float *y = o.data.data(), *dy = o.grad.data();
    for (int64_t r = 0; r < rows; r++) {
      float total = 0;
      for (int c = 0; c < C; c++) total += dy[r * C + c];
      for (int c = 0; c < C; c++) dx[r * C + c] += dy[r * C + c] - exp_fast(y[r * C + c]) * total;
    }
  });
  return out;
}

// ---------------------------------------------------------------------------
// Cross-entropy fused with log-softmax, over rows of logits (rows, V):
//   loss = mean over counted rows of (lse_r - logits[r, target_r]).
// Cache: lse per row. Backward, for a counted row:
//   dlogits[r, v] += g / count · (softmax[r, v] - [v == target_r]),
// so the (rows, V) probabilities are recomputed, never stored.

Tensor cross_entropy(const Tensor& logits, const std::vector<int>& targets, int ignore_index) {
  const int V = logits.shape().last();
  const int64_t rows = logits.shape().rows();
  if (static_cast<int64_t>(targets.size()) != rows)
    shape_error("cross_entropy", std::to_string(targets.size()) + " targets for logits " + logits.shape().str());
  int64_t count = 0;
  for (int t : targets) {
    if (t == ignore_index) continue;
    if (t < 0 || t >= V) shape_error("cross_entropy", "target " + std::to_string(t) + " out of range [0, " + std::to_string(V) + ")");
    count++;
  }
  if (reference_path()) return reference::cross_entropy(logits, targets, ignore_index);
  Tensor lse = Tensor::empty(Shape{static_cast<int>(rows)});  // (rows,)
  double total = 0;
  const float* z = logits.data();
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows * V > kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    if (targets[r] == ignore_index) continue;
    lse.data()[r] = log_sum_exp(z + r * V, V);
    total += lse.data()[r] - z[r * V + targets[r]];
  }
  Tensor out = Tensor::scalar(count ? static_cast<float>(total / count) : 0.0f);
  if (!needs_grad({&logits}) || count == 0) return out;
  record(out, "cross_entropy", [logits, targets, lse, rows, V, count, ignore_index](Node& o) {
    float* dz = logits.node()->grad_or_zeros();
    const float* z = logits.data();
    const float g = o.grad.data()[0] / static_cast<float>(count);
#pragma omp parallel for schedule(static) if (rows * V > kParallelMin)
    for (int64_t r = 0; r < rows; r++) {
      if (targets[r] == ignore_index) continue;
      const float l = lse.data()[r];
#pragma omp simd
      for (int v = 0; v < V; v++) dz[r * V + v] += g * exp_fast(z[r * V + v] - l);
      dz[r * V + targets[r]] -= g;
    }
  });
  return out;
}

// ---------------------------------------------------------------------------
// linear_cross_entropy: the mean cross-entropy of z = x Wᵀ, W (V, C), without
// the (rows, V) logits. At GPT-2's vocabulary a batch of 4 x 256 tokens has
// 51 M logits: 206 MB, and as much again for their gradient. Here the rows
// go in chunks of about kChunkLogits logits, and each chunk, while it is in
// the cache, gives its part of the loss and of the gradients:
//   z_c = x_c Wᵀ;  loss += lse(z_c) − z_c[target]
//   dz_c = (softmax(z_c) − onehot(target)) / n      (n: rows that count)
//   dx_c = dz_c W;  dW += dz_cᵀ x_c
// The loss is the last op of a step, so its gradients can be computed in the
// forward: they are kept (dx (rows, C); dW (V, C) only when W trains) and
// backward adds them, times the loss's own gradient, into x and W.
// Without a tape only the loss is computed.

namespace {

constexpr int64_t kChunkLogits = int64_t(1) << 23;  // 8 M logits = 32 MiB per chunk

// The head's two products for a float32 or a bfloat16 weight (V, C).
struct HeadWeight {
  const float* f32 = nullptr;
  const Bf16Matrix* bf16 = nullptr;
  int V = 0, C = 0;
  void logits(const float* x, int rows, float* z) const {  // z (rows, V) = x (rows, C) Wᵀ
    if (bf16) gemm_bf16(true, rows, V, C, x, C, bf16->values.data(), C, 0.0f, z, V);
    else sgemm(false, true, rows, V, C, 1.0f, x, C, f32, C, 0.0f, z, V);
  }
  void input_grad(const float* dz, int rows, float* dx) const {  // dx (rows, C) = dz (rows, V) W
    if (bf16) gemm_bf16(false, rows, C, V, dz, V, bf16->values.data(), C, 0.0f, dx, C);
    else sgemm(false, false, rows, C, V, 1.0f, dz, V, f32, C, 0.0f, dx, C);
  }
};

// dst (n) += g · src: a stashed gradient into its input's gradient.
void add_scaled_grad(const GradRef& input, const Tensor& stash, float g) {
  bool fresh = false;
  float* dst = input.grad_for_accumulate(&fresh);
  const float* src = stash.data();
  const int64_t n = stash.numel();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; i++) dst[i] = (fresh ? 0.0f : dst[i]) + g * src[i];
}

Tensor head_cross_entropy(const char* op, const Tensor& x, const HeadWeight& w, const Tensor& weight,
                          const std::vector<int>& targets, int ignore_index) {
  const int V = w.V, C = w.C;
  if (x.shape().last() != C)
    shape_error(op, "x " + x.shape().str() + " does not fit the weight (" + std::to_string(V) + "," + std::to_string(C) + ")");
  const int64_t rows = x.shape().rows();
  if (static_cast<int64_t>(targets.size()) != rows)
    shape_error(op, std::to_string(targets.size()) + " targets for x " + x.shape().str());
  int64_t count = 0;
  for (int t : targets) {
    if (t == ignore_index) continue;
    if (t < 0 || t >= V) shape_error(op, "target " + std::to_string(t) + " out of range [0, " + std::to_string(V) + ")");
    count++;
  }
  const bool grad_x = count > 0 && needs_grad({&x});
  const bool grad_w = count > 0 && weight.defined() && needs_grad({&weight});
  Tensor dx = grad_x ? Tensor::empty(x.shape()) : Tensor();
  Tensor dw = grad_w ? Tensor::empty(weight.shape()) : Tensor();
  const int chunk = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(rows, kChunkLogits / V)));
  Tensor z = Tensor::empty(Shape{chunk, V});  // one chunk's logits, then their gradient
  const float g = count ? 1.0f / static_cast<float>(count) : 0.0f;
  double total = 0;
  for (int64_t first = 0; first < rows; first += chunk) {
    const int n = static_cast<int>(std::min<int64_t>(chunk, rows - first));
    const float* x_rows = x.data() + first * C;
    w.logits(x_rows, n, z.data());
    double part = 0;
#pragma omp parallel for schedule(static) reduction(+ : part) if (static_cast<int64_t>(n) * V > kParallelMin)
    for (int r = 0; r < n; r++) {
      float* zr = z.data() + static_cast<int64_t>(r) * V;
      const int t = targets[first + r];
      if (t == ignore_index) {
        if (grad_x || grad_w) std::fill(zr, zr + V, 0.0f);
        continue;
      }
      const float lse = log_sum_exp(zr, V);
      part += lse - zr[t];
      if (!grad_x && !grad_w) continue;
#pragma omp simd
      for (int v = 0; v < V; v++) zr[v] = g * exp_fast(zr[v] - lse);
      zr[t] -= g;
    }
    total += part;
    if (grad_x) w.input_grad(z.data(), n, dx.data() + first * C);
    if (grad_w) sgemm(true, false, V, C, n, 1.0f, z.data(), V, x_rows, C, first == 0 ? 0.0f : 1.0f, dw.data(), C);
  }
  Tensor out = Tensor::scalar(count ? static_cast<float>(total / count) : 0.0f);
  if (!grad_x && !grad_w) return out;
  record(out, op, [X = GradRef(x), W = GradRef(weight), dx, dw](Node& o) {
    const float scale = o.grad.data()[0];
    if (dx.defined()) add_scaled_grad(X, dx, scale);
    if (dw.defined()) add_scaled_grad(W, dw, scale);
  });
  return out;
}

}  // namespace

Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const std::vector<int>& targets, int ignore_index) {
  if (weight.rank() != 2) shape_error("linear_cross_entropy", "weight " + weight.shape().str() + " must be (V,C)");
  if (reference_path()) return cross_entropy(matmul(x, weight, false, true), targets, ignore_index);
  HeadWeight w;
  w.f32 = weight.data();
  w.V = weight.size(0);
  w.C = weight.size(1);
  return head_cross_entropy("linear_cross_entropy", x, w, weight, targets, ignore_index);
}

Tensor linear_cross_entropy_bf16(const Tensor& x, const std::shared_ptr<const Bf16Matrix>& weight,
                                 const std::vector<int>& targets, int ignore_index) {
  HeadWeight w;
  w.bf16 = weight.get();
  w.V = weight->rows;
  w.C = weight->cols;
  Tensor out = head_cross_entropy("linear_cross_entropy_bf16", x, w, Tensor(), targets, ignore_index);
  return out;
}

}  // namespace ta
