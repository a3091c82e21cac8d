// tools/cmd_bench.cpp — `tinyadapt bench`: the training-step benchmark, the
// same measurement as the PyTorch peer (../shared/bench/torch_gpt_train.py):
// a GPT-2-style model on random tokens, timing zero_grad + forward + loss +
// backward + AdamW per step; median over the timed steps; peak RSS.
// `--lora R` freezes the base and trains rank-R LoRA (adapt/lora.cpp, alpha 16)
// as the peer does on q and v — here on c_attn, whose q,k,v share one Linear,
// so the k third of the delta is trained too: slightly more work than the peer's.
// `--sgemm N` instead measures OpenBLAS sgemm GFLOP/s on N×N×N.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <omp.h>

#include "adapt/method.h"
#include "autograd/matmul.h"
#include "autograd/ops.h"
#include "data/json.h"
#include "nn/gpt.h"
#include "nn/lm_data.h"
#include "nn/optim.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

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
  const bool as_json = args.flag("json");
  args.finish();
  c.validate("bench");

  GPT model(c, 1337);
  std::vector<OptimParam> params;
  std::unique_ptr<adapt::Method> lora;  // the project's own LoRA (adapt/lora.cpp), alpha 16 as the peer
  if (lora_rank > 0) {
    adapt::MethodConfig lora_config;
    lora_config.method = "lora";
    lora_config.lora_rank = lora_rank;
    lora_config.lora_alpha = 16.0f;
    lora = adapt::make_method(lora_config);
    Rng rng(7);
    lora->attach(model, {}, rng);
    params = lora->trainable_parameters();
  } else {
    for (auto& [name, t] : model.named_parameters()) params.push_back({name, t, default_weight_decay(name, t)});
  }
  AdamW opt(params, {0.9f, 0.95f, 1e-8f, 0.1f});

  Rng data_rng(1337);
  std::vector<int> tokens(static_cast<size_t>(8 * batch * (c.n_positions + 1)));
  for (int& t : tokens) t = data_rng.below(c.vocab_size);
  std::vector<double> times;
  float first_loss = 0, last_loss = 0;
  for (int step = 0; step < warmup + steps; step++) {
    Rng rng = step_rng(1337, step % 8);
    TokenBatch b = sample_windows(tokens, batch, c.n_positions, rng);
    double t0 = now_ms();
    opt.zero_grad();
    Tensor loss = model.loss(b.inputs, b.targets, batch, c.n_positions);
    backward(loss);
    opt.step(3e-4f);
    double dt = now_ms() - t0;
    last_loss = loss.item();
    if (step == 0) first_loss = last_loss;
    if (step >= warmup) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2], best = times.front();
  const double tokens_per_step = static_cast<double>(batch) * c.n_positions;
  const double rss = peak_rss_mb();
  std::printf("params total=%lld trainable=%lld threads=%d lora=%d\n", static_cast<long long>(model.count_parameters()),
              static_cast<long long>(opt.state_floats() / 2), threads, lora_rank);
  std::printf("ms/step min %.1f median %.1f over %d steps | tokens/s (median) %.0f | peak RSS %.0f MiB | loss %.3f -> %.3f\n",
              best, median, steps, tokens_per_step / median * 1000.0, rss, first_loss, last_loss);
  if (as_json) {
    json::Value out = json::Value::object();
    out.set("ms_min", best);
    out.set("ms_median", median);
    out.set("tok_s_median", tokens_per_step / median * 1000.0);
    out.set("peak_rss_mb", rss);
    out.set("threads", threads);
    out.set("lora", lora_rank);
    out.set("loss_first", first_loss);
    out.set("loss_last", last_loss);
    std::printf("JSON %s\n", out.dump().c_str());
  }
  return 0;
}

}  // namespace

static Command bench_cmd{
    "bench", "training-step benchmark (the same measurement as the PyTorch peer), or sgemm GFLOP/s",
    "usage: tinyadapt bench [--vocab V --ctx T --d C --layers L --heads H --batch B] [--steps N --warmup N]\n"
    "                       [--threads N] [--lora R] [--json]\n"
    "       tinyadapt bench --sgemm N [--repeats K]\n"
    "Defaults are config A: vocab 256, ctx 128, d 128, 4 layers, 4 heads, batch 16; 20 timed steps after 3.",
    run_bench};

}  // namespace ta::cli
