// autograd/matmul.h — the matrix-multiply kernels the ops are built on.
//
// C = alpha · op(A) @ op(B) + beta · C, row-major, op(X) = X or X^T, with
// leading dimensions as BLAS (so a head of a (B,T,3C) buffer is a matrix with
// lda = 3C, no copy needed). sgemm calls OpenBLAS; sgemm_naive is the plain
// triple loop kept beside it as the reference the tests compare against.
#pragma once

namespace ta {

class Tensor;
struct Shape;

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// C = alpha · op(A) @ B + beta · C on one thread, for the small per-head
// products of attention (autograd/kernels/gemm_small.cpp): no BLAS call, no packing,
// no threads. beta = 0 does not read C.
void sgemm_small(bool trans_a, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                 float beta, float* C, int ldc);

void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc);

// What the Linear ops (linear, lora_linear, linear_bf16) share. y (rows, out)
// starts as bias + addend (either may be undefined); returns false, leaving y
// unwritten, when both are. linear_output_shape checks x (..., in), bias (out)
// and addend against a weight (in, out) and returns y's shape (..., out).
// add_column_sums: db (cols) += the column sums of dY.
Shape linear_output_shape(const char* op, const Tensor& x, int in, int out, const Tensor& bias, const Tensor& addend);
bool start_linear_output(const Tensor& bias, const Tensor& addend, int rows, int out, float* y);
void add_column_sums(const float* dY, int rows, int cols, float* db);

// LoRA's update (Hu et al. 2021), written once, with A (r, in) and B (out, r)
// as PEFT stores them and W (in, out) as GPT-2 does. Its two forms:
//   folded into a weight:  W += scale · Aᵀ Bᵀ                 (lora_fold)
//   as a delta of x:       y  = scale · (x Aᵀ) Bᵀ, x (rows, in) (lora_delta)
// lora_linear (ops.h) folds it into a copy of W on every call, Lora::merge
// into W itself (adapt/lora.cpp), serving takes the delta row by row
// (adapt/serving.cpp). Lora's output_delta writes the same equation in tape
// ops. Tests: both forms and lora_linear against that composition
// (tests/test_autograd.cpp), merge against the unmerged model
// (tests/test_lora_adapter.cpp), serving's rows against each request alone
// (tests/test_serving.cpp).
void lora_fold(float* W, const float* A, const float* B, int in, int out, int r, float scale);
void lora_delta(const float* x, int rows, const float* A, const float* B, int in, int out, int r, float scale,
                float* y);

}  // namespace ta
