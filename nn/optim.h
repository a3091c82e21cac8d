// nn/optim.h — AdamW with decoupled weight decay, gradient-norm clipping, and
// the learning-rate schedule (linear warm-up, then cosine decay).
//
// The optimiser is built from the trainable parameters only, so its state (the
// moments m and v) exists only for them: a LoRA run over a frozen model holds
// optimiser state for the adapter's few thousand values, not the model's
// millions. AdamW's update is PyTorch's (torch.optim.AdamW), step for step:
//   p ← p · (1 − lr·wd)                        (decoupled weight decay)
//   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
//   p ← p − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + ε)
#pragma once
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace ta {

struct OptimParam {
  std::string name;
  Tensor tensor;
  bool decay = true;  // weight decay applies (matrices; not biases, layernorms, embeddings)
};

// nanoGPT's rule, by name and rank: decay the 2-D weights of matmuls; not
// biases, layernorm weights or the embedding tables (wte, wpe).
bool default_weight_decay(const std::string& name, const Tensor& t);

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

class AdamW {
 public:
  // Throws if a parameter does not require a gradient: frozen weights must not
  // reach the optimiser.
  AdamW(std::vector<OptimParam> params, AdamWConfig config = {});

  // Frees every parameter's gradient, as PyTorch's zero_grad(set_to_none=True):
  // the next backward writes each gradient fresh (no memset of every buffer,
  // and dW products run with beta 0). A parameter no gradient reaches in a
  // step is then skipped by step(), as PyTorch skips a None gradient.
  void zero_grad();
  void step(float lr);               // one update; parameters without a gradient are skipped
  long long steps_taken() const { return t_; }
  size_t state_floats() const;       // floats of optimiser state (2 per trainable value)
  const std::vector<OptimParam>& params() const { return params_; }

  // The moments, for saving and resuming: per parameter, m then v.
  std::vector<std::vector<float>>& first_moments() { return m_; }
  std::vector<std::vector<float>>& second_moments() { return v_; }
  const std::vector<std::vector<float>>& first_moments() const { return m_; }
  const std::vector<std::vector<float>>& second_moments() const { return v_; }
  void set_steps_taken(long long t) { t_ = t; }

 private:
  std::vector<OptimParam> params_;
  AdamWConfig config_;
  std::vector<std::vector<float>> m_, v_;
  long long t_ = 0;
};

// Scales all gradients so their joint L2 norm is at most max_norm (as
// torch.nn.utils.clip_grad_norm_); returns the norm before clipping.
// max_norm <= 0 only measures.
float clip_grad_norm(const std::vector<OptimParam>& params, float max_norm);

// True when every gradient value is finite.
bool gradients_finite(const std::vector<OptimParam>& params);

// Linear warm-up over `warmup` steps, max_lr · (step + 1) / warmup: it starts
// at max_lr / warmup (step 0 already learns) and reaches max_lr at step
// warmup − 1; then cosine decay to `min_lr` at `total` steps (nanoGPT's
// get_lr). step counts from 0.
float lr_at(long long step, long long warmup, long long total, float max_lr, float min_lr);

}  // namespace ta
