// autograd/kernels/gemm_bf16.cpp — C = bf16(A) @ op(B) + beta · C with
// AVX512-BF16 (see gemm_bf16.h for what bfloat16 is and why).
//
// The structure is the textbook one of a fast GEMM (Goto & van de Geijn 2008,
// "Anatomy of high-performance matrix multiplication"; BLIS's five loops):
//
//   for each block of KC values of k:              (pc)
//     for each block of NC columns:                (jc)  pack B's block: KC x NC, in the L3 cache
//       for each block of MC rows:                 (ic)  pack A's block: MC x KC, in the L2 cache
//         for each panel of NR columns:            (jr)  B's panel KC x NR stays in L1 ...
//           for each panel of MR rows:             (ir)  ... while A's panels stream past it
//             micro-kernel: an MR x NR tile of C in registers, over all of KC
//
// Packing copies each block into the order the micro-kernel reads it, so its
// loads are consecutive, and here it also rounds A to bfloat16 and pairs up
// neighbouring k: vdpbf16ps takes, in each of its 16 float32 lanes, two
// bfloat16 products, a[2i]·b[2i] + a[2i+1]·b[2i+1]. So a lane of packed B
// holds (B[k][n], B[k+1][n]) and a broadcast 32-bit value of packed A holds
// (A[m][k], A[m][k+1]): one instruction does k and k+1 for 16 columns.
//
// The micro-kernel keeps 12 x 32 of C in 24 of the 32 zmm registers; per pair
// of k it loads two B vectors, broadcasts 12 A values and issues 24 vdpbf16ps:
// 768 multiply-adds per 14 loads. Measured on the 2-core AMD EPYC (Zen 4) this
// was written on, at training shapes: 360 GFLOP/s on one core and 580-670 on
// two, against 106 and 197-215 for OpenBLAS's float32 sgemm on the same shapes
// (docs/performance.md).
//
// Without AVX512-BF16 (another CPU, or make PORTABLE=1 on one without it)
// gemm_bf16 widens B to float32 and calls sgemm on bf16-rounded A: the same
// values, at float32's speed.
#include "autograd/kernels/gemm_bf16.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "autograd/matmul.h"

namespace ta {

Bf16Matrix Bf16Matrix::from_float(const float* data, int rows, int cols) {
  Bf16Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.values.resize(static_cast<size_t>(rows) * cols);
  const int64_t n = static_cast<int64_t>(rows) * cols;
#pragma omp parallel for schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; i++) m.values[i] = to_bf16(data[i]);
  return m;
}

void gemm_bf16_reference(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                         float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double acc = 0;
      for (int k = 0; k < K; k++) {
        const float a = from_bf16(to_bf16(A[static_cast<int64_t>(i) * lda + k]));
        const float b = from_bf16(trans_b ? B[static_cast<int64_t>(j) * ldb + k] : B[static_cast<int64_t>(k) * ldb + j]);
        acc += static_cast<double>(a) * b;
      }
      float& c = C[static_cast<int64_t>(i) * ldc + j];
      c = static_cast<float>(acc) + (beta == 0.0f ? 0.0f : beta * c);
    }
}

// The fallback (gemm_bf16.h): bf16(A) and widened B in float32, then sgemm. Rows of C in
// blocks of 256 so the copy of A stays small.
void gemm_bf16_widening(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                        float beta, float* C, int ldc) {
  const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  std::vector<float> wide(static_cast<size_t>(b_rows) * b_cols);
  for (int r = 0; r < b_rows; r++)
    for (int c = 0; c < b_cols; c++) wide[static_cast<size_t>(r) * b_cols + c] = from_bf16(B[static_cast<int64_t>(r) * ldb + c]);
  std::vector<float> rounded;
  for (int first = 0; first < M; first += 256) {
    const int rows = std::min(256, M - first);
    rounded.resize(static_cast<size_t>(rows) * K);
    for (int r = 0; r < rows; r++)
      for (int k = 0; k < K; k++)
        rounded[static_cast<size_t>(r) * K + k] = from_bf16(to_bf16(A[static_cast<int64_t>(first + r) * lda + k]));
    sgemm(false, trans_b, rows, N, K, 1.0f, rounded.data(), K, wide.data(), b_cols, beta, C + static_cast<int64_t>(first) * ldc,
          ldc);
  }
}

bool cpu_has_bf16_dot() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
}

namespace {

constexpr int MR = 12, NR = 32;  // the register tile
constexpr int KC = 384;          // k per block: B's panel KC x NR is 24 KiB of bfloat16
constexpr int MC = 192;          // rows per block: A's block MC x KC is 144 KiB
constexpr int NC = 3072;         // columns per block: B's block KC x NC is 2.25 MiB

#define TA_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// A's rows [0, mc) and k [0, kc) as panels of MR rows: panel i holds, for each
// pair p of k, MR 32-bit values (bf16(A[r][2p]), bf16(A[r][2p+1])), low half
// first. Rows past mc and a k past kc are zeros.
TA_BF16_TARGET void pack_a(const float* A, int lda, int mc, int kc, uint32_t* Ap) {
  const int pairs = (kc + 1) / 2, panels = (mc + MR - 1) / MR;
  alignas(64) uint32_t row_pairs[KC / 2];
  for (int i = 0; i < panels; i++) {
    uint32_t* panel = Ap + static_cast<size_t>(i) * pairs * MR;
    for (int r = 0; r < MR; r++) {
      const int row = i * MR + r;
      if (row >= mc) {
        for (int p = 0; p < pairs; p++) panel[p * MR + r] = 0;
        continue;
      }
      const float* a = A + static_cast<int64_t>(row) * lda;
      int k = 0;
      for (; k + 32 <= kc; k += 32) {  // 32 floats -> 16 pairs
        const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(a + k));
        _mm512_store_si512(reinterpret_cast<__m512i*>(row_pairs + k / 2), reinterpret_cast<const __m512i&>(h));
      }
      for (; k < kc; k += 2) {
        const uint32_t lo = to_bf16(a[k]), hi = k + 1 < kc ? to_bf16(a[k + 1]) : 0;
        row_pairs[k / 2] = lo | hi << 16;
      }
      for (int p = 0; p < pairs; p++) panel[p * MR + r] = row_pairs[p];
    }
  }
}

// op(B)'s k [0, kc) and columns [0, nc) as panels of NR columns: panel j holds,
// for each pair p, NR 32-bit values (B[2p][n], B[2p+1][n]). Zeros past the edges.
void pack_b(bool trans_b, const uint16_t* B, int ldb, int kc, int nc, uint32_t* Bp) {
  const int pairs = (kc + 1) / 2, panels = (nc + NR - 1) / NR;
  for (int j = 0; j < panels; j++) {
    uint32_t* panel = Bp + static_cast<size_t>(j) * pairs * NR;
    const int cols = std::min(NR, nc - j * NR);
    for (int p = 0; p < pairs; p++) {
      uint32_t* out = panel + p * NR;
      const int k = 2 * p;
      const bool has_odd = k + 1 < kc;
      if (trans_b) {  // B is (N, K): the pair is two neighbours of row n
        for (int n = 0; n < cols; n++) {
          const uint16_t* b = B + static_cast<int64_t>(j * NR + n) * ldb + k;
          out[n] = b[0] | (has_odd ? static_cast<uint32_t>(b[1]) << 16 : 0u);
        }
      } else {  // B is (K, N): the pair is the same column of rows k and k+1
        const uint16_t* even = B + static_cast<int64_t>(k) * ldb + j * NR;
        const uint16_t* odd = even + ldb;
        for (int n = 0; n < cols; n++) out[n] = even[n] | (has_odd ? static_cast<uint32_t>(odd[n]) << 16 : 0u);
      }
      for (int n = cols; n < NR; n++) out[n] = 0;
    }
  }
}

// C's tile (m <= MR rows, n <= NR columns) = Ap's panel @ Bp's panel (+ beta · C).
TA_BF16_TARGET void micro_kernel(int pairs, const uint32_t* Ap, const uint32_t* Bp, float* C, int ldc, int m, int n,
                                 float beta) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int p = 0; p < pairs; p++) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(Bp + p * NR));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(Bp + p * NR + 16));
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(Ap[p * MR + r])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
    }
  }
  const __mmask16 mask0 = n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1);
  const __mmask16 mask1 = n >= 32 ? 0xffff : n <= 16 ? 0 : static_cast<__mmask16>((1u << (n - 16)) - 1);
  const __m512 scale = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) {
    if (r >= m) break;
    float* c = C + static_cast<int64_t>(r) * ldc;
    __m512 lo = acc[r][0], hi = acc[r][1];
    if (beta != 0.0f) {
      lo = _mm512_fmadd_ps(scale, _mm512_maskz_loadu_ps(mask0, c), lo);
      hi = _mm512_fmadd_ps(scale, _mm512_maskz_loadu_ps(mask1, c + 16), hi);
    }
    _mm512_mask_storeu_ps(c, mask0, lo);
    _mm512_mask_storeu_ps(c + 16, mask1, hi);
  }
}

// One thread's product: the five loops above. Packing buffers are per thread
// and kept, so after the first call nothing is allocated.
void gemm_bf16_one_thread(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                          float beta, float* C, int ldc) {
  thread_local std::vector<uint32_t, std::allocator<uint32_t>> a_pack, b_pack;
  a_pack.resize(static_cast<size_t>((MC + MR - 1) / MR) * MR * (KC / 2) + 16);
  b_pack.resize(static_cast<size_t>((NC + NR - 1) / NR) * NR * (KC / 2) + 16);
  // 64-byte aligned views: the micro-kernel's B loads are aligned.
  auto aligned = [](std::vector<uint32_t>& v) {
    return reinterpret_cast<uint32_t*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
  };
  uint32_t* Ap = aligned(a_pack);
  uint32_t* Bp = aligned(b_pack);
  for (int pc = 0; pc < K; pc += KC) {
    const int kc = std::min(KC, K - pc), pairs = (kc + 1) / 2;
    const float block_beta = pc == 0 ? beta : 1.0f;
    for (int jc = 0; jc < N; jc += NC) {
      const int nc = std::min(NC, N - jc);
      pack_b(trans_b, trans_b ? B + static_cast<int64_t>(jc) * ldb + pc : B + static_cast<int64_t>(pc) * ldb + jc, ldb,
             kc, nc, Bp);
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = std::min(MC, M - ic);
        pack_a(A + static_cast<int64_t>(ic) * lda + pc, lda, mc, kc, Ap);
        for (int jr = 0; jr < nc; jr += NR)
          for (int ir = 0; ir < mc; ir += MR)
            micro_kernel(pairs, Ap + static_cast<size_t>(ir / MR) * pairs * MR, Bp + static_cast<size_t>(jr / NR) * pairs * NR,
                         C + static_cast<int64_t>(ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir),
                         std::min(NR, nc - jr), block_beta);
      }
    }
  }
}

// A few rows (generation: one token per sequence): C's columns [n0, n1) of
// bf16(A) @ op(B), reading B once, straight from its bfloat16 values. Such a
// product is bound by reading B (2 bytes a value; half of float32's), not by
// arithmetic, so there is no packing and any CPU runs it (the compiler
// vectorises the loops). A is rounded to bfloat16 first, as everywhere here.
constexpr int kFewRows = 4;

void few_rows(bool trans_b, int M, int n0, int n1, int K, const float* A, int lda, const uint16_t* B, int ldb,
              float beta, float* C, int ldc) {
  const int width = n1 - n0;
  thread_local std::vector<float> a, acc;
  a.resize(static_cast<size_t>(M) * K);
  acc.assign(static_cast<size_t>(M) * width, 0.0f);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) a[static_cast<size_t>(m) * K + k] = from_bf16(to_bf16(A[static_cast<int64_t>(m) * lda + k]));
  if (!trans_b) {  // B (K, N): columns in blocks of 128 (measured best of 32-256), whose sums stay in registers down all K rows of B
    constexpr int kBlock = 128;
    for (int m = 0; m < M; m++) {
      const float* am = a.data() + static_cast<size_t>(m) * K;
      float* out = acc.data() + static_cast<size_t>(m) * width;
      for (int j0 = 0; j0 < width; j0 += kBlock) {
        const uint16_t* b = B + n0 + j0;
        if (j0 + kBlock <= width) {
          float sums[kBlock] = {};
          for (int k = 0; k < K; k++, b += ldb) {
            const float ak = am[k];
#pragma omp simd
            for (int j = 0; j < kBlock; j++) sums[j] += ak * from_bf16(b[j]);
          }
          for (int j = 0; j < kBlock; j++) out[j0 + j] = sums[j];
        } else {
          for (int k = 0; k < K; k++, b += ldb)
            for (int j = 0; j < width - j0; j++) out[j0 + j] += am[k] * from_bf16(b[j]);
        }
      }
    }
  } else {  // B (N, K): column n of op(B) is row n of B, a dot product with each row of A
    for (int j = 0; j < width; j++) {
      const uint16_t* b = B + static_cast<int64_t>(n0 + j) * ldb;
      for (int m = 0; m < M; m++) {
        const float* am = a.data() + static_cast<size_t>(m) * K;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int k = 0; k < K; k++) dot += am[k] * from_bf16(b[k]);
        acc[static_cast<size_t>(m) * width + j] = dot;
      }
    }
  }
  for (int m = 0; m < M; m++) {
    float* c = C + static_cast<int64_t>(m) * ldc + n0;
    const float* sums = acc.data() + static_cast<size_t>(m) * width;
    for (int j = 0; j < width; j++) c[j] = sums[j] + (beta == 0.0f ? 0.0f : beta * c[j]);
  }
}

}  // namespace

void gemm_bf16(bool trans_b, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb, float beta,
               float* C, int ldc) {
  if (M == 0 || N == 0) return;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (M <= kFewRows && K > 0) {  // columns split over the threads, in multiples of 64
    const int per_thread = (N / threads + 63) / 64 * 64;
#pragma omp parallel num_threads(threads) if (static_cast<int64_t>(N) * K >= (1 << 18))
    {
      const int n0 = std::min(N, omp_get_thread_num() * per_thread);
      const int n1 = omp_get_thread_num() + 1 == omp_get_num_threads() ? N : std::min(N, n0 + per_thread);
      if (n1 > n0) few_rows(trans_b, M, n0, n1, K, A, lda, B, ldb, beta, C, ldc);
    }
    return;
  }
  if (K == 0 || !cpu_has_bf16_dot()) {
    gemm_bf16_widening(trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (threads == 1 || 2.0 * M * N * K < 4e6) {
    gemm_bf16_one_thread(trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // One block of C's longer side per thread, in multiples of the tile.
  const bool split_rows = M >= N;
  const int length = split_rows ? M : N, unit = split_rows ? MR : NR;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int start = std::min(length, (length / unit * t / n) * unit);
    const int end = t + 1 == n ? length : std::min(length, (length / unit * (t + 1) / n) * unit);
    if (end > start) {
      if (split_rows)
        gemm_bf16_one_thread(trans_b, end - start, N, K, A + static_cast<int64_t>(start) * lda, lda, B, ldb, beta,
                             C + static_cast<int64_t>(start) * ldc, ldc);
      else
        gemm_bf16_one_thread(trans_b, M, end - start, K, A, lda,
                             trans_b ? B + static_cast<int64_t>(start) * ldb : B + start, ldb, beta, C + start, ldc);
    }
  }
}

}  // namespace ta
