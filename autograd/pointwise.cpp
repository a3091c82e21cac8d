// autograd/pointwise.cpp — elementwise ops: add/sub/mul/div with broadcasting,
// scalar ops, sqrt, GELU, tanh, ReLU, dropout. Each op's backward is right below
// its forward.
#include <algorithm>
#include <cmath>

#include "autograd/fastmath.h"
#include "autograd/ops.h"

namespace ta {

// ---------------------------------------------------------------------------
// Broadcasting. Both shapes are right-aligned and padded to rank 4; a
// dimension of 1 stretches by reading it with stride 0. The same walk serves
// forward (read a and b, write out) and backward (read dout, add into da and
// db — where a was stretched, many output positions add into one input slot,
// which is exactly the sum that broadcasting's gradient needs).

// Long loops run on every thread (kParallelMin, tensor.h). An `omp simd`
// loop that calls a lambda with the index loads through gathers, so the loops
// below pass values (GELU) or leave vectorising to the compiler (walk).

namespace {
struct Broadcast {
  Shape out;
  int dims[4];                 // padded output dims
  int64_t a_stride[4], b_stride[4];
  bool same_shape = false;     // no broadcasting: one flat loop (the residual add)
};

void padded_strides(const Shape& s, const int dims[4], int64_t stride[4], const Shape& a, const Shape& b) {
  int offset = 4 - s.rank;
  int64_t step = 1;
  for (int i = 3; i >= 0; i--) {
    int size = i >= offset ? s.dims[i - offset] : 1;
    if (size != 1 && size != dims[i])
      shape_error("broadcast", "shapes " + a.str() + " and " + b.str() + " do not broadcast");
    stride[i] = size == 1 ? 0 : step;
    step *= size;
  }
}

Broadcast broadcast(const Shape& a, const Shape& b) {
  Broadcast bc;
  bc.out.rank = std::max(a.rank, b.rank);
  for (int i = 0; i < 4; i++) {
    int da = i >= 4 - a.rank ? a.dims[i - (4 - a.rank)] : 1;
    int db = i >= 4 - b.rank ? b.dims[i - (4 - b.rank)] : 1;
    bc.dims[i] = da == 1 ? db : da;
  }
  for (int i = 0; i < bc.out.rank; i++) bc.out.dims[i] = bc.dims[4 - bc.out.rank + i];
  padded_strides(a, bc.dims, bc.a_stride, a, b);
  padded_strides(b, bc.dims, bc.b_stride, a, b);
  bc.same_shape = a == b;
  return bc;
}

// Calls f(out_index, a_index, b_index) for every output element, in order.
template <class F>
void walk(const Broadcast& bc, F f) {
  if (bc.same_shape) {  // the common case (the residual add): a flat loop, vectorised
    const int64_t n = bc.out.numel();
    if (n > kParallelMin) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; i++) f(i, i, i);
    } else {
      for (int64_t i = 0; i < n; i++) f(i, i, i);
    }
    return;
  }
  int64_t o = 0;
  for (int i0 = 0; i0 < bc.dims[0]; i0++)
    for (int i1 = 0; i1 < bc.dims[1]; i1++)
      for (int i2 = 0; i2 < bc.dims[2]; i2++) {
        int64_t ia = i0 * bc.a_stride[0] + i1 * bc.a_stride[1] + i2 * bc.a_stride[2];
        int64_t ib = i0 * bc.b_stride[0] + i1 * bc.b_stride[1] + i2 * bc.b_stride[2];
        for (int i3 = 0; i3 < bc.dims[3]; i3++, o++)
          f(o, ia + i3 * bc.a_stride[3], ib + i3 * bc.b_stride[3]);
      }
}

enum class Arith { Add, Sub, Mul, Div };

Tensor arith(const Tensor& a, const Tensor& b, Arith kind, const char* name) {
  Broadcast bc = broadcast(a.shape(), b.shape());
  Tensor out = Tensor::empty(bc.out);
  float* y = out.data();
  const float *x1 = a.data(), *x2 = b.data();
  switch (kind) {
    case Arith::Add: walk(bc, [&](int64_t o, int64_t i, int64_t j) { y[o] = x1[i] + x2[j]; }); break;
    case Arith::Sub: walk(bc, [&](int64_t o, int64_t i, int64_t j) { y[o] = x1[i] - x2[j]; }); break;
    case Arith::Mul: walk(bc, [&](int64_t o, int64_t i, int64_t j) { y[o] = x1[i] * x2[j]; }); break;
    case Arith::Div: walk(bc, [&](int64_t o, int64_t i, int64_t j) { y[o] = x1[i] / x2[j]; }); break;
  }
  if (!needs_grad({&a, &b})) return out;
  // add and sub read no values in backward; mul reads each input for the
  // other's gradient; div reads b for both (da = dy / b, db = -dy · a / b²).
  const bool is_mul = kind == Arith::Mul, is_div = kind == Arith::Div;
  Tensor a_value = (is_mul || is_div) && b.requires_grad() ? a : Tensor();
  Tensor b_value = (is_mul && a.requires_grad()) || is_div ? b : Tensor();
  record(out, name, [A = GradRef(a), B = GradRef(b), a_value, b_value, bc, kind](Node& o) {
    const float* dy = o.grad.data();
    const float* x1 = a_value.defined() ? a_value.data() : nullptr;
    const float* x2 = b_value.defined() ? b_value.data() : nullptr;
    if (A.requires_grad() && bc.same_shape && (kind == Arith::Add || kind == Arith::Sub)) {
      A.accumulate_grad(dy);  // da += dy, a copy when it is the first
    } else if (A.requires_grad()) {
      float* da = A.grad_or_zeros();
      switch (kind) {
        case Arith::Mul: walk(bc, [&](int64_t k, int64_t i, int64_t j) { da[i] += dy[k] * x2[j]; }); break;
        case Arith::Div: walk(bc, [&](int64_t k, int64_t i, int64_t j) { da[i] += dy[k] / x2[j]; }); break;
        default:         walk(bc, [&](int64_t k, int64_t i, int64_t) { da[i] += dy[k]; }); break;
      }
    }
    if (B.requires_grad() && bc.same_shape && kind == Arith::Add) {
      B.accumulate_grad(dy);
    } else if (B.requires_grad()) {
      float* db = B.grad_or_zeros();
      switch (kind) {
        case Arith::Mul: walk(bc, [&](int64_t k, int64_t i, int64_t j) { db[j] += dy[k] * x1[i]; }); break;
        case Arith::Div: walk(bc, [&](int64_t k, int64_t i, int64_t j) { db[j] -= dy[k] * x1[i] / (x2[j] * x2[j]); }); break;
        case Arith::Sub: walk(bc, [&](int64_t k, int64_t, int64_t j) { db[j] -= dy[k]; }); break;
        default:         walk(bc, [&](int64_t k, int64_t, int64_t j) { db[j] += dy[k]; }); break;
      }
    }
  });
  return out;
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return arith(a, b, Arith::Add, "add"); }
Tensor sub(const Tensor& a, const Tensor& b) { return arith(a, b, Arith::Sub, "sub"); }
Tensor mul(const Tensor& a, const Tensor& b) { return arith(a, b, Arith::Mul, "mul"); }
Tensor div(const Tensor& a, const Tensor& b) { return arith(a, b, Arith::Div, "div"); }

// ---------------------------------------------------------------------------
// Scalar ops: y = a + s, y = a * s.

Tensor add_scalar(const Tensor& a, float s) {
  Tensor out = Tensor::empty(a.shape());
  const float* x = a.data();
  float* y = out.data();
  for (int64_t i = 0; i < a.numel(); i++) y[i] = x[i] + s;
  if (!needs_grad({&a})) return out;
  record(out, "add_scalar", [A = GradRef(a)](Node& o) {
    float* da = A.grad_or_zeros();
    const float* dy = o.grad.data();
    for (int64_t i = 0; i < A.numel(); i++) da[i] += dy[i];
  });
  return out;
}

Tensor mul_scalar(const Tensor& a, float s) {
  Tensor out = Tensor::empty(a.shape());
  const float* x = a.data();
  float* y = out.data();
  for (int64_t i = 0; i < a.numel(); i++) y[i] = x[i] * s;
  if (!needs_grad({&a})) return out;
  record(out, "mul_scalar", [A = GradRef(a), s](Node& o) {
    float* da = A.grad_or_zeros();
    const float* dy = o.grad.data();
    for (int64_t i = 0; i < A.numel(); i++) da[i] += s * dy[i];
  });
  return out;
}

// ---------------------------------------------------------------------------
// GELU, tanh approximation (GPT-2):
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3·0.044715 x^2)

static constexpr float kSqrt2OverPi = 0.7978845608028654f;
static constexpr float kGeluCubic = 0.044715f;

static inline float gelu_of(float v) {
  float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
  return 0.5f * v * (1.0f + tanh_fast(u));
}

static inline float gelu_grad(float v, float dy) {  // dy · gelu'(v)
  float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
  float t = tanh_fast(u);
  float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
  return dy * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
}

// The loops ask for 16 lanes (simdlen): one 512-bit register on an AVX-512
// machine, where GCC would otherwise pick 256-bit vectors; the polynomial in
// tanh_fast then runs 16 at a time (measured: GELU forward and backward take
// a quarter less time). Without AVX-512 the compiler uses what it has.

// dx = [dx +] dy · gelu'(x), n values; Add: an existing gradient is added to.
template <bool Add>
static void gelu_backward_loop(const float* in, const float* dy, float* dx, int64_t n) {
  if (n > kParallelMin) {
#pragma omp parallel for simd simdlen(16) schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] = (Add ? dx[i] : 0.0f) + gelu_grad(in[i], dy[i]);
  } else {
#pragma omp simd simdlen(16)
    for (int64_t i = 0; i < n; i++) dx[i] = (Add ? dx[i] : 0.0f) + gelu_grad(in[i], dy[i]);
  }
}

Tensor gelu(const Tensor& x) {
  if (reference_path()) return reference::gelu(x);
  Tensor out = Tensor::empty(x.shape());
  const float* in = x.data();
  float* y = out.data();
  const int64_t n = x.numel();
  if (n > kParallelMin) {
#pragma omp parallel for simd simdlen(16) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = gelu_of(in[i]);
  } else {
#pragma omp simd simdlen(16)
    for (int64_t i = 0; i < n; i++) y[i] = gelu_of(in[i]);
  }
  if (!needs_grad({&x})) return out;
  record(out, "gelu", [x](Node& o) {
    const float* in = x.data();
    const float* dy = o.grad.data();
    bool fresh = false;
    float* dx = x.node()->grad_for_accumulate(&fresh);
    // The usual case: the first gradient of x is written, not added to zeros.
    if (fresh) gelu_backward_loop<false>(in, dy, dx, x.numel());
    else gelu_backward_loop<true>(in, dy, dx, x.numel());
  });
  return out;
}

// sqrt: y = sqrt(x), dy/dx = 1 / (2 y) (uses the saved output).
Tensor sqrt(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); i++) out.data()[i] = std::sqrt(x.data()[i]);
  if (!needs_grad({&x})) return out;
  out.node()->keeps_value = true;  // backward reads y
  record(out, "sqrt", [X = GradRef(x)](Node& o) {
    float* dx = X.grad_or_zeros();
    const float *y = o.data.data(), *dy = o.grad.data();
    for (int64_t i = 0; i < X.numel(); i++) dx[i] += dy[i] / (2.0f * y[i]);
  });
  return out;
}

// tanh: y = tanh(x), dy/dx = 1 - y^2 (uses the saved output).
Tensor tanh(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); i++) out.data()[i] = std::tanh(x.data()[i]);
  if (!needs_grad({&x})) return out;
  out.node()->keeps_value = true;  // backward reads y
  record(out, "tanh", [X = GradRef(x)](Node& o) {
    float* dx = X.grad_or_zeros();
    const float *y = o.data.data(), *dy = o.grad.data();
    for (int64_t i = 0; i < X.numel(); i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
  });
  return out;
}

Tensor relu(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); i++) out.data()[i] = x.data()[i] > 0.0f ? x.data()[i] : 0.0f;
  if (!needs_grad({&x})) return out;
  record(out, "relu", [x](Node& o) {
    float* dx = x.node()->grad_or_zeros();
    const float *in = x.data(), *dy = o.grad.data();
    for (int64_t i = 0; i < x.numel(); i++)
      if (in[i] > 0.0f) dx[i] += dy[i];
  });
  return out;
}

// ---------------------------------------------------------------------------
// Inverted dropout: y = x · m / (1 - p), m ~ Bernoulli(1 - p). The mask is
// saved as the scale per element (0 or 1/(1-p)), so backward is dx = dy · scale.

Tensor dropout(const Tensor& x, float p, Rng& rng) {
  if (p < 0.0f || p >= 1.0f) shape_error("dropout", "p must be in [0, 1), got " + std::to_string(p));
  if (p == 0.0f) return x;
  Tensor scale = Tensor::empty(x.shape());
  const float keep_scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < x.numel(); i++) scale.data()[i] = rng.uniform() < p ? 0.0f : keep_scale;
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); i++) out.data()[i] = x.data()[i] * scale.data()[i];
  if (!needs_grad({&x})) return out;
  record(out, "dropout", [X = GradRef(x), scale](Node& o) {
    float* dx = X.grad_or_zeros();
    const float *dy = o.grad.data(), *keep = scale.data();
    for (int64_t i = 0; i < X.numel(); i++) dx[i] += dy[i] * keep[i];
  });
  return out;
}

}  // namespace ta
