// adapt/runner.h — training and evaluating an adapted model on a task.
//
// Training minimises the cross-entropy of the head's label logits with
// nn/Trainer: AdamW over AdaptedModel::trainable_parameters() only (so the
// optimiser holds 2 floats of state per trainable value and none for the
// frozen base), linear warm-up then cosine decay, gradient clipping at 1.
// Batches come from a seeded shuffle per epoch (task_data.h); the validation
// split is scored every eval_every steps; a CSV log (step, loss, lr,
// val_accuracy, val_loss) is written when log_path is set.
//
// Probing (method.features_frozen()): nothing below the head can change, so
// the pooled features of each split are computed once, without a tape, and
// the head is trained and evaluated on that cache; the LM never runs again
// (Hewitt & Liang's probes, and the "linear probe" of Kumar et al. 2022).
// With a feature cache folder, those features are also kept on disk, one file
// per (base weights, pooling, examples), so that runs in other processes
// (compare's seeds and train sizes) compute each set once.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "adapt/adapter_dir.h"
#include "adapt/report.h"
#include "adapt/task_data.h"
#include "nn/lm_data.h"

namespace ta::adapt {

struct RunOptions {
  long long steps = 0;        // optimisation steps; 0 = from epochs
  double epochs = 0;          // used when steps is 0: ceil(epochs · n_train / batch)
  float lr = 1e-3f;           // peak learning rate
  int batch = 16;
  int eval_batch = 32;
  long long warmup = -1;      // < 0: steps / 10
  long long eval_every = 0;   // 0: validation only at the end
  bool validate = true;       // false: the val split is never scored (compare's runs read test and ood only)
  float weight_decay = 0.0f;  // AdamW's decoupled decay on matrices (Hugging Face Trainer's default 0)
  uint64_t seed = 1337;       // batch order and dropout
  std::string log_path;       // CSV log; "" = none
  std::string feature_cache;  // probing: a folder of pooled features shared by runs; "" = none (see below)
  bool show_progress = true;
};

// Defaults that work on the built-in tasks with a small pretrained GPT
// (tuned on spam and era; adapt/README.md lists them): the learning rate and
// the number of steps for `method`.
RunOptions default_run_options(const std::string& method);

struct TrainResult {
  long long steps = 0;
  double seconds = 0;
  std::vector<float> losses;          // one per step
  Evaluation val;                     // at the end (n = 0 without a val split)
  size_t optimizer_state_floats = 0;  // AdamW's m and v, = 2 × trainable
  bool stopped = false;               // a Ctrl-C (on any rank, under MPI) ended training early
};

// Trains adapted's trainable parameters (method + head) on `train`.
TrainResult train(AdaptedModel& adapted, const std::vector<EncodedExample>& train_split,
                  const std::vector<EncodedExample>& val_split, const RunOptions& options);

// Accuracy, macro-F1 and mean loss of the adapted model on `examples`;
// probes read their features from `feature_cache` when given.
Evaluation evaluate(const AdaptedModel& adapted, const std::vector<EncodedExample>& examples, int batch = 32,
                    const std::string& feature_cache = "");

// Label logits (N, L) of every example, in order, without a tape.
std::vector<std::vector<float>> predict_logits(const AdaptedModel& adapted, const std::vector<EncodedExample>& examples,
                                               int batch = 32);

// Next-token loss of the adapted LM (method applied, no head) over `tokens`,
// cut into consecutive windows of max_text_tokens() so the method's prefix
// fits in the context; each token but the first is predicted once.
LMLoss lm_loss(const AdaptedModel& adapted, const std::vector<int>& tokens);

// Pooled features (N, C) of every example (the probe's cache), without a tape;
// read from and written to the folder `feature_cache` when given: the file
// is named by a hash of the base's weights, the pooling, the method's prefix
// length and every example's ids, and a file that does not load as (N, C) is
// computed again.
Tensor pooled_features(const AdaptedModel& adapted, const std::vector<EncodedExample>& examples, int batch = 32,
                       const std::string& feature_cache = "");

}  // namespace ta::adapt
