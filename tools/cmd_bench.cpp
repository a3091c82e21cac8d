// tools/cmd_bench.cpp — `tinyadapt bench`: the training-step benchmark, the
// same measurement as the PyTorch peer (tools/reference/torch_gpt_train.py):
// a GPT-2-style model on random tokens, timing zero_grad + forward + loss +
// backward + AdamW per step; median over the timed steps; peak RSS.
// `--lora R` freezes the base and trains rank-R LoRA (adapt/lora.cpp, alpha 16)
// on every layer's c_attn (q, k and v share one Linear), as the peer does.
// `--method M` does the same for any registered method with its defaults
// (prefix, prompt: k = 20 virtual tokens, and the text shortened by k so
// that every step runs the same ctx positions; adapter; bitfit; lora r8).
// `--methods full,lora,prefix,prompt` times several setups in one process,
// their steps taken in turn, and prints each one's median: the ratios between
// methods then do not move with the machine's speed from run to run (LoRA's
// rank: --lora R, else 8).
// `--probe` compares one epoch of probing on cached features with one epoch
// of full fine-tuning (both with a linear head on the pooled last layer, over
// 8 batches of random sequences), and reports the one-off feature caching.
// Under `mpirun -np N` (nn/distributed.h) the single-method mode runs data
// parallel: each rank steps on batch/N rows and the trainable gradients are
// averaged, inside the timed step; it also reports the bytes all-reduced per
// step and the all-reduce's own time.
// `--sgemm N` instead measures OpenBLAS sgemm GFLOP/s on N×N×N.
// `--serve` instead measures personalised serving: tools/bench_serve.cpp.
#include <sys/resource.h>

#include <algorithm>
#include <memory>
#include <cstdio>
#include <omp.h>

#include "adapt/method.h"
#include "autograd/matmul.h"
#include "autograd/ops.h"
#include "data/json.h"
#include "nn/distributed.h"
#include "nn/gpt.h"
#include "nn/lm_data.h"
#include "nn/optim.h"
#include "tools/bench.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

double peak_rss_mb() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

int run_sgemm(int n, int repeats) {
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a), c(a.size());
  sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; r++) {
    double t0 = now_ms();
    sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, now_ms() - t0);
  }
  double gflops = 2.0 * n * n * static_cast<double>(n) / (best * 1e6);
  std::printf("sgemm %d^3: best %.1f ms, %.1f GFLOP/s\n", n, best, gflops);
  std::printf("JSON {\"n\": %d, \"ms_best\": %.3f, \"gflops\": %.2f}\n", n, best, gflops);
  return 0;
}

// One epoch of full fine-tuning against one epoch of probing on cached
// features, both classifying `batches` batches of random sequences (2 labels)
// with a linear head on the last layer's last-token features.
int run_probe_bench(const ModelConfig& c, int batch, int batches, bool as_json) {
  GPT model(c, 1337);
  Rng rng(1337);
  const int T = c.n_positions, n = batches * batch;
  std::vector<int> ids(static_cast<size_t>(n) * T), labels(static_cast<size_t>(n));
  for (int& t : ids) t = rng.below(c.vocab_size);
  for (int& y : labels) y = rng.below(2);
  auto batch_of = [&](const std::vector<int>& v, int i, int width) {
    return std::vector<int>(v.begin() + static_cast<int64_t>(i) * batch * width, v.begin() + static_cast<int64_t>(i + 1) * batch * width);
  };
  auto make_head = [&] {
    Tensor w = Tensor::empty({c.n_embd, 2}), b = Tensor::zeros({2});
    fill_normal(w, rng, 0.0f, 0.02f);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    return std::vector<OptimParam>{{"head.weight", w, true}, {"head.bias", b, false}};
  };
  auto classify = [&](const Tensor& features, const std::vector<OptimParam>& head, const std::vector<int>& y) {
    return cross_entropy(linear(features, head[0].tensor, head[1].tensor), y);
  };
  // Full fine-tuning: every parameter and the head, one optimiser step per batch.
  std::vector<OptimParam> all = make_head();
  for (auto& [name, t] : model.named_parameters()) all.push_back({name, t, default_weight_decay(name, t)});
  AdamW full_opt(all, {0.9f, 0.999f, 1e-8f, 0.01f});
  double t0 = now_ms();
  for (int i = 0; i < batches; i++) {
    full_opt.zero_grad();
    Tensor hidden = model.forward(batch_of(ids, i, T), batch, T);
    backward(classify(model.pool(hidden, batch, T, model.default_pooling()), all, batch_of(labels, i, 1)));
    full_opt.step(1e-4f);
  }
  const double full_epoch_ms = now_ms() - t0;
  // Probing: the frozen base runs once (no tape), then the head trains on the cache.
  model.freeze_all();
  t0 = now_ms();
  std::vector<Tensor> cache;
  {
    NoGradGuard no_grad;
    for (int i = 0; i < batches; i++)
      cache.push_back(model.pool(model.forward(batch_of(ids, i, T), batch, T), batch, T, model.default_pooling()));
  }
  const double caching_ms = now_ms() - t0;
  std::vector<OptimParam> head = make_head();
  AdamW probe_opt(head, {0.9f, 0.999f, 1e-8f, 0.01f});
  t0 = now_ms();
  const int probe_epochs = 20;  // timed together: one epoch takes well under a millisecond
  for (int e = 0; e < probe_epochs; e++)
    for (int i = 0; i < batches; i++) {
      probe_opt.zero_grad();
      backward(classify(cache[static_cast<size_t>(i)], head, batch_of(labels, i, 1)));
      probe_opt.step(1e-3f);
    }
  const double probe_epoch_ms = (now_ms() - t0) / probe_epochs;
  std::printf("one epoch of %d sequences x %d tokens: full fine-tuning %.1f ms | probing on cached features %.3f ms "
              "(%.0fx faster; target >= 20) | caching the features once %.1f ms\n",
              n, T, full_epoch_ms, probe_epoch_ms, full_epoch_ms / probe_epoch_ms, caching_ms);
  if (as_json) {
    json::Value out = json::Value::object();
    out.set("full_epoch_ms", full_epoch_ms);
    out.set("probe_epoch_ms", probe_epoch_ms);
    out.set("caching_ms", caching_ms);
    std::printf("JSON %s\n", out.dump().c_str());
  }
  return 0;
}

// One training setup of the step benchmark: a GPT of shape c (seed 1337),
// trained in full ("full") or with a method of adapt/ (LoRA at alpha 16 as
// the peer), AdamW, and random token windows. step(i) runs and times one
// step: zero_grad + forward + loss + backward + AdamW, as the peer. A name
// ending in "+bf16" (or --bf16) stores the frozen base in bfloat16
// (GPT::store_frozen_in_bf16), as `adapt --bf16`.
struct TrainingStep {
  std::string name;
  GPT model;
  std::unique_ptr<adapt::Method> method;  // null: full fine-tuning
  std::unique_ptr<AdamW> opt;
  std::vector<int> tokens;
  int batch, T;
  float last_loss = 0;

  TrainingStep(const ModelConfig& c, const std::string& method_name, int lora_rank, int batch_size,
               bool gradient_checkpointing = false)
      : name(method_name), model(c, 1337), batch(batch_size), T(c.n_positions) {
    model.gradient_checkpointing = gradient_checkpointing;
    const std::string suffix = "+bf16";
    const bool bf16 = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    const std::string method_only = bf16 ? name.substr(0, name.size() - suffix.size()) : name;
    std::vector<OptimParam> params;
    if (method_only != "full") {
      adapt::MethodConfig config;
      config.method = method_only;
      config.lora_rank = lora_rank;
      config.lora_alpha = 16.0f;
      method = adapt::make_method(config);
      Rng rng(7);
      method->attach(model, adapt::AttachContext{}, rng);  // a prompt from every row of wte
      method->set_training(true);
      params = method->trainable_parameters();
      if (method_only == "prefix" || method_only == "prompt") {  // the text shortened by k: the same positions per step
        T -= config.num_virtual_tokens;
        if (T < 1)
          throw InputError("bench: --ctx " + std::to_string(c.n_positions) + " leaves no text beside " + name + "'s " +
                           std::to_string(config.num_virtual_tokens) + " virtual tokens");
      }
      if (params.empty()) throw InputError("bench: method " + name + " trains nothing below a head");
    } else {
      for (auto& [param_name, t] : model.named_parameters())
        params.push_back({param_name, t, default_weight_decay(param_name, t)});
    }
    if (bf16) store_frozen_in_bf16(model);
    opt = std::make_unique<AdamW>(params, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.1f});
    Rng data_rng(1337);
    tokens.resize(static_cast<size_t>(8 * batch * (c.n_positions + 1)));
    for (int& t : tokens) t = data_rng.below(c.vocab_size);
  }

  int64_t trainable() const { return opt->state_floats() / 2; }

  // Under mpirun (nn/distributed.h) each rank takes its rows of the batch and
  // the gradients are averaged before the step, as in training; the time of
  // that average is kept apart in allreduce_ms.
  double allreduce_ms = 0;

  double step(int i) {
    Rng rng = step_rng(1337, i % 8);
    const auto [first, end] = dist::shard(batch, "bench --batch");
    const TokenBatch b = batch_rows(sample_windows(tokens, batch, T, rng), first, end);
    const int rows = b.B;
    const double t0 = now_ms();
    opt->zero_grad();
    ForwardOptions options;
    if (method) method->prepare(options, rows);  // the method's per-call parts (prefixes), recorded on the tape
    Tensor loss = model.loss(b.inputs, b.targets, rows, T, options);
    backward(loss);
    const double t1 = now_ms();
    dist::allreduce_mean_gradients(opt->params());
    allreduce_ms = now_ms() - t1;
    opt->step(3e-4f);
    const double dt = now_ms() - t0;
    last_loss = loss.item();
    return dt;
  }
};

// --methods full,lora,...: every method's step timed in turn, step after
// step, in one process, so that the machine's changing speed hits all alike
// and their ratios hold still between runs. (Peak memory needs one process
// per method: see the single-method mode.)
int run_interleaved(const ModelConfig& c, int batch, int steps, int warmup, const std::vector<std::string>& names,
                    int lora_rank, bool as_json) {
  if (names.empty()) throw InputError("bench: --methods needs a comma-separated list, e.g. full,lora");
  std::vector<std::unique_ptr<TrainingStep>> runs;
  for (const std::string& name : names) {
    if (std::count(names.begin(), names.end(), name) > 1) throw InputError("bench: --methods names " + name + " twice");
    runs.push_back(std::make_unique<TrainingStep>(c, name, lora_rank, batch));
  }
  std::vector<std::vector<double>> times(runs.size());
  for (int step = 0; step < warmup + steps; step++)
    for (size_t m = 0; m < runs.size(); m++) {
      const double dt = runs[m]->step(step);
      if (step >= warmup) times[m].push_back(dt);
    }
  json::Value out = json::Value::object();
  std::printf("ms/step, median over %d steps, the methods' steps taken in turn:", steps);
  for (size_t m = 0; m < runs.size(); m++) {
    std::sort(times[m].begin(), times[m].end());
    const double median = times[m][times[m].size() / 2];
    std::printf(" %s %.1f", runs[m]->name.c_str(), median);
    out.set(runs[m]->name, median);
  }
  std::printf("\n");
  if (as_json) std::printf("JSON %s\n", out.dump().c_str());
  return 0;
}

int run_bench(Args& args) {
  const int threads = static_cast<int>(args.integer("threads", 2));
  omp_set_num_threads(threads);
  if (args.has("sgemm")) {
    int n = static_cast<int>(args.integer("sgemm", 2048));
    int repeats = static_cast<int>(args.integer("repeats", 5));
    args.finish();
    return run_sgemm(n, repeats);
  }
  ModelConfig c;
  c.vocab_size = static_cast<int>(args.integer("vocab", 256));
  c.n_positions = static_cast<int>(args.integer("ctx", 128));
  c.n_embd = static_cast<int>(args.integer("d", 128));
  c.n_layer = static_cast<int>(args.integer("layers", 4));
  c.n_head = static_cast<int>(args.integer("heads", 4));
  c.embd_pdrop = c.resid_pdrop = 0.0f;
  const int batch = static_cast<int>(args.integer("batch", 16));
  const int steps = static_cast<int>(args.integer("steps", 20)), warmup = static_cast<int>(args.integer("warmup", 3));
  const int lora_rank = static_cast<int>(args.integer("lora", 0));
  std::string method_name = args.str("method", "");
  const std::vector<std::string> methods = args.list("methods", "");
  if (args.has("methods") && !method_name.empty())
    throw InputError("bench: --method and --methods do not go together (--methods full," + method_name + ")");
  const bool probe = args.flag("probe");
  const bool gradient_checkpointing = args.flag("gradient-checkpointing");
  const bool bf16 = args.flag("bf16");
  const bool as_json = args.flag("json");
  const bool serve = args.flag("serve");
  const int repeats = static_cast<int>(args.integer("repeats", 3));
  const int min_tokens = static_cast<int>(args.integer("min-tokens", 16));
  const int max_tokens = static_cast<int>(args.integer("max-tokens", 64));
  args.finish();
  c.validate("bench");
  if (serve) {
    if (min_tokens < 1 || max_tokens < min_tokens || max_tokens + 16 > c.n_positions)
      throw InputError("bench --serve: need 1 <= --min-tokens <= --max-tokens <= ctx - 16 (the prefix)");
    return run_serve_bench(c, min_tokens, max_tokens, std::max(1, repeats), as_json);
  }

  if (probe) return run_probe_bench(c, batch, steps, as_json);

  if (args.has("methods") && bf16) throw InputError("bench: with --methods, name each bfloat16 run: --methods lora,lora+bf16");
  if (args.has("methods")) return run_interleaved(c, batch, steps, warmup, methods, lora_rank > 0 ? lora_rank : 8, as_json);
  if (lora_rank > 0 && method_name.empty()) method_name = "lora";
  if (method_name.empty()) method_name = "full";
  TrainingStep run(c, bf16 ? method_name + "+bf16" : method_name, lora_rank > 0 ? lora_rank : 8, batch,
                   gradient_checkpointing);
  std::vector<double> times, allreduce_times;
  float first_loss = 0, last_loss = 0;
  uint64_t bytes_before = 0;
  for (int step = 0; step < warmup + steps; step++) {
    if (step == warmup) bytes_before = dist::gradient_bytes_reduced();
    const double dt = run.step(step);
    if (step == 0) first_loss = run.last_loss;
    last_loss = run.last_loss;
    if (step >= warmup) times.push_back(dt), allreduce_times.push_back(run.allreduce_ms);
  }
  const double bytes_per_step = static_cast<double>(dist::gradient_bytes_reduced() - bytes_before) / steps;
  std::sort(times.begin(), times.end());
  std::sort(allreduce_times.begin(), allreduce_times.end());
  const double median = times[times.size() / 2], best = times.front();
  const double tokens_per_step = static_cast<double>(batch) * run.T;
  const double rss = peak_rss_mb();
  std::printf("params total=%lld trainable=%lld threads=%d method=%s\n", static_cast<long long>(run.model.count_parameters()),
              static_cast<long long>(run.trainable()), threads, run.name.c_str());
  std::printf("ms/step min %.1f median %.1f over %d steps | tokens/s (median) %.0f | peak RSS %.0f MiB | loss %.3f -> %.3f\n",
              best, median, steps, tokens_per_step / median * 1000.0, rss, first_loss, last_loss);
  if (dist::world_size() > 1)
    std::printf("%d ranks: all-reduced %.0f bytes of gradients per step per rank, in %.2f ms (median)\n",
                dist::world_size(), bytes_per_step, allreduce_times[allreduce_times.size() / 2]);
  if (as_json) {
    json::Value out = json::Value::object();
    out.set("ms_min", best);
    out.set("ms_median", median);
    out.set("tok_s_median", tokens_per_step / median * 1000.0);
    out.set("peak_rss_mb", rss);
    out.set("threads", threads);
    out.set("method", run.name);
    out.set("trainable", static_cast<double>(run.trainable()));
    out.set("loss_first", first_loss);
    out.set("loss_last", last_loss);
    out.set("ranks", dist::world_size());
    out.set("allreduce_bytes_per_step", bytes_per_step);
    out.set("allreduce_ms_median", allreduce_times[allreduce_times.size() / 2]);
    std::printf("JSON %s\n", out.dump().c_str());
  }
  return 0;
}

}  // namespace

static Command bench_cmd{
    "bench", "training-step benchmark (the same measurement as the PyTorch peer), or sgemm GFLOP/s",
    "usage: tinyadapt bench [--vocab V --ctx T --d C --layers L --heads H --batch B] [--steps N --warmup N]\n"
    "                       [--threads N] [--lora R | --method M | --methods M1,M2,... | --probe] [--json]\n"
    "                       [--gradient-checkpointing]   (the single-method mode: blocks recomputed in the backward)\n"
    "                       [--bf16]   the frozen base in bfloat16 (as adapt --bf16; in --methods: a name like lora+bf16)\n"
    "       tinyadapt bench --sgemm N [--repeats K]\n"
    "       tinyadapt bench --serve [--vocab V --ctx T --d C --layers L --heads H] [--min-tokens N --max-tokens M]\n"
    "                       [--repeats K] [--threads N] [--json]\n"
    "Defaults are config A: vocab 256, ctx 128, d 128, 4 layers, 4 heads, batch 16; 20 timed steps after 3.",
    run_bench};

}  // namespace ta::cli
