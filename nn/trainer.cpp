// nn/trainer.cpp — see trainer.h.
#include "nn/trainer.h"

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>

#include "autograd/ops.h"
#include "data/io.h"
#include "nn/distributed.h"
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
  // Under MPI each rank holds the gradient of its shard's mean loss: average
  // them (nn/distributed.h), and the losses and token counts with them.
  if (dist::world_size() > 1) {
    dist::allreduce_mean_gradients(optimizer_.params());
    total = dist::allreduce_sum(total) / dist::world_size();
    stats.tokens = static_cast<long long>(dist::allreduce_sum(static_cast<double>(stats.tokens)));
  }
  stats.loss = static_cast<float>(total / options_.grad_accum);
  if (!gradients_finite(optimizer_.params()))
    throw TrainingError("step " + std::to_string(step) + ": a gradient is not finite");
  stats.grad_norm = clip_grad_norm(optimizer_.params(), options_.clip);
  optimizer_.step(stats.lr);
  return stats;
}

// ---------------------------------------------------------------------------
// Checkpoints (the protocol is in trainer.h)

static const char* kStateFile = "optimizer.safetensors";
static const char* kPendingFile = "optimizer.pending.safetensors";

std::string weights_fingerprint(const std::vector<OptimParam>& params) {
  uint64_t hash = kFnv1a64Basis;
  for (const OptimParam& param : params) {
    hash = fnv1a64(param.name.c_str(), param.name.size() + 1, hash);  // with its NUL: "ab","c" differs from "a","bc"
    for (int i = 0; i < param.tensor.rank(); i++) {
      const int64_t dim = param.tensor.size(i);
      hash = fnv1a64(&dim, sizeof dim, hash);
    }
    hash = fnv1a64(param.tensor.data(), static_cast<size_t>(param.tensor.numel()) * sizeof(float), hash);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return std::string("fnv1a64:") + hex;
}

bool has_optimizer_state(const std::string& dir) {
  return file_exists(dir + "/" + kStateFile) || file_exists(dir + "/" + kPendingFile);
}

void Trainer::save_checkpoint(const std::string& dir, const std::function<void()>& save_weights) const {
  std::vector<NamedArray> arrays;
  auto& params = optimizer_.params();
  for (size_t k = 0; k < params.size(); k++) {
    std::vector<int64_t> shape;
    for (int i = 0; i < params[k].tensor.rank(); i++) shape.push_back(params[k].tensor.size(i));
    arrays.push_back({"exp_avg." + params[k].name, shape, optimizer_.first_moments()[k]});
    arrays.push_back({"exp_avg_sq." + params[k].name, shape, optimizer_.second_moments()[k]});
  }
  const SafetensorsMetadata metadata = {{"format", "pt"},
                                        {"step", std::to_string(optimizer_.steps_taken())},
                                        {"weights_fingerprint", weights_fingerprint(params)}};
  write_safetensors(dir + "/" + kPendingFile, arrays, metadata);
  save_weights();
  rename_durable(dir + "/" + kPendingFile, dir + "/" + kStateFile);
}

static std::string metadata_value(const SafetensorsMetadata& metadata, const std::string& key) {
  for (const auto& [k, v] : metadata)
    if (k == key) return v;
  return "";
}

// The "step" entry of an optimizer file: a count, written by std::to_string.
static long long parse_steps(const SafetensorsMetadata& metadata, const std::string& path) {
  const std::string text = metadata_value(metadata, "step");
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    throw InputError(path + ": __metadata__ step is '" + text + "', not a count of steps");
  return std::stoll(text);
}

// Copies an optimizer file's moments into `optimizer`, checking names and sizes.
static void restore_moments(AdamW& optimizer, const std::vector<NamedArray>& arrays, const std::string& path) {
  auto& params = optimizer.params();
  if (arrays.size() != 2 * params.size())
    throw InputError(path + ": holds " + std::to_string(arrays.size()) + " arrays, expected " +
                     std::to_string(2 * params.size()) + " (two moments per trainable parameter)");
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
      (which == 0 ? optimizer.first_moments() : optimizer.second_moments())[k] = moment.values;
    }
  }
}

long long Trainer::load_state(const std::string& dir) {
  const std::string loaded = weights_fingerprint(optimizer_.params());
  std::string seen;  // what the optimizer files record, for the error message
  for (const std::string name : {kStateFile, kPendingFile}) {
    const std::string path = dir + "/" + name;
    if (!file_exists(path)) continue;
    SafetensorsMetadata metadata;
    const std::vector<NamedArray> arrays = read_safetensors(path, &metadata);
    const std::string recorded = metadata_value(metadata, "weights_fingerprint");
    if (recorded == loaded) {
      const long long steps = parse_steps(metadata, path);
      restore_moments(optimizer_, arrays, path);
      optimizer_.set_steps_taken(steps);
      // The pending file matches: finish the save a kill interrupted, or the
      // next save would overwrite the only state that matches these weights
      // before it replaces them.
      if (name == kPendingFile) rename_durable(path, dir + "/" + kStateFile);
      return steps;
    }
    seen += (seen.empty() ? "" : ", ") + name +
            (recorded.empty() ? " records no weights (saved by an older tinyadapt)"
                              : " is step " + metadata_value(metadata, "step") + " of weights " + recorded);
  }
  if (seen.empty()) throw InputError(dir + "/" + kStateFile + ": cannot open: no optimizer state to resume from");
  throw InputError(dir + "/" + kStateFile + ": the optimizer state belongs to other weights than those loaded (" +
                   loaded + "; " + seen + "): model and optimizer come from different checkpoints, so the run "
                   "cannot resume exactly");
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

CsvLog::CsvLog(const std::string& path, const std::vector<std::string>& columns, long long keep_steps) {
  if (keep_steps >= 0 && file_exists(path)) write_file_atomic(path, rows_through(read_file(path), keep_steps));
  bool fresh = !file_exists(path);
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw InputError(path + ": cannot open the log for writing");
  if (fresh || std::ftell(file_) == 0) row(columns);
}

// The header line and the whole rows whose first column (the step) is at
// most `steps`; a row cut short by a kill (no newline) is dropped too.
std::string CsvLog::rows_through(const std::string& text, long long steps) {
  std::string kept;
  for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string line = text.substr(start, end + 1 - start);
    char* after = nullptr;
    const long long step = std::strtoll(line.c_str(), &after, 10);
    if (start == 0 || (after != line.c_str() && *after == ',' && step <= steps)) kept += line;
  }
  return kept;
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
