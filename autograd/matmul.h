// autograd/matmul.h — the two matrix-multiply kernels the ops are built on.
//
// C = alpha · op(A) @ op(B) + beta · C, row-major, op(X) = X or X^T, with
// leading dimensions as BLAS (so a head of a (B,T,3C) buffer is a matrix with
// lda = 3C, no copy needed). sgemm calls OpenBLAS; sgemm_naive is the plain
// triple loop kept beside it as the reference the tests compare against.
#pragma once

namespace ta {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace ta
