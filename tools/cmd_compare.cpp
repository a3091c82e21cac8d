// tools/cmd_compare.cpp — `tinyadapt compare`: every adaptation method on one
// task, one table (the main job's core; `make demo` calls it).
//
// Each run is a separate `tinyadapt adapt` process, so its train time, peak
// memory (from wait4's rusage) and adapter file are its own. The table's
// first row is the bag-of-words logistic-regression baseline (data/bow.h), so
// a reader sees what pretraining buys. With --seeds N every run repeats with N
// seeds and cells show mean ± sd.
//
// Besides the methods, the `lp-ft` row (Kumar et al. 2022): LP-FT, the probe
// row's run followed by full fine-tuning that starts from the probe's head
// (`adapt --method finetune --init-head PROBE_DIR`, seed for seed), with the
// finetune row's steps and learning rate. It sits beside finetune and probe:
// the paper's claim is that it keeps finetune's ID accuracy and beats it OOD.
// Its train time includes the probe's, its peak memory is the larger of the two.
//
// Ablations run on demand:
//   prompt-init      prompt tuning with vocab / label / random init (Lester et al.)
//   prompt-length    prompt tuning with 1, 5, 20, 50 virtual tokens
//   lora-rank        LoRA rank 1, 4, 16
//   adapter-size     adapter bottleneck 4, 16, 64
//   untrained-base   every lightweight method on a randomly initialised base of the
//                    same shape: prompt/prefix tuning only work because the
//                    pre-trained weights carry the knowledge
// Output: OUT/summary.md (the table), OUT/runs.tsv, OUT/<run>/ (each adapter
// with its metrics.json and log.csv), and PNG plots drawn with gnuplot
// (tools/plots.sh): accuracy vs trainable% (log axis), ID vs OOD per method,
// loss curves.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <algorithm>

#include "data/bow.h"
#include "data/json.h"
#include "data/tasks.h"
#include "nn/checkpoint.h"
#include "adapt/report.h"
#include "tools/cli.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

using adapt::Stat;

struct Run {
  std::string label;                  // table row: "lora r=4"
  std::string method;                 // `tinyadapt adapt --method`
  std::vector<std::string> options;   // extra `tinyadapt adapt` options
  std::string model_dir;              // the base this run adapts
  int head_from = -1;                 // LP-FT: the earlier run whose adapter (same seed) gives the head; -1: none
};

// One run with one seed, as `tinyadapt adapt` left it.
struct Outcome {
  int seed = 0;
  std::string dir;         // its --out
  std::string init_head;   // its --init-head ("" = a fresh head)
  json::Value metrics;     // its metrics.json
  double train_seconds = 0;
  double peak_rss_mb = 0;
};

const std::vector<std::string> kAllMethods = {"probe", "probe-mlp", "finetune", "bitfit",
                                              "prompt", "prefix", "adapter", "lora"};
const std::vector<std::string> kLightweight = {"bitfit", "prompt", "prefix", "adapter", "lora"};
const char* kDefaultRows = "probe,probe-mlp,finetune,lp-ft,bitfit,prompt,prefix,adapter,lora";

std::string self_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw InputError("compare: cannot find the tinyadapt binary (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

// Runs `tinyadapt adapt ...` with its output in `log_path`; returns its peak RSS.
double run_child(const std::vector<std::string>& argv, const std::string& what, const std::string& log_path) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw InputError("compare: fork failed");
  if (pid == 0) {
    FILE* log = std::freopen(log_path.c_str(), "w", stdout);
    if (log) ::dup2(::fileno(stdout), 2);
    ::execv(cargv[0], cargv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  ::wait4(pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw InputError("compare: the " + what + " run failed; its output is in " + log_path);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Where run i with `seed` writes: OUT/run<i>-<method>-s<seed> ("lp-ft" in place of its method, finetune).
std::string run_dir(const std::string& out, size_t i, const Run& run, int seed) {
  const std::string name = run.head_from >= 0 ? "lp-ft" : run.method;
  return out + "/run" + std::to_string(i) + "-" + name + "-s" + std::to_string(seed);
}

// `init_head`: the adapter directory the head starts from ("" = a fresh head).
Outcome run_one(const Run& run, const std::string& task, const std::string& out_dir, int seed, long long steps,
                const std::string& init_head, const std::string& self) {
  std::vector<std::string> argv = {self, "adapt", "--model", run.model_dir, "--task", task, "--method", run.method,
                                   "--seed", std::to_string(seed), "--out", out_dir};
  if (steps > 0) argv.insert(argv.end(), {"--steps", std::to_string(steps)});
  if (!init_head.empty()) argv.insert(argv.end(), {"--init-head", init_head});
  argv.insert(argv.end(), run.options.begin(), run.options.end());
  make_dirs(out_dir);
  Outcome o;
  o.seed = seed;
  o.dir = out_dir;
  o.init_head = init_head;
  o.peak_rss_mb = run_child(argv, run.label, out_dir + "/output.txt");
  o.metrics = json::parse_file(out_dir + "/metrics.json");
  o.train_seconds = o.metrics.at("train_seconds").as_number();
  return o;
}

// Every run with every seed, in plan order: outcomes[run][seed - first_seed]. An
// LP-FT run starts from the adapter its probe run wrote with the same seed,
// and is charged that run's train time and peak memory too: LP-FT costs both stages.
std::vector<std::vector<Outcome>> run_all(const std::vector<Run>& runs, const std::string& task, const std::string& out,
                                          int first_seed, int seeds, long long steps) {
  const std::string self = self_path();
  std::vector<std::vector<Outcome>> outcomes(runs.size());
  for (size_t i = 0; i < runs.size(); i++) {
    const int from = runs[i].head_from;
    for (int s = 0; s < seeds; s++) {
      const int seed = first_seed + s;
      std::fprintf(stderr, "compare %s: [%zu/%zu] %s seed %d ...\n", task.c_str(), i + 1, runs.size(), runs[i].label.c_str(), seed);
      const std::string init_head = from >= 0 ? outcomes[from][s].dir : "";
      Outcome o = run_one(runs[i], task, run_dir(out, i, runs[i], seed), seed, steps, init_head, self);
      if (from >= 0) {
        o.train_seconds += outcomes[from][s].train_seconds;
        o.peak_rss_mb = std::max(o.peak_rss_mb, outcomes[from][s].peak_rss_mb);
      }
      outcomes[i].push_back(std::move(o));
    }
  }
  return outcomes;
}

// The index of the run labelled `label`, or -1.
int find_run(const std::vector<Run>& runs, const std::string& label) {
  for (size_t i = 0; i < runs.size(); i++)
    if (runs[i].label == label) return static_cast<int>(i);
  return -1;
}

// The runs asked for: the methods (and lp-ft) in the order given, then each
// ablation's variants. lp-ft needs the probe row's adapters, so the probe row
// is planned before it (added if --methods left it out); a row asked for twice runs once.
std::vector<Run> plan_runs(const std::vector<std::string>& methods, const std::vector<std::string>& ablations,
                           const std::string& model, const std::string& untrained) {
  std::vector<Run> runs;
  for (auto& m : methods) {
    if (find_run(runs, m) >= 0) continue;
    if (m == "lp-ft") {
      if (find_run(runs, "probe") < 0) runs.push_back({"probe", "probe", {}, model});
      runs.push_back({"lp-ft", "finetune", {}, model, find_run(runs, "probe")});
    } else {
      runs.push_back({m, m, {}, model});
    }
  }
  for (auto& a : ablations) {
    if (a == "prompt-init")
      for (const char* init : {"vocab", "label", "random"}) runs.push_back({std::string("prompt init=") + init, "prompt", {"--prompt-init", init}, model});
    else if (a == "prompt-length")
      for (const char* k : {"1", "5", "20", "50"}) runs.push_back({std::string("prompt k=") + k, "prompt", {"--num-virtual-tokens", k}, model});
    else if (a == "lora-rank")
      for (const char* r : {"1", "4", "16"}) runs.push_back({std::string("lora r=") + r, "lora", {"--lora-rank", r}, model});
    else if (a == "adapter-size")
      for (const char* r : {"4", "16", "64"}) runs.push_back({std::string("adapter r=") + r, "adapter", {"--bottleneck", r}, model});
    else if (a == "untrained-base")
      for (auto& m : kLightweight) runs.push_back({m + " (untrained base)", m, {}, untrained});
    else
      throw InputError("compare: unknown ablation '" + a + "' (prompt-init, prompt-length, lora-rank, adapter-size, untrained-base)");
  }
  return runs;
}

// A base of the same shape and tokenizer as `model_dir`, randomly initialised.
std::string make_untrained_base(const std::string& model_dir, const std::string& out) {
  const std::string dir = out + "/untrained-base";
  ModelDir base = load_model_dir(model_dir);
  GPT random_model(base.model->config(), 4242);
  save_model_dir(random_model, base.tokenizer, dir);
  return dir;
}

double split_accuracy(const json::Value& metrics, const char* split) {
  const json::Value* s = metrics.find(split);
  return s ? s->at("accuracy").as_number() : NAN;
}

struct Row {
  std::string label;
  long long trainable = 0;
  double percent = 0;
  Stat id, ood, seconds, rss_mb;
  long long adapter_bytes = 0;
};

// A table row: the run's cells over its seeds.
Row table_row(const Run& run, const std::vector<Outcome>& seeds) {
  Row row;
  row.label = run.label;
  for (const Outcome& o : seeds) {
    row.trainable = o.metrics.at("trainable_params").as_int();
    row.percent = o.metrics.at("trainable_percent").as_number();
    row.adapter_bytes = o.metrics.at("adapter_bytes").as_int();
    row.id.add(split_accuracy(o.metrics, "test"));
    row.ood.add(split_accuracy(o.metrics, "ood"));
    row.seconds.add(o.train_seconds);
    row.rss_mb.add(o.peak_rss_mb);
  }
  return row;
}

// runs.tsv (tools/plots.sh reads it): one line per run and seed. `run` is the
// table's row label, `method` the adapt method (lp-ft's is finetune), and
// init_head the adapter directory its head started from ("-": a fresh head).
// lp-ft's train_seconds and peak_rss_mb include its probe stage, as the table's.
std::string runs_tsv(const std::vector<Run>& runs, const std::vector<std::vector<Outcome>>& outcomes) {
  std::string tsv = "run\tseed\tmethod\ttrainable_params\ttrainable_percent\tid_accuracy\tood_accuracy\ttrain_seconds\t"
                    "peak_rss_mb\tadapter_bytes\tdir\tinit_head\n";
  for (size_t i = 0; i < runs.size(); i++)
    for (const Outcome& o : outcomes[i]) {
      const json::Value& m = o.metrics;
      char line[2048];
      std::snprintf(line, sizeof line, "%s\t%d\t%s\t%lld\t%.6f\t%.4f\t%.4f\t%.2f\t%.1f\t%lld\t%s\t%s\n", runs[i].label.c_str(),
                    o.seed, runs[i].method.c_str(), m.at("trainable_params").as_int(), m.at("trainable_percent").as_number(),
                    split_accuracy(m, "test"), split_accuracy(m, "ood"), o.train_seconds, o.peak_rss_mb,
                    m.at("adapter_bytes").as_int(), o.dir.c_str(), o.init_head.empty() ? "-" : o.init_head.c_str());
      tsv += line;
    }
  return tsv;
}

std::string table_markdown(const std::string& task, const std::vector<Row>& rows, double bow_id, double bow_ood) {
  std::string md = "| method | trainable params | trainable% | ID accuracy | OOD accuracy | train time (s) | peak memory (MiB) | adapter file (bytes) |\n";
  md += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  char buf[512];
  std::snprintf(buf, sizeof buf, "| bag-of-words baseline | – | – | %.3f | %.3f | – | – | – |\n", bow_id, bow_ood);
  md += buf;
  for (const Row& r : rows) {
    std::snprintf(buf, sizeof buf, "| %s | %s | %.4f | %s | %s | %s | %s | %s |\n", r.label.c_str(),
                  adapt::with_thousands(r.trainable).c_str(), r.percent, r.id.text(3).c_str(), r.ood.text(3).c_str(),
                  r.seconds.text(1).c_str(), r.rss_mb.text(0).c_str(), adapt::with_thousands(r.adapter_bytes).c_str());
    md += buf;
  }
  return "### " + task + "\n\n" + md;
}

int run_compare(Args& args) {
  const std::string model = args.required("model"), task = args.required("task"), out = args.required("out");
  const std::vector<std::string> methods = args.list("methods", kDefaultRows);
  const std::vector<std::string> ablations = args.list("ablation", "");
  const long long steps = args.integer("steps", 0);
  const int seeds = static_cast<int>(args.integer("seeds", 1));
  const int first_seed = static_cast<int>(args.integer("seed", 1337));
  args.finish();
  if (seeds < 1) throw InputError("--seeds must be at least 1");
  for (auto& m : methods)
    if (m != "lp-ft" && std::find(kAllMethods.begin(), kAllMethods.end(), m) == kAllMethods.end())
      throw InputError("compare: unknown method '" + m + "' (" + kDefaultRows + ")");

  const data::Task t = data::load_task(task, 1337);
  data::BowClassifier bow(t);
  const double bow_id = bow.accuracy(t.test), bow_ood = bow.accuracy(t.ood);
  make_dirs(out);
  const bool needs_untrained = std::find(ablations.begin(), ablations.end(), "untrained-base") != ablations.end();
  const std::string untrained = needs_untrained ? make_untrained_base(model, out) : "";
  const std::vector<Run> runs = plan_runs(methods, ablations, model, untrained);
  const std::vector<std::vector<Outcome>> outcomes = run_all(runs, task, out, first_seed, seeds, steps);

  std::vector<Row> rows;
  for (size_t i = 0; i < runs.size(); i++) rows.push_back(table_row(runs[i], outcomes[i]));
  const std::string md = table_markdown(task, rows, bow_id, bow_ood);
  write_file_atomic(out + "/runs.tsv", runs_tsv(runs, outcomes));
  std::string notes = "\nID = the test split, OOD = the ood split. Base model: " + model + "\n";
  if (find_run(runs, "lp-ft") >= 0)
    notes += "lp-ft = LP-FT (Kumar et al. 2022): the probe row's run, then finetune starting from the probe's head, with "
             "finetune's steps and learning rate; its train time includes the probe's.\n";
  write_file_atomic(out + "/summary.md", md + notes);
  std::printf("%s\n", md.c_str());
  return 0;
}

}  // namespace

static Command compare_cmd{
    "compare", "adapt one base with every method on a task; one table (and ablations)",
    "usage: tinyadapt compare --model DIR --task T --out DIR [options]\n"
    "  --methods a,b,...   rows in this order [probe,probe-mlp,finetune,lp-ft,bitfit,prompt,prefix,adapter,lora];\n"
    "                      lp-ft = probe, then finetune from the probe's head (--init-head), finetune's steps and lr\n"
    "  --ablation a,b,...  prompt-init, prompt-length, lora-rank, adapter-size, untrained-base\n"
    "  --steps N           training steps of every run [each method's default]\n"
    "  --seeds N --seed S  repeat every run with seeds S..S+N-1; cells show mean ± sd [1, 1337]\n"
    "Writes OUT/summary.md, OUT/runs.tsv and one folder per run (adapter, metrics.json, log.csv).",
    run_compare};

}  // namespace ta::cli
