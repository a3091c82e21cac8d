// nn/trainer.h — the training loop shared by pretraining and every adaptation
// method: micro-batches with gradient accumulation, clipping, AdamW over the
// trainable parameters only, a learning-rate schedule, guards, logs, resume.
//
// One optimisation step:
//   for each of grad_accum micro-batches: loss = compute(micro); backward(loss / grad_accum)
//   under MPI: average the gradients over the ranks (nn/distributed.h)
//   if the loss or a gradient is not finite: throw TrainingError (nothing updated)
//   clip the joint gradient norm; AdamW step at lr_at(step); zero the gradients
//
// Determinism: the trainer itself draws no random numbers. Callers sample
// their batch for step s from an Rng seeded by (seed, s), so a run resumed at
// step s draws exactly what the uninterrupted run drew (at 1 thread the
// losses then match bit for bit).
//
// Resume: a checkpoint is the trainable weights, which the caller writes
// (pretrain: model.safetensors), and DIR/optimizer.safetensors: AdamW's two
// moments per parameter as tensors, and in its metadata the step count and
// the fingerprint of the weights they go with. Two files cannot be replaced
// in one atomic step, so save_checkpoint orders its writes:
//   1. optimizer.pending.safetensors  <- the new optimizer state
//   2. save_weights()                 <- the new weights: the commit point
//   3. rename optimizer.pending.safetensors -> optimizer.safetensors
// and load_state takes whichever of the two optimizer files records the
// fingerprint of the weights just loaded. A kill before the new weights are
// in place leaves the old weights and optimizer.safetensors; a kill after
// leaves the new weights and the pending file (or, after step 3, the renamed
// one): there is always a matching pair, old or new. When the match is the
// pending file, load_state does step 3 itself before anything else, since
// the next save's step 1 would overwrite it while the weights still need it.
// Files that do not match — copied together from two checkpoints — are an
// InputError, since resuming from them would continue a run that never
// happened.
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

  // Writes a checkpoint into DIR in the order above; save_weights writes the
  // current values of the trainable parameters (atomically, as every write).
  void save_checkpoint(const std::string& dir, const std::function<void()>& save_weights) const;
  // Call after the weights are loaded into the parameters: restores the
  // optimizer state that belongs to them (renaming a matching pending file
  // into place) and returns the number of steps taken. InputError when no
  // optimizer file in DIR belongs to them.
  long long load_state(const std::string& dir);

 private:
  TrainerOptions options_;
  AdamW optimizer_;
};

// Whether DIR holds optimizer state that load_state can read (either file).
bool has_optimizer_state(const std::string& dir);

// "fnv1a64:" + 16 hex digits: FNV-1a over each parameter's name, shape and
// float32 bytes, in order. An identity check for "the same weights", not a
// defence against someone forging a match.
std::string weights_fingerprint(const std::vector<OptimParam>& params);

// Ctrl-C handling for long runs: after install_interrupt_handler(), the first
// SIGINT sets interrupted() (the loop saves and exits cleanly); a second one
// kills the process as usual.
void install_interrupt_handler();
bool interrupted();

// A CSV log: the header is written when the file is new (or empty); rows are
// appended and flushed, so a resumed run continues the same file.
//
// keep_steps >= 0 is for a log whose first column is the step count: rows
// past that step are dropped first. A run killed after its last checkpoint
// logged steps that its resumption will take again; without the cut they
// would appear twice (a fresh run passes 0 and keeps only the header).
class CsvLog {
 public:
  CsvLog() = default;
  CsvLog(const std::string& path, const std::vector<std::string>& columns, long long keep_steps = -1);
  void row(const std::vector<std::string>& values);
  bool open() const { return file_ != nullptr; }
  ~CsvLog();
  CsvLog(const CsvLog&) = delete;
  CsvLog& operator=(const CsvLog&) = delete;

 private:
  static std::string rows_through(const std::string& text, long long steps);
  std::FILE* file_ = nullptr;
};

}  // namespace ta
