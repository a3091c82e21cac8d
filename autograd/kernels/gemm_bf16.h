// autograd/kernels/gemm_bf16.h — products with a bfloat16 matrix, for a frozen
// base stored in half the memory (GPT::store_frozen_in_bf16, --bf16).
//
// bfloat16 is the top 16 bits of a float32: the same sign and exponent (so the
// same range), 8 significant bits instead of 24, a relative rounding error of
// at most 2^-8 = 0.4%. A weight rounded to it once keeps its value to two or
// three significant digits, and a product whose inputs are bfloat16 and whose
// sums are float32 (what CPUs with AVX512-BF16 do in one instruction,
// vdpbf16ps: two products per float lane, added into a float32 accumulator)
// does twice the multiply-adds per instruction of a float32 FMA; measured
// here, products run about three times as fast as OpenBLAS's float32 sgemm.
//
// gemm_bf16 computes C = bf16(A) @ op(B) + beta · C with A float32 (rounded to
// bfloat16 as it is read), B bfloat16, sums and C float32. It uses
// vdpbf16ps when the CPU has it, else widens to float32 and calls sgemm; both
// give the same values up to the order of the float32 sums. A product of at
// most 4 rows (generation: a token per sequence) reads B's bfloat16 values
// directly, unpacked, on any CPU: it is bound by the bytes of B it reads.
// gemm_bf16_reference is the plain loop the tests hold both to.
#pragma once
#include <cstdint>
#include <vector>

namespace ta {

// float32 -> bfloat16, rounded to nearest even (as vcvtne2ps2bf16 and PyTorch's
// .to(torch.bfloat16)); NaN stays NaN.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// A row-major bfloat16 matrix (rows, cols).
struct Bf16Matrix {
  int rows = 0, cols = 0;
  std::vector<uint16_t> values;
  static Bf16Matrix from_float(const float* data, int rows, int cols);
};

// C (M, N) = bf16(A) (M, K) @ op(B) + beta · C, op(B) = B (K, N) or, when
// trans_b, B stored (N, K) and read transposed. Row-major, leading dimensions
// as BLAS. Splits over the OpenMP threads unless called inside a parallel region.
void gemm_bf16(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb, float beta,
               float* C, int ldc);
void gemm_bf16_reference(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                         float beta, float* C, int ldc);

// The fallback on its own (gemm_bf16 calls it on CPUs without AVX512-BF16;
// public so that the tests hold it to the reference on every CPU).
void gemm_bf16_widening(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                        float beta, float* C, int ldc);

// Whether gemm_bf16 runs on AVX512-BF16 here (else on the widening fallback).
bool cpu_has_bf16_dot();

}  // namespace ta
