// nn/trainer.h — the training loop shared by pretraining and every adaptation
// method: micro-batches with gradient accumulation, clipping, AdamW over the
// trainable parameters only, a learning-rate schedule, guards, logs, resume.
//
// One optimisation step:
//   for each of grad_accum micro-batches: loss = compute(micro); backward(loss / grad_accum)
//   if the loss or a gradient is not finite: throw TrainingError (nothing updated)
//   clip the joint gradient norm; AdamW step at lr_at(step); zero the gradients
//
// Determinism: the trainer itself draws no random numbers. Callers sample
// their batch for step s from an Rng seeded by (seed, s), so a run resumed at
// step s draws exactly what the uninterrupted run drew (at 1 thread the
// losses then match bit for bit).
//
// Resume: save_state / load_state store AdamW's moments and the step count in
// `optimizer.safetensors` beside the checkpoint; the parameters themselves are
// the checkpoint's.
#pragma once
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nn/optim.h"

namespace ta {

struct TrainerOptions {
  long long steps = 1000;     // total optimisation steps
  float lr = 1e-3f;           // peak learning rate
  float min_lr = -1.0f;       // floor of the cosine decay; < 0 means lr / 10
  long long warmup = 0;       // steps of linear warm-up
  int grad_accum = 1;         // micro-batches per step
  float clip = 1.0f;          // max gradient norm; <= 0 disables clipping
  AdamWConfig adamw;
};

// A non-finite loss or gradient: the run stops; the caller keeps its last good checkpoint.
struct TrainingError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct StepStats {
  float loss = 0;       // mean over the micro-batches
  float grad_norm = 0;  // before clipping
  float lr = 0;
  long long tokens = 0;
};

// What compute(micro) returns: the micro-batch's loss (a scalar on the tape)
// and how many tokens (or examples) it covered, for throughput reporting.
struct MicroBatch {
  Tensor loss;
  long long tokens = 0;
};

class Trainer {
 public:
  Trainer(std::vector<OptimParam> params, TrainerOptions options);

  // Runs optimisation step `step` (0-based; sets the learning rate).
  StepStats step(long long step, const std::function<MicroBatch(int micro)>& compute);

  AdamW& optimizer() { return optimizer_; }
  const TrainerOptions& options() const { return options_; }

  // AdamW moments + step count, in DIR/optimizer.safetensors (atomic).
  void save_state(const std::string& dir) const;
  // Restores what save_state wrote; returns the number of steps taken.
  // InputError when the file does not match these parameters.
  long long load_state(const std::string& dir);

 private:
  TrainerOptions options_;
  AdamW optimizer_;
};

// Ctrl-C handling for long runs: after install_interrupt_handler(), the first
// SIGINT sets interrupted() (the loop saves and exits cleanly); a second one
// kills the process as usual.
void install_interrupt_handler();
bool interrupted();

// A CSV log: the header is written when the file is new (or empty); rows are
// appended and flushed, so a resumed run continues the same file.
class CsvLog {
 public:
  CsvLog() = default;
  CsvLog(const std::string& path, const std::vector<std::string>& columns);
  void row(const std::vector<std::string>& values);
  bool open() const { return file_ != nullptr; }
  ~CsvLog();
  CsvLog(const CsvLog&) = delete;
  CsvLog& operator=(const CsvLog&) = delete;

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace ta
