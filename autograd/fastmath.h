// autograd/fastmath.h — exp and tanh that the compiler can vectorise.
//
// libm's expf and tanhf are scalar calls; in GELU, softmax and cross-entropy
// they cost more than the matrix multiplies around them. These are inline,
// branch-free (selects only) and call nothing, so a loop under
// `#pragma omp simd` runs 8 of them at once with AVX2.
//
// exp_fast (Cephes' expf): x = n·ln2 + r with |r| <= ln2/2, e^r from a degree-6
// polynomial, 2^n built in the exponent bits. Relative error below 2e-7 for
// x in [-87, 88]; 0 below -87.3 (so exp(-inf) = 0, as masking needs), +inf
// above 88.7.
// tanh_fast(u) = 1 - 2 / (e^{2u} + 1): absolute error below 1e-7, exact limits ±1.
//
// The reference for both is <cmath>; tests/test_autograd.cpp checks the error bounds.
#pragma once
#include <cstdint>

namespace ta {

inline float exp_fast(float x) {
  const float clamped = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  // n = round(x / ln2). Adding and subtracting 1.5·2^23 rounds to the nearest
  // integer in float arithmetic itself; unlike floorf it vectorises.
  const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // r = x - n·ln2, with ln2 split in two so the product is exact enough
  const float r = clamped - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  const float scale = __builtin_bit_cast(float, bits);  // no memory round trip: stays vectorisable
  const float y = er * scale;
  return x < -87.3f ? 0.0f : (x > 88.7f ? __builtin_inff() : y);
}

inline float tanh_fast(float u) { return 1.0f - 2.0f / (exp_fast(2.0f * u) + 1.0f); }

}  // namespace ta
