// tools/cmd_compare.cpp — `tinyadapt compare`: every adaptation method on one
// task, one table, and a learning curve over the number of labelled examples
// (the main job's core; `make demo` calls it).
//
// Each run is a separate `tinyadapt adapt` process (tools/jobs.h), so its
// train time, peak memory and adapter file are its own; --jobs J runs J at
// once. With --seeds N every run repeats with N seeds and cells show
// mean ± sd over them. Reference rows: the majority class (the train split's
// commonest label, always) and the bag-of-words logistic regression
// (data/bow.h), so a reader sees what pretraining buys.
//
// Rows besides the methods:
//   lp-ft        LP-FT (Kumar et al. 2022): the probe row's run, then full
//                fine-tuning starting from the probe's head (adapt --init-head),
//                seed for seed; its train time includes the probe's
//   --dapt DIR   the --dapt-methods again on a base whose pretraining went on
//                over the task's own train text (pretrain --init --corpus
//                task:T): domain-adaptive pretraining (Gururangan et al. 2020)
//   --ablation   prompt-init, prompt-length, lora-rank, adapter-size,
//                untrained-base (every lightweight method on a random base)
// The learning curve (--train-sizes 16,64,...,all): each --curve-methods
// method trained on a stratified sample of N examples (adapt --train-size N,
// the sample drawn by the run's seed), beside the bag of words trained on the
// same samples; the `all` point is the table's run of that method.
//
// Output: OUT/summary.md (the tables), OUT/runs.tsv (one line per run and
// seed), OUT/curve.tsv (the curve's points), OUT/<run>/ (each adapter with
// its metrics.json, log.csv, output.txt), OUT/features/ (the probes' cached
// features). tools/plots.sh draws them.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <thread>

#include "adapt/report.h"
#include "data/bow.h"
#include "data/json.h"
#include "data/tasks.h"
#include "nn/distributed.h"
#include "tools/cli.h"
#include "tools/compare_report.h"
#include "tools/jobs.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

const std::vector<std::string> kAllMethods = {"probe", "probe-mlp", "finetune", "bitfit",
                                              "prompt", "prefix", "adapter", "lora"};
const std::vector<std::string> kLightweight = {"bitfit", "prompt", "prefix", "adapter", "lora"};
const char* kDefaultRows = "probe,probe-mlp,finetune,lp-ft,bitfit,prompt,prefix,adapter,lora";

struct CompareArgs {
  std::string model, task, out, dapt, pooling;
  std::vector<std::string> methods, ablations, dapt_methods, curve_methods, train_sizes;
  std::map<std::string, std::vector<std::string>> method_args;  // method -> extra adapt options
  long long steps = 0, curve_steps = 0, eval_limit = 0;
  int seeds = 1, first_seed = 1337, jobs = 1;
  bool bf16 = false;  // --bf16 to every run that keeps the base frozen
};

std::string self_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw InputError("compare: cannot find the tinyadapt binary (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

bool is_method(const std::string& m) { return std::find(kAllMethods.begin(), kAllMethods.end(), m) != kAllMethods.end(); }

// "prefix: --prefix-projection --lr 0.03; prompt: --lr 0.1" -> {prefix: [...], prompt: [...]}.
std::map<std::string, std::vector<std::string>> parse_method_args(const std::string& text) {
  std::map<std::string, std::vector<std::string>> args;
  std::stringstream groups(text);
  for (std::string group; std::getline(groups, group, ';');) {
    if (group.find_first_not_of(" ") == std::string::npos) continue;
    const size_t colon = group.find(':');
    std::stringstream head(group.substr(0, colon == std::string::npos ? 0 : colon));
    std::string method;
    head >> method;
    if (colon == std::string::npos || !is_method(method))
      throw InputError("--method-args: expected 'METHOD: OPTIONS; ...' with a method of " + std::string(kDefaultRows) +
                       ", got '" + group + "'");
    std::stringstream options(group.substr(colon + 1));
    for (std::string word; options >> word;) args[method].push_back(word);
  }
  return args;
}

CompareArgs parse(Args& args) {
  CompareArgs c;
  c.model = args.required("model"), c.task = args.required("task"), c.out = args.required("out");
  c.methods = args.list("methods", kDefaultRows);
  c.ablations = args.list("ablation", "");
  c.dapt = args.str("dapt", "");
  c.dapt_methods = args.list("dapt-methods", "lora");
  c.train_sizes = args.list("train-sizes", "");
  c.curve_methods = args.list("curve-methods", "probe,finetune,lora,prefix");
  c.method_args = parse_method_args(args.str("method-args", ""));
  c.steps = args.integer("steps", 0);
  c.curve_steps = args.integer("curve-steps", c.steps);
  c.eval_limit = args.integer("eval-limit", 0);
  c.pooling = args.str("pooling", "");
  c.seeds = static_cast<int>(args.integer("seeds", 1));
  c.first_seed = static_cast<int>(args.integer("seed", 1337));
  c.jobs = static_cast<int>(args.integer("jobs", 1));
  c.bf16 = args.flag("bf16");
  cli::use_reference_path_if_asked(args);
  args.finish();
  if (dist::world_size() > 1)  // its runs are processes of their own, which would inherit the ranks' MPI world
    throw InputError("compare starts its own runs (--jobs J of them at once); run it without mpirun");
  if (c.seeds < 1 || c.jobs < 1) throw InputError("--seeds and --jobs must be at least 1");
  if (c.steps < 0 || c.curve_steps < 0) throw InputError("--steps and --curve-steps must be positive (0 = each method's default)");
  if (c.eval_limit < 0) throw InputError("--eval-limit must be a number of examples (0 = no limit)");
  if (!c.pooling.empty() && c.pooling != "last" && c.pooling != "first" && c.pooling != "mean")
    throw InputError("--pooling must be last, first or mean, got '" + c.pooling + "'");
  for (const auto* list : {&c.methods, &c.dapt_methods})
    for (const std::string& m : *list)
      if (m != "lp-ft" && !is_method(m)) throw InputError("compare: unknown method '" + m + "' (" + kDefaultRows + ")");
  for (const std::string& m : c.curve_methods)
    if (!is_method(m)) throw InputError("--curve-methods: '" + m + "' is not a method (" + kDefaultRows + " but lp-ft)");
  for (const std::string& size : c.train_sizes)
    if (size != "all" && (size.find_first_not_of("0123456789") != std::string::npos || std::stoll(size) < 1))
      throw InputError("--train-sizes: '" + size + "' is not a number of examples or 'all'");
  for (const std::string& dir : {c.model, c.dapt})
    if (!dir.empty() && !file_exists(dir + "/config.json")) throw InputError(dir + ": not a model directory (no config.json)");
  return c;
}

// The runs asked for: the table's methods (and lp-ft) in the order given, the
// DAPT rows, each ablation's variants, then the curve's points below `all`.
// lp-ft needs the probe row's adapters, so the probe row is planned before it
// (added if --methods left it out); a row asked for twice runs once.
std::vector<Run> plan_runs(const CompareArgs& c, const std::string& untrained) {
  std::vector<Run> runs;
  auto add = [&](const std::string& label, const std::string& method, std::vector<std::string> options,
                 const std::string& model, long long train_size = 0) {
    // A --steps among M's --method-args replaces --steps in M's table rows; the curve's points keep --curve-steps.
    const auto& extra = c.method_args.count(method) ? c.method_args.at(method) : std::vector<std::string>{};
    long long steps = train_size > 0 ? c.curve_steps : c.steps;
    for (size_t i = 0; i < extra.size(); ++i) {
      if (extra[i] == "--steps" && i + 1 < extra.size()) {
        if (train_size == 0) steps = 0, options.insert(options.end(), {extra[i], extra[i + 1]});
        ++i;
      } else {
        options.push_back(extra[i]);
      }
    }
    runs.push_back({label, method, options, model, -1, train_size, steps});
  };
  for (const std::string& m : c.methods) {
    if (find_run(runs, m, 0) >= 0) continue;
    if (m == "lp-ft") {
      if (find_run(runs, "probe", 0) < 0) add("probe", "probe", {}, c.model);
      add("lp-ft", "finetune", {}, c.model);
      runs.back().head_from = find_run(runs, "probe", 0);
    } else {
      add(m, m, {}, c.model);
    }
  }
  if (!c.dapt.empty())
    for (const std::string& m : c.dapt_methods) add(m + " (DAPT base)", m, {}, c.dapt);
  for (const std::string& a : c.ablations) {
    if (a == "prompt-init")
      for (const char* init : {"vocab", "label", "random"}) add(std::string("prompt init=") + init, "prompt", {"--prompt-init", init}, c.model);
    else if (a == "prompt-length")
      for (const char* k : {"1", "5", "20", "50"}) add(std::string("prompt k=") + k, "prompt", {"--num-virtual-tokens", k}, c.model);
    else if (a == "lora-rank")
      for (const char* r : {"1", "4", "16"}) add(std::string("lora r=") + r, "lora", {"--lora-rank", r}, c.model);
    else if (a == "adapter-size")
      for (const char* r : {"4", "16", "64"}) add(std::string("adapter r=") + r, "adapter", {"--bottleneck", r}, c.model);
    else if (a == "untrained-base")
      for (const std::string& m : kLightweight) add(m + " (untrained base)", m, {}, untrained);
    else
      throw InputError("compare: unknown ablation '" + a + "' (prompt-init, prompt-length, lora-rank, adapter-size, untrained-base)");
  }
  for (const std::string& size : c.train_sizes)
    for (const std::string& m : c.curve_methods) {
      if (size == "all") {
        if (find_run(runs, m, 0) < 0) add(m, m, {}, c.model);
      } else {
        add(m, m, {}, c.model, std::stoll(size));
      }
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

// Where run i with `seed` writes: OUT/run<i>-<name>[-n<size>]-s<seed>.
std::string run_dir(const std::string& out, size_t i, const Run& run, int seed) {
  std::string name = run.head_from >= 0 ? "lp-ft" : run.method;
  if (run.train_size > 0) name += "-n" + std::to_string(run.train_size);
  return out + "/run" + std::to_string(i) + "-" + name + "-s" + std::to_string(seed);
}

// One `tinyadapt adapt` job per run and seed, in plan order: jobs[i * seeds + s].
std::vector<Job> plan_jobs(const std::vector<Run>& runs, const CompareArgs& c) {
  const std::string self = self_path();
  std::vector<Job> jobs;
  for (size_t i = 0; i < runs.size(); i++)
    for (int s = 0; s < c.seeds; s++) {
      const Run& run = runs[i];
      const int seed = c.first_seed + s;
      const std::string dir = run_dir(c.out, i, run, seed);
      Job job{{self, "adapt", "--model", run.model_dir, "--task", c.task, "--method", run.method, "--seed",
               std::to_string(seed), "--out", dir, "--eval-every", "0", "--feature-cache", c.out + "/features"},
              dir + "/output.txt", run.label + " seed " + std::to_string(seed), -1};
      if (run.steps > 0) job.argv.insert(job.argv.end(), {"--steps", std::to_string(run.steps)});
      if (c.bf16 && run.method != "finetune") job.argv.push_back("--bf16");  // full fine-tuning trains every matrix
      if (!c.pooling.empty()) job.argv.insert(job.argv.end(), {"--pooling", c.pooling});
      if (c.eval_limit > 0) job.argv.insert(job.argv.end(), {"--eval-limit", std::to_string(c.eval_limit)});
      if (run.train_size > 0)
        job.argv.insert(job.argv.end(), {"--train-size", std::to_string(run.train_size), "--data-seed", std::to_string(seed)});
      if (run.head_from >= 0) {
        job.argv.insert(job.argv.end(), {"--init-head", run_dir(c.out, static_cast<size_t>(run.head_from), runs[static_cast<size_t>(run.head_from)], seed)});
        job.after = run.head_from * c.seeds + s;
      }
      job.argv.insert(job.argv.end(), run.options.begin(), run.options.end());
      make_dirs(dir);
      std::remove((dir + "/metrics.json").c_str());
      jobs.push_back(std::move(job));
    }
  return jobs;
}

// Every run with every seed: outcomes[run][seed - first_seed]. An LP-FT run is
// charged its probe run's train time and peak memory too: LP-FT costs both stages.
std::vector<std::vector<Outcome>> run_all(const std::vector<Run>& runs, const CompareArgs& c) {
  const std::vector<Job> jobs = plan_jobs(runs, c);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  size_t done = 0;
  const std::vector<JobResult> results = run_jobs(jobs, c.jobs, std::max(1, cores / c.jobs), [&](size_t j, const JobResult& r) {
    std::fprintf(stderr, "compare %s: [%zu/%zu] %s: %.1f s\n", c.task.c_str(), ++done, jobs.size(), jobs[j].what.c_str(), r.seconds);
  });
  std::vector<std::vector<Outcome>> outcomes(runs.size());
  for (size_t i = 0; i < runs.size(); i++)
    for (int s = 0; s < c.seeds; s++) {
      const size_t j = i * static_cast<size_t>(c.seeds) + static_cast<size_t>(s);
      Outcome o;
      o.seed = c.first_seed + s;
      o.dir = run_dir(c.out, i, runs[i], o.seed);
      o.metrics = json::parse_file(o.dir + "/metrics.json");
      o.train_seconds = o.metrics.at("train_seconds").as_number();
      o.peak_rss_mb = results[j].peak_rss_mb;
      if (runs[i].head_from >= 0) {
        const Outcome& probe = outcomes[static_cast<size_t>(runs[i].head_from)][static_cast<size_t>(s)];
        o.init_head = probe.dir;
        o.train_seconds += probe.train_seconds;
        o.peak_rss_mb = std::max(o.peak_rss_mb, probe.peak_rss_mb);
      }
      outcomes[i].push_back(std::move(o));
    }
  return outcomes;
}

// The bag of words and the majority class on the task, trained on each train
// size's samples (one per seed, as the curve's runs draw them) or on all of it.
References reference_rows(const data::Task& task, const CompareArgs& c) {
  References refs;
  std::vector<std::string> sizes = c.train_sizes;
  if (std::find(sizes.begin(), sizes.end(), "all") == sizes.end()) sizes.push_back("all");
  for (const std::string& size : sizes) {
    const int samples = size == "all" ? 1 : c.seeds;
    for (int s = 0; s < samples; s++) {
      data::Task sampled = task;
      if (size != "all")
        sampled.train = data::stratified_sample(task.train, std::stoull(size), task.label_names.size(), static_cast<uint64_t>(c.first_seed + s));
      const long long n = static_cast<long long>(sampled.train.size());
      data::BowClassifier bow(sampled);
      refs.bow[n].id.add(bow.accuracy(task.test));
      refs.bow[n].ood.add(bow.accuracy(task.ood));
      refs.majority[n] = majority_accuracy(sampled, task);
    }
  }
  refs.all = static_cast<long long>(task.train.size());
  return refs;
}

int run_compare(Args& args) {
  const CompareArgs c = parse(args);
  data::Task task = data::load_task(c.task);
  data::limit_evaluation(task, static_cast<size_t>(c.eval_limit));
  make_dirs(c.out);
  const bool needs_untrained = std::find(c.ablations.begin(), c.ablations.end(), "untrained-base") != c.ablations.end();
  const std::string untrained = needs_untrained ? make_untrained_base(c.model, c.out) : "";
  const std::vector<Run> runs = plan_runs(c, untrained);
  const References refs = reference_rows(task, c);
  const std::vector<std::vector<Outcome>> outcomes = run_all(runs, c);

  write_file_atomic(c.out + "/runs.tsv", runs_tsv(runs, outcomes));
  write_file_atomic(c.out + "/curve.tsv", curve_tsv(runs, outcomes, refs));
  std::string md = table_markdown(task.name, runs, outcomes, refs);
  if (!c.train_sizes.empty()) md += "\n" + curve_markdown(task.name, runs, outcomes, refs);
  std::string notes = "\nID = the test split, OOD = the ood split. Base model: " + c.model + "\n";
  if (find_run(runs, "lp-ft", 0) >= 0)
    notes += "lp-ft = LP-FT (Kumar et al. 2022): the probe row's run, then finetune starting from the probe's head, with "
             "finetune's steps and learning rate; its train time includes the probe's.\n";
  if (!c.dapt.empty()) notes += "(DAPT base) = the same method on " + c.dapt + ", the base pretrained further on the task's train text.\n";
  if (c.jobs > 1) notes += "Runs went " + std::to_string(c.jobs) + " at a time, each on its share of the cores: train times are of that many threads.\n";
  write_file_atomic(c.out + "/summary.md", md + notes);
  std::printf("%s\n", md.c_str());
  return 0;
}

}  // namespace

static Command compare_cmd{
    "compare", "adapt one base with every method on a task: a table, a learning curve, ablations",
    "usage: tinyadapt compare --model DIR --task T --out DIR [options]\n"
    "  --methods a,b,...      table rows in this order [probe,probe-mlp,finetune,lp-ft,bitfit,prompt,prefix,adapter,lora];\n"
    "                         lp-ft = probe, then finetune from the probe's head (--init-head), finetune's steps and lr\n"
    "  --train-sizes N,..,all a learning curve: the --curve-methods on stratified samples of N labelled examples\n"
    "  --curve-methods a,b    [probe,finetune,lora,prefix]   --curve-steps N   their steps [--steps]\n"
    "  --dapt DIR             also the --dapt-methods [lora] on the base DIR (pretrain --init BASE --corpus task:T)\n"
    "  --ablation a,b,...     prompt-init, prompt-length, lora-rank, adapter-size, untrained-base\n"
    "  --steps N              training steps of every run [each method's default]\n"
    "  --pooling last|first|mean   the classifier heads' pooling in every run (verbalizers read the last token) [adapt's]\n"
    "  --eval-limit N         score runs and reference rows on the first N test and N ood examples [0 = all]\n"
    "  --method-args 'M: OPTS; ...'   extra adapt options for every run of method M, e.g. 'prefix: --prefix-projection';\n"
    "                         a --steps there replaces --steps in M's table rows (not its curve points)\n"
    "  --seeds N --seed S     repeat every run with seeds S..S+N-1 (also drawing the curve's samples); mean ± sd [1, 1337]\n"
    "  --jobs J               runs at once, each on cores/J threads [1]\n"
    "  --bf16                 the frozen base in bfloat16 in every run but full fine-tuning's (adapt --bf16)\n"
    "  --reference            every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
    "Writes OUT/summary.md, OUT/runs.tsv, OUT/curve.tsv and one folder per run (adapter, metrics.json, log.csv).",
    run_compare};

}  // namespace ta::cli
