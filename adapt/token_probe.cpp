// adapt/token_probe.cpp — see token_probe.h. The properties' positions and
// labels are built in probe_tasks.cpp; this file turns them into features
// and trains the probes.
#include "adapt/token_probe.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>

#include "adapt/head.h"
#include "autograd/ops.h"
#include "nn/lm_data.h"
#include "nn/trainer.h"

namespace ta::adapt {

std::vector<int> control_labels(int n_types, const std::vector<double>& distribution, uint64_t seed) {
  Rng rng(seed ^ 0xC0417011ull);
  std::vector<int> labels(static_cast<size_t>(n_types));
  for (int& label : labels) {
    double u = rng.uniform(), cumulative = 0;
    label = static_cast<int>(distribution.size()) - 1;  // where rounding leaves u past the last sum
    for (size_t c = 0; c < distribution.size(); c++)
      if (u < (cumulative += distribution[c])) {
        label = static_cast<int>(c);
        break;
      }
  }
  return labels;
}

namespace {

// The probed positions of a set of windows, in window order.
struct ProbedPositions {
  std::vector<int> labels;  // (N)
  std::vector<int> types;   // (N)
};

ProbedPositions probed_positions(const std::vector<ProbeWindow>& windows) {
  ProbedPositions out;
  for (const ProbeWindow& w : windows)
    for (size_t t = 0; t < w.ids.size(); t++)
      if (w.labels[t] >= 0) {
        out.labels.push_back(w.labels[t]);
        out.types.push_back(w.types[t]);
      }
  return out;
}

// Runs body(i) for i < n, one i per OpenMP thread at a time. The work here
// is many small products (a window of 128 tokens, a probe's batch of 64),
// too small to split well over threads: on a busy machine the splitting cost
// ten times the work. Inside a parallel region the ops stay on their thread,
// so every result is also independent of the thread count.
void parallel_for_each(size_t n, const std::function<void(size_t)>& body) {
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic)
  for (long i = 0; i < static_cast<long>(n); i++) {
    try {
      body(static_cast<size_t>(i));
    } catch (...) {
#pragma omp critical(token_probe_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// The residual stream at the probed positions of `windows`: one (N,C) tensor
// per layer, 0 = the embeddings. One forward pass per window, no tape.
std::vector<Tensor> layer_features(const GPT& model, const std::vector<ProbeWindow>& windows) {
  const size_t C = static_cast<size_t>(model.config().n_embd), L = static_cast<size_t>(model.n_layer()) + 1;
  std::vector<size_t> first_row(windows.size() + 1, 0);  // window w's rows start at first_row[w]
  for (size_t w = 0; w < windows.size(); w++) first_row[w + 1] = first_row[w] + static_cast<size_t>(probed_count(windows[w]));
  std::vector<Tensor> features;
  for (size_t l = 0; l < L; l++) features.push_back(Tensor::empty({static_cast<int>(first_row.back()), static_cast<int>(C)}));
  parallel_for_each(windows.size(), [&](size_t w) {
    NoGradGuard no_grad;  // on this thread: the flag is per thread
    const ProbeWindow& window = windows[w];
    std::vector<Tensor> layers;
    ForwardOptions options;
    options.layer_outputs = &layers;
    model.forward(window.ids, 1, static_cast<int>(window.ids.size()), options);
    size_t row = first_row[w];
    for (size_t t = 0; t < window.ids.size(); t++) {
      if (window.labels[t] < 0) continue;
      for (size_t l = 0; l < L; l++)
        std::copy_n(layers[l].data() + t * C, C, features[l].data() + row * C);  // (1,T,C) -> row of (N,C)
      row++;
    }
  });
  return features;
}

// Standardises every column of train (N,C) and test (M,C) with train's mean
// and sd, so one learning rate suits every layer whatever its scale.
void standardise(Tensor& train, Tensor& test) {
  const size_t N = static_cast<size_t>(train.size(0)), C = static_cast<size_t>(train.size(1));
  std::vector<double> mean(C, 0.0), var(C, 0.0);
  const float* x = train.data();
  for (size_t i = 0; i < N; i++)
    for (size_t c = 0; c < C; c++) mean[c] += x[i * C + c];
  for (double& m : mean) m /= static_cast<double>(N);
  for (size_t i = 0; i < N; i++)
    for (size_t c = 0; c < C; c++) var[c] += (x[i * C + c] - mean[c]) * (x[i * C + c] - mean[c]);
  for (Tensor* t : {&train, &test}) {
    float* y = t->data();
    for (size_t i = 0; i < static_cast<size_t>(t->size(0)); i++)
      for (size_t c = 0; c < C; c++)
        y[i * C + c] = static_cast<float>((y[i * C + c] - mean[c]) / std::max(std::sqrt(var[c] / static_cast<double>(N)), 1e-6));
  }
}

std::vector<int> labels_of(const std::vector<int>& types, const std::vector<int>& label_of_type) {
  std::vector<int> labels;
  for (int type : types) labels.push_back(label_of_type[static_cast<size_t>(type)]);
  return labels;
}

// What one probe trains on and is scored on.
struct ProbeData {
  const Tensor& train;  // (N,C) standardised features
  const std::vector<int>& train_labels;
  const Tensor& test;   // (M,C)
  const std::vector<int>& test_labels;
};

// Trains one probe head and returns its test accuracy.
double probe_accuracy(const GPT& model, const std::string& type, const std::vector<std::string>& class_names,
                      const ProbeData& d, const TokenProbeOptions& o, uint64_t seed) {
  HeadConfig config;
  config.type = type;
  config.hidden = o.mlp_hidden;
  config.label_names = class_names;
  Rng init(seed);
  Head head(config, model.config().n_embd, {}, init);
  TrainerOptions t;
  t.steps = o.steps;
  t.lr = o.lr;
  t.warmup = o.steps / 10;
  t.adamw.weight_decay = 0.0f;
  Trainer trainer(head.trainable_parameters(), t);
  const int n = static_cast<int>(d.train_labels.size());
  for (long long step = 0; step < o.steps; step++) {
    Rng rng = step_rng(seed, step);
    std::vector<int> rows(static_cast<size_t>(o.batch)), targets;
    for (int& r : rows) r = rng.below(n);
    for (int r : rows) targets.push_back(d.train_labels[static_cast<size_t>(r)]);
    trainer.step(step, [&](int) {
      Tensor x = embedding(d.train, rows, Shape{o.batch});  // (B,C) rows of the cache
      return MicroBatch{cross_entropy(head.logits(model, x), targets), o.batch};
    });
  }
  NoGradGuard no_grad;
  const Tensor logits = head.logits(model, d.test);  // (M,K)
  const size_t K = class_names.size();
  long long correct = 0;
  for (size_t i = 0; i < d.test_labels.size(); i++) {
    const float* row = logits.data() + i * K;
    correct += std::max_element(row, row + K) - row == d.test_labels[i];
  }
  return static_cast<double>(correct) / static_cast<double>(d.test_labels.size());
}

}  // namespace

void check_token_probe_options(const TokenProbeOptions& o) {
  if (o.property != "pos" && o.property != "depth" && o.property != "start")
    throw InputError("probe-tokens: --property must be pos, depth or start, got \"" + o.property + "\"");
  if (o.steps < 1 || o.batch < 1 || o.mlp_hidden < 1 || !(o.lr > 0))
    throw InputError("probe-tokens: --steps, --batch, --hidden and --lr must be positive");
  if (o.seeds < 1) throw InputError("probe-tokens: --seeds must be at least 1, got " + std::to_string(o.seeds));
}

namespace {

// What every base is probed on: the labels of the property and, per seed,
// of its control task, at the train and test positions.
struct ProbeLabels {
  ProbedPositions train, test;
  std::vector<uint64_t> seeds;
  std::vector<std::vector<int>> train_control, test_control;  // [seed][position]
  double majority = 0;
};

ProbeLabels probe_labels(const ProbeTask& task, const TokenProbeOptions& o) {
  ProbeLabels p;
  p.train = probed_positions(task.train);
  p.test = probed_positions(task.test);
  std::vector<double> distribution(task.class_names.size(), 0.0);  // of the training positions' classes
  for (int label : p.train.labels) distribution[static_cast<size_t>(label)] += 1.0 / static_cast<double>(p.train.labels.size());
  const int commonest = static_cast<int>(std::max_element(distribution.begin(), distribution.end()) - distribution.begin());
  p.majority = static_cast<double>(std::count(p.test.labels.begin(), p.test.labels.end(), commonest)) /
               static_cast<double>(p.test.labels.size());
  for (long long s = 0; s < o.seeds; s++) {
    p.seeds.push_back(o.seed + static_cast<uint64_t>(s));
    const std::vector<int> control = control_labels(task.n_types, distribution, p.seeds.back());
    p.train_control.push_back(labels_of(p.train.types, control));
    p.test_control.push_back(labels_of(p.test.types, control));
  }
  return p;
}

// One probe to train: a layer's features, a head, a seed, the property or its control.
struct ProbeJob {
  size_t layer;
  const char* head;
  size_t seed_index;
  bool control;
  double accuracy = 0;
};

// Every layer of one base: features computed once, then all its probes.
void probe_base(const ProbeBase& base, const ProbeTask& task, const ProbeLabels& p, const TokenProbeOptions& o,
                std::vector<TokenProbeResult>& results) {
  std::vector<Tensor> train_features = layer_features(*base.model, task.train);
  std::vector<Tensor> test_features = layer_features(*base.model, task.test);
  std::vector<ProbeJob> jobs;
  for (size_t layer = 0; layer < train_features.size(); layer++) {
    standardise(train_features[layer], test_features[layer]);
    for (const char* head : {"linear", "mlp"})
      for (size_t s = 0; s < p.seeds.size(); s++)
        for (bool control : {false, true}) jobs.push_back({layer, head, s, control});
  }
  parallel_for_each(jobs.size(), [&](size_t j) {
    ProbeJob& job = jobs[j];
    const std::vector<int>& train_labels = job.control ? p.train_control[job.seed_index] : p.train.labels;
    const std::vector<int>& test_labels = job.control ? p.test_control[job.seed_index] : p.test.labels;
    job.accuracy = probe_accuracy(*base.model, job.head, task.class_names,
                                  {train_features[job.layer], train_labels, test_features[job.layer], test_labels}, o,
                                  p.seeds[job.seed_index]);
  });
  for (size_t j = 0; j < jobs.size(); j += 2 * p.seeds.size()) {  // one layer and head: its seeds' pairs
    TokenProbeResult r;
    r.base = base.name;
    r.layer = static_cast<int>(jobs[j].layer);
    r.probe = jobs[j].head;
    r.majority = p.majority;
    for (size_t k = j; k < j + 2 * p.seeds.size(); k += 2) {
      r.accuracy.add(jobs[k].accuracy);
      r.control_accuracy.add(jobs[k + 1].accuracy);
      r.selectivity.add(jobs[k].accuracy - jobs[k + 1].accuracy);
    }
    results.push_back(r);
  }
}

}  // namespace

std::vector<TokenProbeResult> run_token_probe(const std::vector<ProbeBase>& bases, const ProbeTask& task,
                                              const TokenProbeOptions& o) {
  check_token_probe_options(o);
  const ProbeLabels labels = probe_labels(task, o);
  std::vector<TokenProbeResult> results;
  for (const ProbeBase& base : bases) probe_base(base, task, labels, o, results);
  return results;
}

}  // namespace ta::adapt
