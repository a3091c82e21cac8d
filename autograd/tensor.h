// autograd/tensor.h — the Tensor, its storage pool, and the tape.
//
// Legend used in shape comments across the project (as llm.c):
//   B = batch, T = time (sequence length), C = channels (n_embd),
//   V = vocabulary, H = heads, hs = head size (C / H), P = prefix length.
//
// A Tensor is a shared handle to a Node: float32 data, contiguous and
// row-major, of rank 0..4. A Node that some trainable parameter is upstream of
// has requires_grad set; its gradient buffer is allocated the first time a
// gradient flows into it, so a frozen weight never owns a gradient buffer.
//
// The tape is the list of recorded nodes in execution order. An op whose
// inputs need no gradient is not recorded at all (and neither is anything
// under a NoGradGuard). backward(loss) seeds d(loss) = 1, runs every recorded
// node's backward closure in reverse order, then clears the tape, which frees
// the graph. Gradients accumulate with +=, so a value used twice receives both
// contributions.
//
// A value lives exactly as long as someone may read it. The tape keeps a
// recorded node (its gradient is needed in backward) but not its data: a
// node's data is freed as soon as no Tensor handle to it remains, where
// "handles" are the caller's variables and the Tensors that backward closures
// captured because they read those values. A closure that only adds into an
// input's gradient (add, reshape, concat, the frozen side of a matmul...)
// captures a GradRef instead, which keeps the node but not its data. So an
// activation that nobody will read again — the output of a residual add, the
// input of a frozen Linear — goes back to the pool during the forward pass,
// and freezing a weight saves memory as well as time. An op whose backward
// reads its own output (softmax, tanh) marks the node keeps_value.
//
// Buffers come from a pool keyed by exact size: a training step allocates the
// same sizes every time, so after the first step no op calls malloc.
//
// What this is not: a general tensor library. No strides or views (reshape
// copies), no dtypes but float32, no devices.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace ta {

constexpr int kMaxRank = 4;

// The shape of a tensor: rank 0..4, every dimension >= 0.
struct Shape {
  int rank = 0;
  int dims[kMaxRank] = {1, 1, 1, 1};

  Shape() = default;
  Shape(std::initializer_list<int> d);
  static Shape of(const std::vector<int64_t>& d);  // checks rank and range

  // Dimension i; negative i counts from the end (-1 is the last).
  int operator[](int i) const;
  int64_t numel() const {  // inline: loops test `i < x.numel()` every iteration
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
  }
  int last() const { return rank ? dims[rank - 1] : 1; }
  // Product of all dimensions but the last: the number of rows of a (..., N) tensor.
  int64_t rows() const { return rank ? numel() / last() : 1; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(2,3,4)"
};

// A float buffer borrowed from the pool; returned on destruction. Move-only.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n);  // uninitialised
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* data() const { return ptr_; }
  size_t size() const { return size_; }
  bool empty() const { return ptr_ == nullptr; }

 private:
  float* ptr_ = nullptr;
  size_t size_ = 0;
};

// Threading of the ops' own loops: a loop over more than kParallelMin values
// is split over the OpenMP threads; a shorter one runs on the calling thread
// alone, where waking another costs more than it saves. A simd loop is
// written as two branches, not `#pragma omp parallel for simd if (n >
// kParallelMin)`: GCC 12 compiles that clause's serial path as a scalar loop,
// 2.5-10x slower (measured on GELU and on an add). A plain `parallel for ...
// if (...)` over rows keeps its vectorised inner loops.
constexpr int64_t kParallelMin = 32768;

// Pool statistics and control (for tests, benchmarks and long-lived servers).
size_t pool_bytes_in_use();
size_t pool_bytes_cached();
void pool_release_cached();  // frees every buffer not in use

struct Node {
  Shape shape;
  Buffer data;  // freed when the last Tensor handle goes, unless keeps_value
  Buffer grad;  // empty until a gradient flows here
  std::atomic<int> handles{0};  // Tensor handles to this node (not GradRefs, not the tape)
  bool keeps_value = false;     // the node's own backward reads its data
  bool requires_grad = false;
  const char* op = "leaf";                // for error messages and debugging
  std::function<void(Node&)> backward;    // set when the op is recorded on the tape
  float* grad_or_zeros();                 // the gradient buffer, allocated as zeros on first use
  void accumulate_grad(const float* g);   // grad += g (numel values); the first one is copied in
  // The gradient buffer for a kernel that accumulates (C = beta·C + ...):
  // sets *fresh when it was just allocated, uninitialised — then use beta 0.
  float* grad_for_accumulate(bool* fresh);
};

class Tensor;
void record(Tensor& out, const char* op, std::function<void(Node&)> backward);

class Tensor {
 public:
  Tensor() = default;
  // Copies count as handles (see the top of this file); the last one to go
  // frees the data of a node that the tape still holds.
  Tensor(const Tensor& o) : node_(o.node_) { if (node_) node_->handles++; }
  Tensor(Tensor&& o) noexcept : node_(std::move(o.node_)) {}
  Tensor& operator=(const Tensor& o) {
    Tensor copy(o);
    std::swap(node_, copy.node_);
    return *this;
  }
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) {
      release();
      node_ = std::move(o.node_);
    }
    return *this;
  }
  ~Tensor() { release(); }

  // Constructors. empty() leaves the values uninitialised.
  static Tensor empty(Shape shape);
  static Tensor zeros(Shape shape);
  static Tensor full(Shape shape, float value);
  static Tensor from(Shape shape, const std::vector<float>& values);  // checks the size
  static Tensor scalar(float value) { return full(Shape{}, value); }

  bool defined() const { return node_ != nullptr; }
  const Shape& shape() const { return node_->shape; }
  int size(int axis) const { return node_->shape[axis]; }
  int rank() const { return node_->shape.rank; }
  int64_t numel() const { return node_->shape.numel(); }

  float* data() { return node_->data.data(); }
  const float* data() const { return node_->data.data(); }
  float item() const;  // the value of a one-element tensor
  std::vector<float> to_vector() const;

  bool requires_grad() const { return node_->requires_grad; }
  // Marks a leaf (a parameter) trainable or frozen. Freezing drops its gradient buffer.
  void set_requires_grad(bool on);
  bool has_grad() const { return !node_->grad.empty(); }
  const float* grad() const { return node_->grad.data(); }  // nullptr when none
  float* grad_or_zeros() { return node_->grad_or_zeros(); }
  void zero_grad();  // sets an existing gradient to zero (keeps the buffer)
  void drop_grad();  // frees the gradient buffer
  // Frees the values and keeps the shape: for a frozen weight whose values
  // now live elsewhere in another precision (GPT::store_frozen_in_bf16).
  // data() is nullptr afterwards.
  void release_values();

  Node* node() const { return node_.get(); }
  bool same_as(const Tensor& o) const { return node_ == o.node_; }

 private:
  friend void record(Tensor& out, const char* op, std::function<void(Node&)> backward);
  friend class GradRef;
  void release();
  std::shared_ptr<Node> node_;
};

// What a backward closure captures of an input whose values it does not read:
// the node, to add into its gradient, without keeping its data alive.
class GradRef {
 public:
  GradRef() = default;
  explicit GradRef(const Tensor& t) : node_(t.node_) {}  // t may be undefined (an absent bias)
  bool defined() const { return node_ != nullptr; }
  bool requires_grad() const { return node_ && node_->requires_grad; }
  const Shape& shape() const { return node_->shape; }
  int64_t numel() const { return node_->shape.numel(); }
  float* grad_or_zeros() const { return node_->grad_or_zeros(); }
  void accumulate_grad(const float* g) const { node_->accumulate_grad(g); }
  float* grad_for_accumulate(bool* fresh) const { return node_->grad_for_accumulate(fresh); }

 private:
  std::shared_ptr<Node> node_;
};

// ---------------------------------------------------------------------------
// Gradient mode and the tape

bool grad_enabled();

// Within its scope no op is recorded (evaluation, generation, feature caching).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and some input requires a gradient: only then does
// an op record itself. Undefined (optional) inputs are skipped.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// The reference path. When on, every fused op (linear, lora_linear, layernorm,
// gelu, cross_entropy, attention) runs as its composition of plain ops instead
// (autograd/reference.cpp), each recorded on the tape as it goes: slower, and
// the code to read and step through in a debugger. Off unless
// TINYADAPT_REFERENCE=1 is in the environment (read once, when first asked);
// the command line's --reference and the tests set it.
bool reference_path();
void set_reference_path(bool on);

// Records `out` on the tape: marks it requiring a gradient and stores the
// closure that, given out's node (whose grad is then filled), adds into the
// gradients of the op's inputs.
void record(Tensor& out, const char* op, std::function<void(Node&)> backward);

// Back-propagates from a scalar `loss` through the tape, then clears the tape.
void backward(const Tensor& loss);

size_t tape_size();
void clear_tape();  // drops the recorded graph without back-propagating

// A fresh tape for a forward and backward nested inside another backward
// (checkpoint's recomputation, ops.h): the outer tape is set aside for the
// scope's life and comes back, untouched, when it ends.
class TapeScope {
 public:
  TapeScope();
  ~TapeScope();
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  std::vector<std::shared_ptr<Node>> outer_;
};

// ---------------------------------------------------------------------------
// Errors and randomness

// Throws std::invalid_argument("op: message") — a shape error is a bug in the
// caller, not bad user input.
[[noreturn]] void shape_error(const char* op, const std::string& message);

// A small deterministic generator (splitmix64 seeding a xoshiro256**), so that
// a seed gives the same initialisation and dropout masks on every machine.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  float uniform();                 // [0, 1)
  float normal();                  // mean 0, sd 1 (Box-Muller)
  int below(int n);                // uniform integer in [0, n)

 private:
  uint64_t s_[4];
};

// Fills a tensor's data in place (initialisation; never recorded).
void fill_normal(Tensor& t, Rng& rng, float mean, float sd);
void fill_uniform(Tensor& t, Rng& rng, float lo, float hi);

}  // namespace ta
