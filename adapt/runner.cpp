// adapt/runner.cpp — see runner.h.
#include "adapt/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>

#include "autograd/ops.h"
#include "nn/distributed.h"
#include "nn/lm_data.h"
#include "nn/progress.h"
#include "nn/trainer.h"

namespace ta::adapt {

RunOptions default_run_options(const std::string& method) {
  RunOptions o;
  o.steps = 300;
  if (method == "finetune") o.lr = 1e-4f;  // 10x below pretraining's 1e-3
  else if (method == "bitfit") {
    o.lr = 3e-3f;
    o.steps = 1000;  // on spam: 0.907 test accuracy after 300 steps, 0.932 after 1000
  }
  else if (method == "lora" || method == "adapter") o.lr = 2e-3f;
  else if (method == "prompt" || method == "prefix") o.lr = 1e-1f;  // swept: tools/experiments/FINDINGS.md
  else if (method == "probe" || method == "probe-mlp") {
    o.lr = 1e-2f;
    o.steps = 1000;  // cheap: the head trains on cached features
  }
  return o;
}

namespace {

// Where the label logits of a split come from: the head on features cached
// once when the method's features cannot change (probing), else a forward
// pass per batch (AdaptedModel::label_logits).
class LogitSource {
 public:
  LogitSource(const AdaptedModel& adapted, const std::vector<EncodedExample>& examples, bool cached, int batch,
              const std::string& feature_cache = "")
      : adapted_(adapted), examples_(examples) {
    // (A verbalizer over multi-token words reads more than pooled features: never cached.)
    if (cached && !examples.empty() && !adapted.head->needs_text_keys())
      cache_ = pooled_features(adapted, examples, batch, feature_cache);  // (N,C)
  }
  // (B,L) for examples[indices].
  Tensor logits(const std::vector<size_t>& indices, Rng* dropout_rng) const {
    if (!cache_.defined()) return adapted_.label_logits(make_batch(examples_, indices), dropout_rng);
    std::vector<int> rows(indices.begin(), indices.end());
    return adapted_.head->logits(*adapted_.model, embedding(cache_, rows, Shape{static_cast<int>(rows.size())}));
  }
  std::vector<int> labels(const std::vector<size_t>& indices) const {
    std::vector<int> labels;
    for (size_t i : indices) labels.push_back(examples_[i].label);
    return labels;
  }
  size_t size() const { return examples_.size(); }
  // Batches for scoring every example once: by length when the LM runs (less padding).
  std::vector<std::vector<size_t>> evaluation_batches(int batch) const {
    return cache_.defined() ? sequential_batches(examples_.size(), batch) : length_sorted_batches(examples_, batch);
  }
  // Tokens the LM reads for these examples (progress and throughput): none when cached.
  long long tokens(const std::vector<size_t>& indices) const {
    long long n = 0;
    for (size_t i : indices) n += cache_.defined() ? 0 : static_cast<long long>(examples_[i].ids.size());
    return n;
  }

 private:
  const AdaptedModel& adapted_;
  const std::vector<EncodedExample>& examples_;
  Tensor cache_;
};

std::vector<std::vector<float>> logits_of(const LogitSource& source, int batch) {
  NoGradGuard no_grad;
  std::vector<std::vector<float>> rows(source.size());
  for (const std::vector<size_t>& indices : source.evaluation_batches(batch)) {
    Tensor logits = source.logits(indices, nullptr);  // (B,L)
    const int L = logits.size(1);
    for (size_t r = 0; r < indices.size(); r++) rows[indices[r]].assign(logits.data() + r * L, logits.data() + (r + 1) * L);
  }
  return rows;
}

Evaluation evaluation_of(const std::vector<std::vector<float>>& logits, const std::vector<int>& targets, int num_labels) {
  std::vector<int> predictions;
  std::vector<float> losses;
  for (size_t i = 0; i < logits.size(); i++) {
    const std::vector<float>& row = logits[i];
    const float top = *std::max_element(row.begin(), row.end());
    double sum = 0;
    for (float x : row) sum += std::exp(static_cast<double>(x - top));
    predictions.push_back(static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin()));
    losses.push_back(static_cast<float>(std::log(sum) + top - row[static_cast<size_t>(targets[i])]));
  }
  return score(predictions, targets, losses, num_labels);
}

Evaluation evaluate_source(const AdaptedModel& a, const LogitSource& source, int batch) {
  std::vector<size_t> all(source.size());
  for (size_t i = 0; i < all.size(); i++) all[i] = i;
  return evaluation_of(logits_of(source, batch), source.labels(all), a.head->num_labels());
}

TrainerOptions trainer_options(const RunOptions& o, long long steps) {
  TrainerOptions t;
  t.steps = steps;
  t.lr = o.lr;
  t.warmup = o.warmup < 0 ? steps / 10 : o.warmup;
  t.adamw.weight_decay = o.weight_decay;
  return t;
}

long long total_steps(const RunOptions& o, const EpochSampler& sampler) {
  if (o.steps > 0) return o.steps;
  if (o.epochs <= 0) throw InputError("give --steps N or --epochs N (> 0)");
  return std::max(1LL, static_cast<long long>(std::ceil(o.epochs * static_cast<double>(sampler.steps_per_epoch()))));
}

std::string fixed(double x, int digits = 4) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, x);
  return text;
}

// 4 significant digits: a learning rate of 3e-06 stays readable.
std::string significant(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", x);
  return text;
}

}  // namespace

// The cache file of these features: a hash of what determines them.
static std::string feature_cache_path(const AdaptedModel& a, const std::vector<EncodedExample>& examples, const std::string& folder) {
  const std::string key = base_model_fingerprint(a.base_dir) + " pooling " + pooling_name(a.head->pooling()) + " prefix " +
                          std::to_string(a.prefix_length()) + (a.model->wte.weight_bf16 ? " bf16" : "");
  uint64_t hash = fnv1a64(key.data(), key.size());
  for (const EncodedExample& e : examples) {
    const int64_t length = static_cast<int64_t>(e.ids.size());
    hash = fnv1a64(&length, sizeof length, hash);
    hash = fnv1a64(e.ids.data(), e.ids.size() * sizeof(int), hash);
  }
  char name[64];
  std::snprintf(name, sizeof name, "/features-%016llx.safetensors", static_cast<unsigned long long>(hash));
  return folder + name;
}

Tensor pooled_features(const AdaptedModel& a, const std::vector<EncodedExample>& examples, int batch,
                       const std::string& feature_cache) {
  NoGradGuard no_grad;
  const size_t C = static_cast<size_t>(a.model->config().n_embd);
  const Shape shape{static_cast<int>(examples.size()), static_cast<int>(C)};
  const std::string path = feature_cache.empty() ? "" : feature_cache_path(a, examples, feature_cache);
  if (!path.empty() && file_exists(path)) {
    try {
      std::vector<NamedArray> saved = read_safetensors(path);
      if (saved.size() == 1 && saved[0].values.size() == examples.size() * C) return Tensor::from(shape, saved[0].values);
    } catch (const InputError&) {  // a damaged cache file is computed again and replaced
    }
  }
  std::vector<float> values(examples.size() * C);
  for (const std::vector<size_t>& indices : length_sorted_batches(examples, batch)) {
    Tensor f = a.features(make_batch(examples, indices), nullptr);  // (B,C)
    for (size_t r = 0; r < indices.size(); r++) std::copy_n(f.data() + r * C, C, values.begin() + static_cast<long>(indices[r] * C));
  }
  if (!path.empty() && dist::is_root()) {  // under MPI every rank computes them, rank 0 keeps them
    make_dirs(feature_cache);
    write_safetensors(path, {{"features", {shape[0], shape[1]}, values}});
  }
  return Tensor::from(shape, values);  // (N,C)
}

std::vector<std::vector<float>> predict_logits(const AdaptedModel& a, const std::vector<EncodedExample>& examples,
                                               int batch) {
  return logits_of(LogitSource(a, examples, false, batch), batch);
}

LMLoss lm_loss(const AdaptedModel& a, const std::vector<int>& tokens) {
  const int window = a.model->config().n_positions - a.prefix_length();  // no label words follow: not max_text_tokens()
  return windowed_lm_loss(*a.model, tokens, window, [&](int B) { return a.forward_options(B, nullptr); });
}

Evaluation evaluate(const AdaptedModel& a, const std::vector<EncodedExample>& examples, int batch,
                    const std::string& feature_cache) {
  const bool cached = a.method->features_frozen() && !feature_cache.empty();
  return evaluate_source(a, LogitSource(a, examples, cached, batch, feature_cache), batch);
}

TrainResult train(AdaptedModel& a, const std::vector<EncodedExample>& train_split,
                  const std::vector<EncodedExample>& val_split, const RunOptions& o) {
  const auto start = std::chrono::steady_clock::now();  // the probe's feature caching counts as training time
  const bool cached = a.method->features_frozen();
  const std::vector<EncodedExample> no_examples;
  LogitSource train_source(a, train_split, cached, o.eval_batch, o.feature_cache);
  LogitSource val_source(a, o.validate ? val_split : no_examples, cached, o.eval_batch, o.feature_cache);
  EpochSampler sampler(train_split.size(), o.batch, o.seed);
  const long long steps = total_steps(o, sampler);
  std::vector<OptimParam> params = a.trainable_parameters();
  if (params.empty()) throw InputError(a.method->name() + " with a " + a.head->config().type + " head has nothing to train");
  Trainer trainer(params, trainer_options(o, steps));
  TrainResult result;
  result.optimizer_state_floats = trainer.optimizer().state_floats();
  if (result.optimizer_state_floats != 2 * static_cast<size_t>(trainable_report(a).trainable))
    throw std::logic_error("train: the optimiser holds state for values that are not trainable");

  std::unique_ptr<CsvLog> log;
  if (!o.log_path.empty() && dist::is_root()) log = std::make_unique<CsvLog>(o.log_path, std::vector<std::string>{"step", "loss", "lr", "val_accuracy", "val_loss"});
  std::optional<Progress> progress;
  if (o.show_progress) progress.emplace("adapt " + a.method->name(), steps, 0, std::max(1LL, steps / 20));
  // Under MPI (nn/distributed.h) each rank takes its rows of every batch and
  // draws its own dropout masks; rank 0 alone validates, logs and reports.
  const auto [shard_first, shard_end] = dist::shard(o.batch, "--batch");
  const uint64_t dropout_seed = o.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(dist::rank()));
  a.method->set_training(true);
  for (long long step = 0; step < steps; step++) {
    if (dist::any_rank(interrupted())) {  // Ctrl-C: every rank stops at the same step
      result.stopped = true;
      break;
    }
    Rng rng = step_rng(dropout_seed, step);
    const std::vector<size_t> batch_indices = sampler.indices_for_step(step);
    const std::vector<size_t> indices(batch_indices.begin() + shard_first, batch_indices.begin() + shard_end);
    StepStats s = trainer.step(step, [&](int) {
      Tensor logits = train_source.logits(indices, &rng);  // (B,L)
      return MicroBatch{cross_entropy(logits, train_source.labels(indices)), train_source.tokens(indices)};
    });
    result.losses.push_back(s.loss);
    result.steps = step + 1;
    const bool last = step + 1 == steps;
    const bool eval = val_source.size() > 0 && dist::is_root() &&
                      (last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0));
    std::vector<std::string> row{std::to_string(step + 1), fixed(s.loss), significant(s.lr), "", ""};
    if (eval) {
      a.method->set_training(false);
      result.val = evaluate_source(a, val_source, o.eval_batch);
      a.method->set_training(true);
      row[3] = fixed(result.val.accuracy), row[4] = fixed(result.val.loss);
      if (progress) progress->note("step " + row[0] + ": val accuracy " + row[3] + " loss " + row[4]);
    }
    if (progress) progress->update(step, s.loss, s.tokens);
    if (log) log->row(row);
  }
  a.method->set_training(false);
  if (progress) progress->finish();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace ta::adapt
