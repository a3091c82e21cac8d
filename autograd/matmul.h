// autograd/matmul.h — the matrix-multiply kernels the ops are built on.
//
// C = alpha · op(A) @ op(B) + beta · C, row-major, op(X) = X or X^T, with
// leading dimensions as BLAS (so a head of a (B,T,3C) buffer is a matrix with
// lda = 3C, no copy needed). sgemm calls OpenBLAS; sgemm_naive is the plain
// triple loop kept beside it as the reference the tests compare against.
#pragma once

namespace ta {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// C = alpha · op(A) @ B + beta · C on one thread, for the small per-head
// products of attention (autograd/gemm_small.cpp): no BLAS call, no packing,
// no threads. beta = 0 does not read C.
void sgemm_small(bool trans_a, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                 float beta, float* C, int ldc);

void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace ta
