// autograd/shape.cpp — reductions and ops that move values without arithmetic:
// sum, mean, reshape, transpose (last two axes, or any two), concat, slice,
// embedding lookup.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "autograd/kernels/gemm_bf16.h"
#include "autograd/ops.h"

namespace ta {

// ---------------------------------------------------------------------------
// sum / mean over every element: d(sum)/dx_i = 1, d(mean)/dx_i = 1/n.

static Tensor total(const Tensor& x, float scale, const char* name) {
  double acc = 0;
  const float* in = x.data();
  const int64_t n = x.numel();
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; i++) acc += in[i];
  Tensor out = Tensor::scalar(static_cast<float>(acc * scale));
  if (!needs_grad({&x})) return out;
  record(out, name, [X = GradRef(x), scale](Node& o) {
    float g = o.grad.data()[0] * scale;
    float* dx = X.grad_or_zeros();
    for (int64_t i = 0; i < X.numel(); i++) dx[i] += g;
  });
  return out;
}

Tensor sum(const Tensor& x) { return total(x, 1.0f, "sum"); }
Tensor mean(const Tensor& x) {
  if (x.numel() == 0) shape_error("mean", "of an empty tensor");
  return total(x, 1.0f / static_cast<float>(x.numel()), "mean");
}

// The geometry of one axis: `outer` blocks, each `size` slices of `inner` values.
namespace {
struct AxisSplit {
  int64_t outer = 1, size = 1, inner = 1;
};
AxisSplit split_at(const Shape& s, int axis, const char* op) {
  if (axis < 0) axis += s.rank;
  if (axis < 0 || axis >= s.rank) shape_error(op, "axis out of range for " + s.str());
  AxisSplit a;
  for (int i = 0; i < axis; i++) a.outer *= s.dims[i];
  a.size = s.dims[axis];
  for (int i = axis + 1; i < s.rank; i++) a.inner *= s.dims[i];
  return a;
}
int normalise_axis(int axis, int rank) { return axis < 0 ? axis + rank : axis; }
}  // namespace

Tensor sum(const Tensor& x, int axis) {
  AxisSplit a = split_at(x.shape(), axis, "sum");
  axis = normalise_axis(axis, x.rank());
  Shape os;
  for (int i = 0; i < x.rank(); i++)
    if (i != axis) os.dims[os.rank++] = x.shape().dims[i];
  Tensor out = Tensor::zeros(os);  // (outer, inner)
  for (int64_t o = 0; o < a.outer; o++)
    for (int64_t k = 0; k < a.size; k++)
      for (int64_t i = 0; i < a.inner; i++) out.data()[o * a.inner + i] += x.data()[(o * a.size + k) * a.inner + i];
  if (!needs_grad({&x})) return out;
  record(out, "sum_axis", [X = GradRef(x), a](Node& n) {
    float* dx = X.grad_or_zeros();
    for (int64_t o = 0; o < a.outer; o++)
      for (int64_t k = 0; k < a.size; k++)
        for (int64_t i = 0; i < a.inner; i++) dx[(o * a.size + k) * a.inner + i] += n.grad.data()[o * a.inner + i];
  });
  return out;
}

// ---------------------------------------------------------------------------
// reshape: the same values in the same order; the gradient flows back unchanged.

Tensor reshape(const Tensor& x, Shape shape) {
  if (shape.numel() != x.numel())
    shape_error("reshape", "cannot reshape " + x.shape().str() + " to " + shape.str());
  Tensor out = Tensor::empty(shape);
  std::memcpy(out.data(), x.data(), static_cast<size_t>(x.numel()) * sizeof(float));
  if (!needs_grad({&x})) return out;
  record(out, "reshape", [X = GradRef(x)](Node& o) {
    float* dx = X.grad_or_zeros();
    const float* dy = o.grad.data();
    for (int64_t i = 0; i < X.numel(); i++) dx[i] += dy[i];
  });
  return out;
}

// ---------------------------------------------------------------------------
// transpose of the last two axes: (..., R, K) -> (..., K, R); backward
// transposes the gradient back.

Tensor transpose(const Tensor& x) {
  if (x.rank() < 2) shape_error("transpose", "needs rank >= 2, got " + x.shape().str());
  const int R = x.size(-2), K = x.size(-1);
  const int64_t batch = x.numel() / (static_cast<int64_t>(R) * K);
  Shape os = x.shape();
  os.dims[os.rank - 2] = K;
  os.dims[os.rank - 1] = R;
  Tensor out = Tensor::empty(os);
  for (int64_t b = 0; b < batch; b++)
    for (int r = 0; r < R; r++)
      for (int k = 0; k < K; k++) out.data()[(b * K + k) * R + r] = x.data()[(b * R + r) * K + k];
  if (!needs_grad({&x})) return out;
  record(out, "transpose", [X = GradRef(x), R, K, batch](Node& o) {
    float* dx = X.grad_or_zeros();
    for (int64_t b = 0; b < batch; b++)
      for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++) dx[(b * R + r) * K + k] += o.grad.data()[(b * K + k) * R + r];
  });
  return out;
}

// transpose of any two axes, (B, T, H, hs) -> (B, H, T, hs) for example
// (attention's heads, autograd/reference.cpp). The shape is padded to rank 4
// on the left; each output element reads the input at its index with the two
// axes swapped. Backward is the same swap applied to the gradient.

// For each output position (padded to rank 4), the flat input offset.
static std::vector<int64_t> swapped_offsets(const Shape& in, int axis0, int axis1) {
  int dims[4], pad = 4 - in.rank;
  for (int i = 0; i < 4; i++) dims[i] = i < pad ? 1 : in.dims[i - pad];
  int64_t stride[4];
  stride[3] = 1;
  for (int i = 2; i >= 0; i--) stride[i] = stride[i + 1] * dims[i + 1];
  std::swap(dims[axis0 + pad], dims[axis1 + pad]);  // now the output's dims
  std::swap(stride[axis0 + pad], stride[axis1 + pad]);  // the input stride of each output axis
  std::vector<int64_t> offsets;
  offsets.reserve(static_cast<size_t>(in.numel()));
  for (int i0 = 0; i0 < dims[0]; i0++)
    for (int i1 = 0; i1 < dims[1]; i1++)
      for (int i2 = 0; i2 < dims[2]; i2++)
        for (int i3 = 0; i3 < dims[3]; i3++)
          offsets.push_back(i0 * stride[0] + i1 * stride[1] + i2 * stride[2] + i3 * stride[3]);
  return offsets;
}

Tensor transpose(const Tensor& x, int axis0, int axis1) {
  const int a0 = normalise_axis(axis0, x.rank()), a1 = normalise_axis(axis1, x.rank());
  if (a0 < 0 || a0 >= x.rank() || a1 < 0 || a1 >= x.rank())
    shape_error("transpose", "axes " + std::to_string(axis0) + ", " + std::to_string(axis1) + " out of range for " +
                                 x.shape().str());
  Shape os = x.shape();
  std::swap(os.dims[a0], os.dims[a1]);
  auto offsets = std::make_shared<std::vector<int64_t>>(swapped_offsets(x.shape(), a0, a1));
  Tensor out = Tensor::empty(os);
  for (size_t o = 0; o < offsets->size(); o++) out.data()[o] = x.data()[(*offsets)[o]];
  if (!needs_grad({&x})) return out;
  record(out, "transpose_axes", [X = GradRef(x), offsets](Node& n) {
    float* dx = X.grad_or_zeros();
    for (size_t o = 0; o < offsets->size(); o++) dx[(*offsets)[o]] += n.grad.data()[o];
  });
  return out;
}

// ---------------------------------------------------------------------------
// concat along an axis (prompt tuning: [prompt ; tokens] along time), and
// slice [start, end) along an axis. Both copy blocks of `inner` values.

Tensor concat(const Tensor& a, const Tensor& b, int axis) {
  if (a.rank() != b.rank()) shape_error("concat", "ranks differ: " + a.shape().str() + ", " + b.shape().str());
  int ax = normalise_axis(axis, a.rank());
  for (int i = 0; i < a.rank(); i++)
    if (i != ax && a.shape().dims[i] != b.shape().dims[i])
      shape_error("concat", "shapes " + a.shape().str() + " and " + b.shape().str() + " differ off axis " +
                                std::to_string(axis));
  AxisSplit sa = split_at(a.shape(), axis, "concat"), sb = split_at(b.shape(), axis, "concat");
  Shape os = a.shape();
  os.dims[ax] += b.shape().dims[ax];
  Tensor out = Tensor::empty(os);
  const int64_t na = sa.size * sa.inner, nb = sb.size * sb.inner;  // values per outer block
  for (int64_t o = 0; o < sa.outer; o++) {
    std::memcpy(out.data() + o * (na + nb), a.data() + o * na, static_cast<size_t>(na) * sizeof(float));
    std::memcpy(out.data() + o * (na + nb) + na, b.data() + o * nb, static_cast<size_t>(nb) * sizeof(float));
  }
  if (!needs_grad({&a, &b})) return out;
  record(out, "concat", [A = GradRef(a), B = GradRef(b), na, nb, outer = sa.outer](Node& n) {
    const float* dy = n.grad.data();
    float* da = A.requires_grad() ? A.grad_or_zeros() : nullptr;
    float* db = B.requires_grad() ? B.grad_or_zeros() : nullptr;
    for (int64_t o = 0; o < outer; o++) {
      if (da) for (int64_t i = 0; i < na; i++) da[o * na + i] += dy[o * (na + nb) + i];
      if (db) for (int64_t i = 0; i < nb; i++) db[o * nb + i] += dy[o * (na + nb) + na + i];
    }
  });
  return out;
}

Tensor slice(const Tensor& x, int axis, int start, int end) {
  AxisSplit s = split_at(x.shape(), axis, "slice");
  if (start < 0 || end < start || end > s.size)
    shape_error("slice", "[" + std::to_string(start) + ", " + std::to_string(end) + ") out of range for " +
                             x.shape().str() + " axis " + std::to_string(axis));
  Shape os = x.shape();
  os.dims[normalise_axis(axis, x.rank())] = end - start;
  Tensor out = Tensor::empty(os);
  const int64_t n_out = (end - start) * s.inner, n_in = s.size * s.inner, offset = start * s.inner;
  for (int64_t o = 0; o < s.outer; o++)
    std::memcpy(out.data() + o * n_out, x.data() + o * n_in + offset, static_cast<size_t>(n_out) * sizeof(float));
  if (!needs_grad({&x})) return out;
  record(out, "slice", [X = GradRef(x), n_out, n_in, offset, outer = s.outer](Node& n) {
    float* dx = X.grad_or_zeros();
    const float* dy = n.grad.data();
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < n_out; i++) dx[o * n_in + offset + i] += dy[o * n_out + i];
  });
  return out;
}

// ---------------------------------------------------------------------------
// embedding: out[i] = table[ids[i]]; backward scatter-adds dout[i] into
// dtable[ids[i]] (a token seen twice in a batch gets both contributions).

// The checks and output shape (ids_shape + (C)) of a lookup in a table (N, C).
static Shape embedding_output_shape(const char* op, int N, int C, const std::vector<int>& ids, const Shape& ids_shape) {
  if (static_cast<int64_t>(ids.size()) != ids_shape.numel() || ids_shape.rank > 3)
    shape_error(op, std::to_string(ids.size()) + " ids for ids shape " + ids_shape.str());
  for (int id : ids)
    if (id < 0 || id >= N) shape_error(op, "id " + std::to_string(id) + " out of range [0, " + std::to_string(N) + ")");
  Shape os = ids_shape;
  os.dims[os.rank++] = C;
  return os;
}

Tensor embedding(const Tensor& table, const std::vector<int>& ids, Shape ids_shape) {
  if (table.rank() != 2) shape_error("embedding", "table must be (N, C), got " + table.shape().str());
  const int N = table.size(0), C = table.size(1);
  Tensor out = Tensor::empty(embedding_output_shape("embedding", N, C, ids, ids_shape));  // (..., C)
  for (size_t i = 0; i < ids.size(); i++)
    std::memcpy(out.data() + i * C, table.data() + static_cast<int64_t>(ids[i]) * C, C * sizeof(float));
  if (!needs_grad({&table})) return out;
  record(out, "embedding", [W = GradRef(table), ids, C](Node& n) {
    float* dw = W.grad_or_zeros();
    for (size_t i = 0; i < ids.size(); i++) {
      float* row = dw + static_cast<int64_t>(ids[i]) * C;
      const float* g = n.grad.data() + i * C;
      for (int c = 0; c < C; c++) row[c] += g[c];
    }
  });
  return out;
}

// The same lookup in a frozen bfloat16 table (--bf16): rows widened to float32, no gradient.
Tensor embedding_bf16(const Bf16Matrix& table, const std::vector<int>& ids, Shape ids_shape) {
  const int C = table.cols;
  Tensor out = Tensor::empty(embedding_output_shape("embedding_bf16", table.rows, C, ids, ids_shape));  // (..., C)
  for (size_t i = 0; i < ids.size(); i++) {
    const uint16_t* row = table.values.data() + static_cast<int64_t>(ids[i]) * C;
    float* dst = out.data() + static_cast<int64_t>(i) * C;
    for (int c = 0; c < C; c++) dst[c] = from_bf16(row[c]);
  }
  return out;
}

}  // namespace ta
