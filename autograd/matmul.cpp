// autograd/matmul.cpp — sgemm kernels, matmul (2-D and batched) and the fused
// Linear op, each with its backward.
//
// For Y = X @ W the gradients are dX = dY @ W^T and dW = X^T @ dY. Backward
// pruning happens here: dW is computed only when W requires a gradient (a
// trainable weight), dX only when X does (something trainable is upstream).
// A frozen model with LoRA adapters therefore pays for neither dW of the
// frozen weights nor dX below the first adapted layer.
#include "autograd/matmul.h"

#include <algorithm>

#include <cblas.h>
#include <omp.h>

#include <cstring>
#include <vector>

#include "autograd/ops.h"

namespace ta {

// Threading. OpenBLAS is told to stay single-threaded, and sgemm splits a
// large product into one block of rows (or columns) of C per OpenMP thread.
// Why not let OpenBLAS thread: on small or thin products (a LoRA rank-8
// projection, the bias-free dW of a rank-8 matrix) its threads cost
// milliseconds to synchronise where the work takes 0.1 ms, and our own
// kernels (attention per head) already run sgemm inside their parallel
// loops. One thread pool — ours — decides.
static void blas_single_threaded_once() {
  static const bool done = [] {
    const int ours = omp_get_max_threads();
    openblas_set_num_threads(1);  // in the OpenMP build this also resets omp's count:
    omp_set_num_threads(ours);    // restore it for our own parallel loops
    return true;
  }();
  (void)done;
}

static void sgemm_one_thread(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                             const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 1) {  // one row (a token in generation): sgemv reads B once; sgemm would first copy all of it into packed panels
    cblas_sgemv(CblasRowMajor, trans_b ? CblasNoTrans : CblasTrans, trans_b ? N : K, trans_b ? K : N, alpha, B, ldb,
                A, trans_a ? lda : 1, beta, C, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta · C; BLAS leaves C untouched for K = 0 only when beta = 1
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  blas_single_threaded_once();
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double flops = 2.0 * M * N * static_cast<double>(K);
  // A product of few rows with a large matrix (generation: one token through a
  // weight) is bound by reading B, not by its FLOPs: it splits too, since two
  // threads read memory faster than one.
  const bool streams_b = M <= 8 && static_cast<double>(N) * K >= (1 << 18);
  if (threads == 1 || (flops < 4e6 && !streams_b) || (M < 32 && N < 32)) {
    sgemm_one_thread(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the longer side of C into one block per thread (multiples of 16,
  // the width OpenBLAS's kernels work in). Row i of op(A) starts at A + i
  // (transposed) or A + i·lda; column j of op(B) at B + j·ldb (transposed) or B + j.
  const bool split_rows = M >= N;
  const int length = split_rows ? M : N;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int start = std::min(length, (length * t / n + 15) / 16 * 16);
    const int end = t + 1 == n ? length : std::min(length, (length * (t + 1) / n + 15) / 16 * 16);
    if (end > start) {
      if (split_rows)
        sgemm_one_thread(trans_a, trans_b, end - start, N, K, alpha, trans_a ? A + start : A + static_cast<int64_t>(start) * lda,
                         lda, B, ldb, beta, C + static_cast<int64_t>(start) * ldc, ldc);
      else
        sgemm_one_thread(trans_a, trans_b, M, end - start, K, alpha, A, lda,
                         trans_b ? B + static_cast<int64_t>(start) * ldb : B + start, ldb, beta, C + start, ldc);
    }
  }
}

void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double acc = 0;
      for (int k = 0; k < K; k++) {
        float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float prev = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
      C[i * ldc + j] = alpha * static_cast<float>(acc) + prev;
    }
}

// ---------------------------------------------------------------------------
// matmul

namespace {
// The geometry of a (batched) product, read off the two input shapes.
struct MatmulDims {
  int batch = 1;           // number of matrix products
  int M = 0, N = 0, K = 0;
  bool shared_b = false;   // b is 2-D: the same matrix for every batch entry
  Shape out;
};

MatmulDims matmul_dims(const Shape& a, const Shape& b, bool trans_a, bool trans_b) {
  if (a.rank < 2 || b.rank < 2)
    shape_error("matmul", "inputs must have rank >= 2, got " + a.str() + " and " + b.str());
  MatmulDims d;
  d.M = trans_a ? a[-1] : a[-2];
  int ka = trans_a ? a[-2] : a[-1];
  d.K = trans_b ? b[-1] : b[-2];
  d.N = trans_b ? b[-2] : b[-1];
  if (ka != d.K)
    shape_error("matmul", "inner dimensions differ: " + a.str() + (trans_a ? "^T" : "") + " @ " +
                              b.str() + (trans_b ? "^T" : ""));
  d.shared_b = b.rank == 2;
  if (!d.shared_b) {
    bool same_batch = a.rank == b.rank;
    for (int i = 0; same_batch && i < a.rank - 2; i++) same_batch = a.dims[i] == b.dims[i];
    if (!same_batch) shape_error("matmul", "batch axes differ: " + a.str() + " @ " + b.str());
  }
  d.out = a;
  d.out.dims[a.rank - 2] = d.M;
  d.out.dims[a.rank - 1] = d.N;
  d.batch = static_cast<int>(a.numel() / (static_cast<int64_t>(a[-2]) * a[-1]));
  return d;
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  MatmulDims d = matmul_dims(a.shape(), b.shape(), trans_a, trans_b);
  const int lda = a.shape()[-1], ldb = b.shape()[-1], N = d.N, M = d.M, K = d.K;
  const int64_t a_step = static_cast<int64_t>(M) * K, b_step = d.shared_b ? 0 : static_cast<int64_t>(K) * N;
  const int64_t c_step = static_cast<int64_t>(M) * N;
  Tensor out = Tensor::empty(d.out);  // (..., M, N)
  if (d.shared_b && !trans_a) {
    // A weight shared by the whole batch: one product with batch·M rows.
    sgemm(false, trans_b, d.batch * M, N, K, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, out.data(), N);
  } else {
    for (int i = 0; i < d.batch; i++)
      sgemm(trans_a, trans_b, M, N, K, 1.0f, a.data() + i * a_step, lda, b.data() + i * b_step, ldb, 0.0f,
            out.data() + i * c_step, N);
  }
  if (!needs_grad({&a, &b})) return out;
  // dA reads B's values and dB reads A's: keep each only when the other side trains.
  Tensor a_value = b.requires_grad() ? a : Tensor(), b_value = a.requires_grad() ? b : Tensor();
  record(out, "matmul", [A = GradRef(a), B = GradRef(b), a_value, b_value, d, trans_a, trans_b, lda, ldb, a_step,
                         b_step, c_step](Node& o) {
    const float* dC = o.grad.data();  // (..., M, N)
    const int M = d.M, N = d.N, K = d.K;
    if (A.requires_grad()) {
      // op(A) = dC @ op(B)^T; for trans_a we produce A = op(B) @ dC^T directly.
      float* dA = A.grad_or_zeros();
      for (int i = 0; i < d.batch; i++) {
        const float* Bi = b_value.data() + i * b_step;
        if (!trans_a) sgemm(false, !trans_b, M, K, N, 1.0f, dC + i * c_step, N, Bi, ldb, 1.0f, dA + i * a_step, lda);
        else          sgemm(trans_b, true, K, M, N, 1.0f, Bi, ldb, dC + i * c_step, N, 1.0f, dA + i * a_step, lda);
      }
    }
    if (B.requires_grad()) {
      // op(B) = op(A)^T @ dC; for trans_b we produce B = dC^T @ op(A).
      float* dB = B.grad_or_zeros();
      if (d.shared_b && !trans_a) {  // sum over the batch folds into the row dimension
        int rows = d.batch * M;
        if (!trans_b) sgemm(true, false, K, N, rows, 1.0f, a_value.data(), lda, dC, N, 1.0f, dB, ldb);
        else          sgemm(true, false, N, K, rows, 1.0f, dC, N, a_value.data(), lda, 1.0f, dB, ldb);
      } else {
        for (int i = 0; i < d.batch; i++) {
          const float* Ai = a_value.data() + i * a_step;
          float* dBi = dB + i * b_step;
          if (!trans_b) sgemm(!trans_a, false, K, N, M, 1.0f, Ai, lda, dC + i * c_step, N, 1.0f, dBi, ldb);
          else          sgemm(true, trans_a, N, K, M, 1.0f, dC + i * c_step, N, Ai, lda, 1.0f, dBi, ldb);
        }
      }
    }
  });
  return out;
}

// ---------------------------------------------------------------------------
// What every Linear op shares (matmul.h).

bool start_linear_output(const Tensor& bias, const Tensor& addend, int rows, int out, float* y) {
  const float* b = bias.defined() ? bias.data() : nullptr;
  const float* d = addend.defined() ? addend.data() : nullptr;
  if (!b && !d) return false;
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(rows) * out > kParallelMin)
  for (int r = 0; r < rows; r++) {
    float* row = y + static_cast<int64_t>(r) * out;
    const float* d_row = d ? d + static_cast<int64_t>(r) * out : nullptr;
    if (b && d_row)
      for (int j = 0; j < out; j++) row[j] = d_row[j] + b[j];
    else
      std::memcpy(row, b ? b : d_row, out * sizeof(float));
  }
  return true;
}

Shape linear_output_shape(const char* op, const Tensor& x, int in, int out, const Tensor& bias, const Tensor& addend) {
  const Shape& xs = x.shape();
  const std::string w = "weight (" + std::to_string(in) + "," + std::to_string(out) + ") [in,out]";
  if (xs.rank < 1 || xs[-1] != in) shape_error(op, "x " + xs.str() + " does not fit " + w);
  if (bias.defined() && (bias.rank() != 1 || bias.size(0) != out))
    shape_error(op, "bias " + bias.shape().str() + " does not fit " + w);
  Shape ys = xs;
  ys.dims[xs.rank - 1] = out;
  if (addend.defined() && addend.shape() != ys)
    shape_error(op, "addend " + addend.shape().str() + " does not match the output " + ys.str());
  return ys;
}

// db (cols) += the column sums of dY (rows, cols). Each thread sums a block of
// rows into its own partial row; the partials are added at the end.
void add_column_sums(const float* dY, int rows, int cols, float* db) {
  const int threads = static_cast<int64_t>(rows) * cols > kParallelMin ? omp_get_max_threads() : 1;
  std::vector<float> partial(static_cast<size_t>(threads) * cols, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* mine = partial.data() + static_cast<size_t>(omp_get_thread_num()) * cols;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      const float* row = dY + static_cast<int64_t>(r) * cols;
      for (int j = 0; j < cols; j++) mine[j] += row[j];
    }
  }
  for (int t = 0; t < threads; t++)
    for (int j = 0; j < cols; j++) db[j] += partial[static_cast<size_t>(t) * cols + j];
}

// ---------------------------------------------------------------------------
// linear: y = x @ W + b, the whole of a GPT-2 Conv1D layer in one op.

namespace {

// y (rows, out) = x (rows, in) @ weight (in, out) + bias + addend: starts from
// the bias and the addend, then accumulates the product into them.
void linear_forward(const float* x, const float* weight, const Tensor& bias, const Tensor& addend, int rows,
                    int in, int out, float* y) {
  const bool accumulate = start_linear_output(bias, addend, rows, out, y);
  sgemm(false, false, rows, out, in, 1.0f, x, in, weight, out, accumulate ? 1.0f : 0.0f, y, out);
}

// The gradients of y = x @ weight + bias + addend given dY (rows, out), each
// only where its input trains. x_value and w_value are the values read (dW
// reads x, dX reads the weight); either is undefined when not needed.
void linear_backward(const float* dY, const GradRef& X, const GradRef& W, const GradRef& b, const GradRef& A,
                     const Tensor& x_value, const Tensor& w_value, int rows, int in, int out) {
  if (A.requires_grad()) A.accumulate_grad(dY);  // d(addend) = dY
  // A gradient buffer allocated here is written with beta 0 instead of being zeroed first.
  bool fresh = false;
  if (X.requires_grad()) {  // dX (rows,in) += dY @ W^T
    float* dX = X.grad_for_accumulate(&fresh);
    sgemm(false, true, rows, in, out, 1.0f, dY, out, w_value.data(), out, fresh ? 0.0f : 1.0f, dX, in);
  }
  if (W.requires_grad()) {  // dW (in,out) += X^T @ dY
    float* dW = W.grad_for_accumulate(&fresh);
    sgemm(true, false, in, out, rows, 1.0f, x_value.data(), in, dY, out, fresh ? 0.0f : 1.0f, dW, out);
  }
  if (b.defined() && b.requires_grad()) add_column_sums(dY, rows, out, b.grad_or_zeros());
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& addend) {
  if (weight.rank() != 2) shape_error("linear", "weight " + weight.shape().str() + " must be (in,out)");
  const Shape y_shape = linear_output_shape("linear", x, weight.size(0), weight.size(1), bias, addend);
  if (reference_path()) return reference::linear(x, weight, bias, addend);
  Tensor y = Tensor::empty(y_shape);  // (rows, out)
  const int rows = static_cast<int>(x.shape().rows()), in = weight.size(0), out = weight.size(1);
  linear_forward(x.data(), weight.data(), bias, addend, rows, in, out, y.data());
  if (!needs_grad({&x, &weight, &bias, &addend})) return y;
  // dX reads W and dW reads X: a frozen weight's layer keeps no copy of its input.
  Tensor x_value = weight.requires_grad() ? x : Tensor(), w_value = x.requires_grad() ? weight : Tensor();
  record(y, "linear", [X = GradRef(x), W = GradRef(weight), b = GradRef(bias), A = GradRef(addend), x_value,
                       w_value, rows, in, out](Node& o) {
    linear_backward(o.grad.data(), X, W, b, A, x_value, w_value, rows, in, out);
  });
  return y;
}

// ---------------------------------------------------------------------------
// LoRA's update, its two forms (matmul.h).

void lora_fold(float* W, const float* A, const float* B, int in, int out, int r, float scale) {
  sgemm(true, true, in, out, r, scale, A, in, B, r, 1.0f, W, out);  // (in,r) @ (r,out), added to W
}

void lora_delta(const float* x, int rows, const float* A, const float* B, int in, int out, int r, float scale,
                float* y) {
  std::vector<float> low(static_cast<size_t>(rows) * r);                    // scale · x Aᵀ   (rows, r)
  sgemm(false, true, rows, r, in, scale, x, in, A, in, 0.0f, low.data(), r);
  sgemm(false, true, rows, out, r, 1.0f, low.data(), r, B, r, 0.0f, y, out);  // (rows,r) @ Bᵀ
}

// ---------------------------------------------------------------------------
// lora_linear: y = x W + b [+ addend] + scale · (x Aᵀ) Bᵀ — see ops.h.
//
// Forward merges the update into the weight, W' = W + scale · Aᵀ Bᵀ (in, out,
// lora_fold): r·in·out multiply-adds, small beside the product's rows·in·out
// when rows ≫ r (training: rows = B·T), and then the layer is one product
// x W' like a plain Linear. (With one row, as in generation, the fold costs r
// times the product: generation merges once instead, tools/cmd_generate.cpp.)
// No (rows, out) delta is formed, written, added or stored. u = x Aᵀ (rows, r) is kept for dB.
// Backward, from y = x W' + b:
//   dx += dy W'ᵀ              one product carries the base's and the update's input gradient
//   dB += scale · dyᵀ u       (out, r)
//   dA += scale · (dy B)ᵀ x   (r, in), via v = dy B (rows, r)
//   dW, db as in linear (only when they train: in LoRA they are frozen).

namespace {

// The two products of LoRA's backward that read dY (rows, out), in one pass
// over it: v = dY B (rows, r) when v is wanted, and dB += scale · dYᵀ u (out,
// r) when u is given. Each is a thin product (r = 8 columns) that streams dY
// from memory; done one after the other they read it twice. Here the rows go
// in blocks of kRows, split over the threads, and each block is read from
// memory once, for v, and from the cache for dB. dB is summed per thread and
// the partial sums added at the end.
void low_rank_backward(const float* dY, int rows, int out, int r, float scale, const float* B, float* v,
                       const float* u, const GradRef& LB) {
  constexpr int kRows = 128;  // 128 rows of c_attn's dY (out = 3C = 768): 384 KiB, well inside the L2 cache
  const int blocks = (rows + kRows - 1) / kRows;
  const int threads = static_cast<int64_t>(rows) * out > kParallelMin ? std::min(omp_get_max_threads(), blocks) : 1;
  std::vector<float> partial(u ? static_cast<size_t>(threads) * out * r : 0, 0.0f);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int block = 0; block < blocks; block++) {
    const int first = block * kRows, n = std::min(kRows, rows - first);
    const float* dY_rows = dY + static_cast<int64_t>(first) * out;
    if (v) sgemm(false, false, n, r, out, 1.0f, dY_rows, out, B, r, 0.0f, v + static_cast<int64_t>(first) * r, r);
    if (u)
      sgemm(true, false, out, r, n, scale, dY_rows, out, u + static_cast<int64_t>(first) * r, r, 1.0f,
            partial.data() + static_cast<size_t>(omp_get_thread_num()) * out * r, r);
  }
  if (!u) return;
  bool fresh = false;
  float* dB = LB.grad_for_accumulate(&fresh);
  const int64_t n = static_cast<int64_t>(out) * r;
  for (int64_t i = 0; i < n; i++) {
    float total = fresh ? 0.0f : dB[i];
    for (int t = 0; t < threads; t++) total += partial[static_cast<size_t>(t) * n + i];
    dB[i] = total;
  }
}

}  // namespace

Tensor lora_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& lora_A,
                   const Tensor& lora_B, float scale, const Tensor& addend) {
  if (weight.rank() != 2) shape_error("lora_linear", "weight " + weight.shape().str() + " must be (in,out)");
  const Shape y_shape = linear_output_shape("lora_linear", x, weight.size(0), weight.size(1), bias, addend);
  const int rows = static_cast<int>(x.shape().rows()), in = weight.size(0), out = weight.size(1);
  if (lora_A.rank() != 2 || lora_B.rank() != 2 || lora_A.size(1) != in || lora_B.size(0) != out ||
      lora_A.size(0) != lora_B.size(1))
    shape_error("lora_linear", "A " + lora_A.shape().str() + " and B " + lora_B.shape().str() +
                                   " must be (r," + std::to_string(in) + ") and (" + std::to_string(out) + ",r)");
  if (reference_path()) return reference::lora_linear(x, weight, bias, lora_A, lora_B, scale, addend);
  Tensor y = Tensor::empty(y_shape);  // (rows, out)
  const int r = lora_A.size(0);
  Tensor merged = Tensor::empty(weight.shape());  // W' = W + scale · Aᵀ Bᵀ   (in, out)
  std::memcpy(merged.data(), weight.data(), static_cast<size_t>(weight.numel()) * sizeof(float));
  lora_fold(merged.data(), lora_A.data(), lora_B.data(), in, out, r, scale);
  linear_forward(x.data(), merged.data(), bias, addend, rows, in, out, y.data());
  if (!needs_grad({&x, &weight, &bias, &addend, &lora_A, &lora_B})) return y;
  Tensor u;  // x Aᵀ (rows, r), read by dB
  if (lora_B.requires_grad()) {
    u = Tensor::empty({rows, r});
    sgemm(false, true, rows, r, in, 1.0f, x.data(), in, lora_A.data(), in, 0.0f, u.data(), r);
  }
  // Keep only what backward reads: x for dA and dW, W' for dx, B for dA's v = dy B.
  Tensor x_value = weight.requires_grad() || lora_A.requires_grad() ? x : Tensor();
  Tensor merged_value = x.requires_grad() ? merged : Tensor();
  Tensor b_value = lora_A.requires_grad() ? lora_B : Tensor();
  record(y, "lora_linear", [X = GradRef(x), W = GradRef(weight), b = GradRef(bias), D = GradRef(addend),
                            LA = GradRef(lora_A), LB = GradRef(lora_B), x_value, merged_value, b_value, u, rows,
                            in, out, r, scale](Node& o) {
    const float* dY = o.grad.data();  // (rows, out)
    Tensor v = LA.requires_grad() ? Tensor::empty({rows, r}) : Tensor();  // dY B (rows, r), for dA
    if (LB.requires_grad() || v.defined())
      low_rank_backward(dY, rows, out, r, scale, v.defined() ? b_value.data() : nullptr, v.defined() ? v.data() : nullptr,
                        LB.requires_grad() ? u.data() : nullptr, LB);
    if (LA.requires_grad()) {  // dA (r, in) += scale · vᵀ x
      bool fresh = false;
      float* dA = LA.grad_for_accumulate(&fresh);
      sgemm(true, false, r, in, rows, scale, v.data(), r, x_value.data(), in, fresh ? 0.0f : 1.0f, dA, in);
    }
    linear_backward(dY, X, W, b, D, x_value, merged_value, rows, in, out);
  });
  return y;
}

}  // namespace ta
