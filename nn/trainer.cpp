// nn/trainer.cpp — see trainer.h.
#include "nn/trainer.h"

#include <atomic>
#include <cmath>
#include <csignal>

#include "autograd/ops.h"
#include "data/io.h"
#include "nn/safetensors.h"

namespace ta {

Trainer::Trainer(std::vector<OptimParam> params, TrainerOptions options)
    : options_(options), optimizer_(std::move(params), options.adamw) {
  if (options_.grad_accum < 1) throw InputError("--grad-accum must be at least 1");
  if (options_.steps < 1) throw InputError("--steps must be at least 1");
  if (!(options_.lr > 0.0f)) throw InputError("--lr must be positive");
}

StepStats Trainer::step(long long step, const std::function<MicroBatch(int micro)>& compute) {
  StepStats stats;
  const float min_lr = options_.min_lr >= 0.0f ? options_.min_lr : options_.lr / 10.0f;
  stats.lr = lr_at(step, options_.warmup, options_.steps, options_.lr, min_lr);
  optimizer_.zero_grad();
  double total = 0;
  for (int micro = 0; micro < options_.grad_accum; micro++) {
    MicroBatch mb = compute(micro);
    const float value = mb.loss.item();
    if (!std::isfinite(value)) {
      clear_tape();
      throw TrainingError("step " + std::to_string(step) + ": the loss is " + std::to_string(value));
    }
    total += value;
    stats.tokens += mb.tokens;
    // Dividing each micro-batch loss by grad_accum makes the accumulated
    // gradient the gradient of the mean loss over the whole step.
    backward(options_.grad_accum == 1 ? mb.loss : mul_scalar(mb.loss, 1.0f / static_cast<float>(options_.grad_accum)));
  }
  stats.loss = static_cast<float>(total / options_.grad_accum);
  if (!gradients_finite(optimizer_.params()))
    throw TrainingError("step " + std::to_string(step) + ": a gradient is not finite");
  stats.grad_norm = clip_grad_norm(optimizer_.params(), options_.clip);
  optimizer_.step(stats.lr);
  return stats;
}

void Trainer::save_state(const std::string& dir) const {
  std::vector<NamedArray> arrays;
  auto& params = optimizer_.params();
  for (size_t k = 0; k < params.size(); k++) {
    std::vector<int64_t> shape;
    for (int i = 0; i < params[k].tensor.rank(); i++) shape.push_back(params[k].tensor.size(i));
    arrays.push_back({"exp_avg." + params[k].name, shape, optimizer_.first_moments()[k]});
    arrays.push_back({"exp_avg_sq." + params[k].name, shape, optimizer_.second_moments()[k]});
  }
  // The step count rides along as a scalar (exact in float32 below 2^24 steps).
  arrays.push_back({"step", {}, {static_cast<float>(optimizer_.steps_taken())}});
  write_safetensors(dir + "/optimizer.safetensors", arrays);
}

long long Trainer::load_state(const std::string& dir) {
  const std::string path = dir + "/optimizer.safetensors";
  std::vector<NamedArray> arrays = read_safetensors(path);
  auto& params = optimizer_.params();
  if (arrays.size() != 2 * params.size() + 1)
    throw InputError(path + ": holds " + std::to_string(arrays.size()) + " arrays, expected " +
                     std::to_string(2 * params.size() + 1) + " (two moments per trainable parameter and the step)");
  auto find = [&](const std::string& name) -> const NamedArray& {
    for (auto& a : arrays)
      if (a.name == name) return a;
    throw InputError(path + ": missing " + name);
  };
  for (size_t k = 0; k < params.size(); k++) {
    for (int which = 0; which < 2; which++) {
      const std::string name = (which == 0 ? "exp_avg." : "exp_avg_sq.") + params[k].name;
      const NamedArray& moment = find(name);
      if (static_cast<int64_t>(moment.values.size()) != params[k].tensor.numel())
        throw InputError(path + ": " + name + " has " + std::to_string(moment.values.size()) + " values, expected " +
                         std::to_string(params[k].tensor.numel()));
      (which == 0 ? optimizer_.first_moments() : optimizer_.second_moments())[k] = moment.values;
    }
  }
  const NamedArray& step = find("step");
  if (step.values.size() != 1 || !(step.values[0] >= 0.0f)) throw InputError(path + ": step is not a count");
  const long long steps = static_cast<long long>(step.values[0]);
  optimizer_.set_steps_taken(steps);
  return steps;
}

// ---------------------------------------------------------------------------
// Interrupts

static std::atomic<bool> g_interrupted{false};

static void on_sigint(int) {
  if (g_interrupted.exchange(true)) {  // the second Ctrl-C: stop now
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

void install_interrupt_handler() { std::signal(SIGINT, on_sigint); }
bool interrupted() { return g_interrupted.load(); }

// ---------------------------------------------------------------------------
// CSV log

CsvLog::CsvLog(const std::string& path, const std::vector<std::string>& columns) {
  bool fresh = !file_exists(path);
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw InputError(path + ": cannot open the log for writing");
  if (fresh || std::ftell(file_) == 0) row(columns);
}

void CsvLog::row(const std::vector<std::string>& values) {
  for (size_t i = 0; i < values.size(); i++) std::fprintf(file_, "%s%s", i ? "," : "", values[i].c_str());
  std::fprintf(file_, "\n");
  std::fflush(file_);
}

CsvLog::~CsvLog() {
  if (file_) std::fclose(file_);
}

}  // namespace ta
