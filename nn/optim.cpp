// nn/optim.cpp — see optim.h.
#include "nn/optim.h"

#include <cmath>
#include <stdexcept>

namespace ta {

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool default_weight_decay(const std::string& name, const Tensor& t) {
  if (t.rank() < 2) return false;  // biases, layernorm weights and biases
  return !(ends_with(name, "wte.weight") || ends_with(name, "wpe.weight"));
}

AdamW::AdamW(std::vector<OptimParam> params, AdamWConfig config) : params_(std::move(params)), config_(config) {
  for (auto& p : params_) {
    if (!p.tensor.requires_grad())
      throw std::invalid_argument("AdamW: parameter " + p.name + " is frozen; build the optimiser from trainable parameters only");
    m_.emplace_back(static_cast<size_t>(p.tensor.numel()), 0.0f);
    v_.emplace_back(static_cast<size_t>(p.tensor.numel()), 0.0f);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) p.tensor.drop_grad();
}

size_t AdamW::state_floats() const {
  size_t n = 0;
  for (auto& m : m_) n += 2 * m.size();
  return n;
}

void AdamW::step(float lr) {
  t_++;
  const float b1 = config_.beta1, b2 = config_.beta2;
  const float bias1 = 1.0f - static_cast<float>(std::pow(b1, static_cast<double>(t_)));
  const float bias2_sqrt = std::sqrt(1.0f - static_cast<float>(std::pow(b2, static_cast<double>(t_))));
  const float step_size = lr / bias1;
  for (size_t k = 0; k < params_.size(); k++) {
    Tensor& p = params_[k].tensor;
    if (!p.has_grad()) continue;
    float* w = p.data();
    const float* g = p.grad();
    float* m = m_[k].data();
    float* v = v_[k].data();
    const float decay = params_[k].decay ? 1.0f - lr * config_.weight_decay : 1.0f;
    const int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
      w[i] *= decay;
      m[i] = b1 * m[i] + (1.0f - b1) * g[i];
      v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
      w[i] -= step_size * m[i] / (std::sqrt(v[i]) / bias2_sqrt + config_.eps);
    }
  }
}

float clip_grad_norm(const std::vector<OptimParam>& params, float max_norm) {
  double total = 0;
  for (auto& p : params) {
    if (!p.tensor.has_grad()) continue;
    const float* g = p.tensor.grad();
    for (int64_t i = 0; i < p.tensor.numel(); i++) total += static_cast<double>(g[i]) * g[i];
  }
  const float norm = static_cast<float>(std::sqrt(total));
  if (max_norm > 0.0f && norm > max_norm) {
    const float scale = max_norm / (norm + 1e-6f);
    for (auto& p : params) {
      if (!p.tensor.has_grad()) continue;
      Tensor t = p.tensor;
      float* g = t.grad_or_zeros();
      for (int64_t i = 0; i < t.numel(); i++) g[i] *= scale;
    }
  }
  return norm;
}

bool gradients_finite(const std::vector<OptimParam>& params) {
  for (auto& p : params) {
    if (!p.tensor.has_grad()) continue;
    const float* g = p.tensor.grad();
    for (int64_t i = 0; i < p.tensor.numel(); i++)
      if (!std::isfinite(g[i])) return false;
  }
  return true;
}

float lr_at(long long step, long long warmup, long long total, float max_lr, float min_lr) {
  if (step < warmup) return max_lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
  if (step >= total) return min_lr;
  const long long decay_steps = total - warmup;
  if (decay_steps <= 0) return max_lr;
  double ratio = static_cast<double>(step - warmup) / static_cast<double>(decay_steps);
  double coeff = 0.5 * (1.0 + std::cos(3.14159265358979323846 * ratio));
  return min_lr + static_cast<float>(coeff) * (max_lr - min_lr);
}

}  // namespace ta
