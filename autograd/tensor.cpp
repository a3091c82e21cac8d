// autograd/tensor.cpp — Shape, the buffer pool, Tensor, the tape, Rng. See tensor.h.
#include "autograd/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include <sys/mman.h>

namespace ta {

// ---------------------------------------------------------------------------
// Shape

Shape::Shape(std::initializer_list<int> d) {
  if (d.size() > kMaxRank) shape_error("Shape", "rank " + std::to_string(d.size()) + " > 4");
  for (int x : d) {
    if (x < 0) shape_error("Shape", "negative dimension " + std::to_string(x));
    dims[rank++] = x;
  }
}

Shape Shape::of(const std::vector<int64_t>& d) {
  if (d.size() > kMaxRank) shape_error("Shape", "rank " + std::to_string(d.size()) + " > 4");
  Shape s;
  for (int64_t x : d) {
    if (x < 0 || x > INT32_MAX) shape_error("Shape", "dimension " + std::to_string(x) + " out of range");
    s.dims[s.rank++] = static_cast<int>(x);
  }
  return s;
}

int Shape::operator[](int i) const {
  int j = i < 0 ? i + rank : i;
  if (j < 0 || j >= rank) shape_error("Shape", "axis " + std::to_string(i) + " out of range for " + str());
  return dims[j];
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; i++)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < rank; i++) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + ")";
}

void shape_error(const char* op, const std::string& message) {
  throw std::invalid_argument(std::string(op) + ": " + message);
}

// ---------------------------------------------------------------------------
// The buffer pool. Freed buffers wait, by exact size, for the next request of
// that size. Under AddressSanitizer the pool is bypassed so that a use after
// free is still caught.

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPooling = false;
#else
constexpr bool kPooling = true;
#endif

namespace {
constexpr size_t kHugePage = size_t{2} << 20;  // x86-64's transparent huge page: 2 MiB

struct Pool {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<float*>> free_by_size;
  size_t in_use = 0, cached = 0;  // bytes
};
Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: buffers may outlive static destructors
  return *p;
}
}  // namespace

static float* pool_acquire(size_t n) {
  Pool& p = pool();
  size_t bytes = n * sizeof(float);
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    p.in_use += bytes;
    auto it = p.free_by_size.find(n);
    if (kPooling && it != p.free_by_size.end() && !it->second.empty()) {
      float* ptr = it->second.back();
      it->second.pop_back();
      p.cached -= bytes;
      return ptr;
    }
  }
  // 64-byte alignment for vector loads; under AddressSanitizer the exact size,
  // so that writing one float past the end is reported.
  if (!kPooling) {
    void* ptr = std::malloc(bytes ? bytes : 1);
    if (!ptr) throw std::bad_alloc();
    return static_cast<float*>(ptr);
  }
  // Buffers of 2 MiB and more start on a 2 MiB boundary and ask the kernel
  // for transparent huge pages: one TLB entry then covers 2 MiB instead of
  // 4 KiB. The ops walk such buffers with large strides (a head's rows in
  // attention are 3C floats apart), where 4 KiB pages cost a TLB miss and a
  // page walk every row or so. The size is not rounded up: the last partial
  // 2 MiB stays on 4 KiB pages, so a buffer occupies no more memory than before.
  const bool huge = bytes >= kHugePage;
  void* ptr = nullptr;
  if (posix_memalign(&ptr, huge ? kHugePage : 64, bytes == 0 ? 64 : (bytes + 63) / 64 * 64) != 0)
    throw std::bad_alloc();
  if (huge) madvise(ptr, bytes, MADV_HUGEPAGE);  // a hint: without THP the pages stay 4 KiB
  return static_cast<float*>(ptr);
}

static void pool_return(float* ptr, size_t n) {
  Pool& p = pool();
  size_t bytes = n * sizeof(float);
  std::lock_guard<std::mutex> lock(p.mutex);
  p.in_use -= bytes;
  if (!kPooling) {
    std::free(ptr);
    return;
  }
  p.free_by_size[n].push_back(ptr);
  p.cached += bytes;
}

size_t pool_bytes_in_use() {
  std::lock_guard<std::mutex> lock(pool().mutex);
  return pool().in_use;
}

size_t pool_bytes_cached() {
  std::lock_guard<std::mutex> lock(pool().mutex);
  return pool().cached;
}

void pool_release_cached() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  for (auto& kv : p.free_by_size)
    for (float* ptr : kv.second) std::free(ptr);
  p.free_by_size.clear();
  p.cached = 0;
}

Buffer::Buffer(size_t n) : ptr_(pool_acquire(n)), size_(n) {}
Buffer::~Buffer() {
  if (ptr_) pool_return(ptr_, size_);
}
Buffer::Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), size_(o.size_) {
  o.ptr_ = nullptr;
  o.size_ = 0;
}
Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) pool_return(ptr_, size_);
    ptr_ = o.ptr_;
    size_ = o.size_;
    o.ptr_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

// ---------------------------------------------------------------------------
// Node and Tensor

float* Node::grad_or_zeros() {
  if (grad.empty()) {
    grad = Buffer(static_cast<size_t>(shape.numel()));
    std::memset(grad.data(), 0, grad.size() * sizeof(float));
  }
  return grad.data();
}

void Tensor::release() {
  if (!node_) return;
  if (--node_->handles == 0 && !node_->keeps_value) node_->data = Buffer();
  node_.reset();
}

float* Node::grad_for_accumulate(bool* fresh) {
  *fresh = grad.empty();
  if (*fresh) grad = Buffer(static_cast<size_t>(shape.numel()));  // no zeroing: the caller overwrites it
  return grad.data();
}

void Node::accumulate_grad(const float* g) {
  const int64_t n = shape.numel();
  const bool fresh = grad.empty();  // then a copy instead of zeros and +=: one pass fewer
  if (fresh) grad = Buffer(static_cast<size_t>(n));
  float* d = grad.data();
  if (n <= kParallelMin) {  // (see kParallelMin in tensor.h)
    if (fresh) std::memcpy(d, g, static_cast<size_t>(n) * sizeof(float));
    else for (int64_t i = 0; i < n; i++) d[i] += g[i];
  } else if (fresh) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) d[i] = g[i];
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) d[i] += g[i];
  }
}

Tensor Tensor::empty(Shape shape) {
  Tensor t;
  t.node_ = std::make_shared<Node>();
  t.node_->handles = 1;
  t.node_->shape = shape;
  t.node_->data = Buffer(static_cast<size_t>(shape.numel()));
  return t;
}

Tensor Tensor::zeros(Shape shape) { return full(shape, 0.0f); }

Tensor Tensor::full(Shape shape, float value) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); i++) p[i] = value;
  return t;
}

Tensor Tensor::from(Shape shape, const std::vector<float>& values) {
  if (static_cast<int64_t>(values.size()) != shape.numel())
    shape_error("Tensor::from", std::to_string(values.size()) + " values for shape " + shape.str());
  Tensor t = empty(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

float Tensor::item() const {
  if (numel() != 1) shape_error("item", "tensor of shape " + shape().str() + " is not a single value");
  return data()[0];
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data(), data() + numel()); }

void Tensor::set_requires_grad(bool on) {
  if (node_->backward) shape_error("set_requires_grad", "only leaf tensors (parameters) can be frozen or unfrozen");
  node_->requires_grad = on;
  if (!on) node_->grad = Buffer();
}

void Tensor::zero_grad() {
  if (has_grad()) std::memset(node_->grad.data(), 0, node_->grad.size() * sizeof(float));
}

void Tensor::drop_grad() { node_->grad = Buffer(); }
void Tensor::release_values() { node_->data = Buffer(); }

// ---------------------------------------------------------------------------
// Grad mode and the tape (one per thread)

namespace {
thread_local bool t_grad_enabled = true;
thread_local std::vector<std::shared_ptr<Node>> t_tape;
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

// The reference switch: -1 until first asked, then 0 or 1. Read from the
// environment once; set_reference_path overrides it.
static std::atomic<int> g_reference_path{-1};

bool reference_path() {
  int state = g_reference_path.load(std::memory_order_relaxed);
  if (state < 0) {
    const char* env = std::getenv("TINYADAPT_REFERENCE");
    state = env && std::string(env) == "1" ? 1 : 0;
    g_reference_path.store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

void set_reference_path(bool on) { g_reference_path.store(on ? 1 : 0, std::memory_order_relaxed); }

void record(Tensor& out, const char* op, std::function<void(Node&)> backward) {
  Node* n = out.node();
  n->requires_grad = true;
  n->op = op;
  n->backward = std::move(backward);
  t_tape.push_back(out.node_);  // the tape holds the node until backward
}

void backward(const Tensor& loss) {
  if (loss.numel() != 1) shape_error("backward", "the loss must be a single value, got shape " + loss.shape().str());
  if (!loss.requires_grad())
    shape_error("backward", "the loss does not depend on any trainable parameter");
  loss.node()->grad_or_zeros()[0] += 1.0f;
  // Reverse execution order is a topological order of the graph.
  for (auto it = t_tape.rbegin(); it != t_tape.rend(); ++it) {
    Node& n = **it;
    if (!n.grad.empty() && n.backward) n.backward(n);
    // An intermediate's gradient and saved inputs are not needed any more:
    // free them now, which keeps the peak memory of backward low.
    n.backward = nullptr;
    if (&n != loss.node()) n.grad = Buffer();
  }
  t_tape.clear();
}

size_t tape_size() { return t_tape.size(); }

void clear_tape() {
  for (auto& n : t_tape) n->backward = nullptr;
  t_tape.clear();
}

// Swapping keeps the outer tape's buffer where it is, so a backward loop
// iterating over it (the caller of the closure that opened this scope) goes
// on from the same place when the scope ends.
TapeScope::TapeScope() { std::swap(outer_, t_tape); }
TapeScope::~TapeScope() {
  clear_tape();
  std::swap(outer_, t_tape);
}

// ---------------------------------------------------------------------------
// Rng: xoshiro256** seeded by splitmix64

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) {
    seed += 0x9E3779B97F4A7C15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    s = z ^ (z >> 31);
  }
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t Rng::next_u64() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Rng::uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }

float Rng::normal() {
  // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
  float u1 = 1.0f - uniform(), u2 = uniform();
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
}

int Rng::below(int n) { return static_cast<int>(next_u64() % static_cast<uint64_t>(n)); }

void fill_normal(Tensor& t, Rng& rng, float mean, float sd) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); i++) p[i] = mean + sd * rng.normal();
}

void fill_uniform(Tensor& t, Rng& rng, float lo, float hi) {
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); i++) p[i] = lo + (hi - lo) * rng.uniform();
}

}  // namespace ta
