// tools/cmd_adapt.cpp — `tinyadapt adapt`: adapt a base model to a
// classification task with one method, then score it in and out of
// distribution.
//
//   load the base --model, attach --method, put a head on top (adapt/);
//   with --init-head DIR the head starts as the one saved in DIR (LP-FT)
//   print PEFT's line: trainable params: N || all params: M || trainable%: P
//   train on the task's train split (val accuracy every --eval-every steps)
//   save the adapter to --out (adapter_config.json + adapter_model.safetensors)
//   evaluate test and ood; print them and write --out/metrics.json
//
// The base model directory is only read. --out also gets log.csv.
#include <sys/resource.h>

#include <cstdio>

#include "adapt/adapter_dir.h"
#include "adapt/head_init.h"
#include "adapt/report.h"
#include "adapt/runner.h"
#include "data/pretraining.h"
#include "data/tasks.h"
#include "nn/config.h"
#include "nn/distributed.h"
#include "nn/trainer.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  for (size_t comma; (comma = text.find(',', start)) != std::string::npos; start = comma + 1)
    items.push_back(text.substr(start, comma - start));
  items.push_back(text.substr(start));
  return items;
}

adapt::MethodConfig parse_method(Args& args) {
  adapt::MethodConfig c;
  c.method = args.required("method");
  c.num_virtual_tokens = static_cast<int>(args.integer("num-virtual-tokens", c.num_virtual_tokens));
  c.prompt_init = args.str("prompt-init", c.prompt_init);
  c.prefix_projection = args.flag("prefix-projection");
  c.prefix_hidden = static_cast<int>(args.integer("prefix-hidden", c.prefix_hidden));
  c.bottleneck = static_cast<int>(args.integer("bottleneck", c.bottleneck));
  c.train_layernorm = args.flag("train-layernorm");
  c.lora_rank = static_cast<int>(args.integer("lora-rank", c.lora_rank));
  c.lora_alpha = static_cast<float>(args.real("lora-alpha", c.lora_alpha));
  c.lora_dropout = static_cast<float>(args.real("lora-dropout", c.lora_dropout));
  if (args.has("target-modules")) c.target_modules = comma_list(args.str("target-modules", ""));
  c.probe_hidden = static_cast<int>(args.integer("probe-hidden", c.probe_hidden));
  if (c.num_virtual_tokens < 1 || c.prefix_hidden < 1 || c.bottleneck < 1 || c.lora_rank < 1 || c.probe_hidden < 1)
    throw InputError("--num-virtual-tokens, --prefix-hidden, --bottleneck, --lora-rank and --probe-hidden must be >= 1");
  return c;
}

adapt::HeadRequest parse_head(Args& args, const adapt::MethodConfig& method) {
  adapt::HeadRequest h;
  h.type = args.str("head", "");
  if (!h.type.empty() && h.type != "classifier" && h.type != "verbalizer" && h.type != "linear" && h.type != "mlp")
    throw InputError("--head must be classifier, verbalizer, linear or mlp, got '" + h.type + "'");
  h.pooling = args.str("pooling", "");
  if (args.has("label-words")) h.label_words = comma_list(args.str("label-words", ""));
  h.hidden = method.probe_hidden;
  h.activation = args.str("probe-activation", "relu");
  return h;
}

adapt::RunOptions parse_run(Args& args, const std::string& method) {
  adapt::RunOptions o = adapt::default_run_options(method);
  if (args.has("steps") && args.has("epochs")) throw InputError("give --steps or --epochs, not both");
  if (args.has("epochs")) o.steps = 0, o.epochs = args.real("epochs", 0);
  o.steps = args.integer("steps", o.steps);
  o.lr = static_cast<float>(args.real("lr", o.lr));
  o.batch = static_cast<int>(args.integer("batch", o.batch));
  o.warmup = args.integer("warmup", o.warmup);
  o.eval_every = args.integer("eval-every", 100);
  o.validate = o.eval_every != 0;
  o.weight_decay = static_cast<float>(args.real("weight-decay", o.weight_decay));
  o.seed = static_cast<uint64_t>(args.integer("seed", 1337));
  o.feature_cache = args.str("feature-cache", "");
  if (o.batch < 1 || o.lr <= 0) throw InputError("--batch must be >= 1 and --lr > 0");
  if (o.steps < 0 || (o.steps == 0 && o.epochs <= 0)) throw InputError("--steps and --epochs must be > 0");
  return o;
}

void print_split(const std::string& name, const adapt::Evaluation& e) {
  std::printf("%-5s accuracy %.4f | macro-F1 %.4f | loss %.4f | n %lld\n", name.c_str(), e.accuracy, e.macro_f1, e.loss, e.n);
}

int64_t peak_rss_bytes() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

// --init-head: says where the head came from, and warns when the head was
// trained on another base model (or when that cannot be told).
json::Value report_head_init(const adapt::HeadInit& init, const std::string& model_dir) {
  std::printf("head: initialised from %s\n", init.dir.c_str());
  if (init.base_check.empty())
    std::fprintf(stderr, "adapt: warning: --init-head %s: cannot tell whether its head was trained on this base %s "
                 "(its adapter_config.json has no base_model_fingerprint, and its base_model_name_or_path '%s' is another path)\n",
                 init.dir.c_str(), model_dir.c_str(), init.base_model.c_str());
  else if (!init.same_base)
    std::fprintf(stderr, "adapt: warning: --init-head %s: its head was trained on another base model ('%s'; "
                 "its model.safetensors differs from %s's): the features it reads mean something else here\n",
                 init.dir.c_str(), init.base_model.c_str(), model_dir.c_str());
  json::Value v = json::Value::object();
  v.set("dir", init.dir);
  v.set("base_model", init.base_model);
  v.set("base_check", init.base_check.empty() ? "unknown" : init.base_check);
  if (!init.base_check.empty()) v.set("same_base", init.same_base);
  return v;
}

// A base whose manifest (pretraining.json) lists a document that the task
// evaluates on has seen its test text: its scores would not measure
// adaptation. Bases without a manifest (a Hugging Face checkpoint) are taken as they are.
void check_base_not_trained_on(const std::string& model_dir, const data::Task& task) {
  data::PretrainingManifest manifest;
  if (!data::read_manifest(model_dir, manifest)) return;
  data::check_no_leakage(manifest.documents, data::evaluation_documents(task),
                         model_dir + " (pretrained on " + manifest.corpus + ") cannot be adapted to " + task.name);
}

json::Value metrics_json(const adapt::AdaptedModel& a, const adapt::TrainResult& trained, const json::Value& splits,
                         const std::string& out) {
  const adapt::TrainableReport r = adapt::trainable_report(a);
  json::Value m = json::Value::object();
  m.set("method", a.method->name());
  m.set("head", a.head->config().type);
  for (const auto& [name, value] : splits.members()) m.set(name, value);
  m.set("trainable_params", static_cast<long long>(r.trainable));
  m.set("all_params", static_cast<long long>(r.all));
  m.set("trainable_percent", r.percent());
  m.set("steps", trained.steps);
  m.set("train_seconds", trained.seconds);
  m.set("peak_rss_bytes", static_cast<long long>(peak_rss_bytes()));
  m.set("adapter_bytes", static_cast<long long>(adapt::file_bytes(out + "/adapter_model.safetensors")));
  m.set("base_model_bytes", static_cast<long long>(adapt::file_bytes(a.base_dir + "/model.safetensors")));
  return m;
}

int run_adapt(Args& args) {
  const std::string model_dir = args.required("model"), task_name = args.required("task"), out = args.required("out");
  const adapt::MethodConfig method_config = parse_method(args);
  const adapt::HeadRequest head_request = parse_head(args, method_config);
  const adapt::RunOptions run_options = [&] {
    adapt::RunOptions o = parse_run(args, method_config.method);
    if (dist::is_root()) o.log_path = out + "/log.csv";  // under MPI, rank 0 alone writes
    return o;
  }();
  const uint64_t data_seed = static_cast<uint64_t>(args.integer("data-seed", 1337));
  const long long train_size = args.integer("train-size", 0);
  const long long eval_limit = args.integer("eval-limit", 0);
  const std::string init_head_dir = args.str("init-head", "");
  const bool gradient_checkpointing = args.flag("gradient-checkpointing");
  const bool bf16 = args.flag("bf16");
  cli::use_reference_path_if_asked(args);
  args.finish();
  if (train_size < 0) throw InputError("--train-size must be a number of examples (0 = the whole train split)");
  if (eval_limit < 0) throw InputError("--eval-limit must be a number of examples (0 = no limit)");

  data::Task task = data::load_task(task_name);
  check_base_not_trained_on(model_dir, task);
  data::limit_evaluation(task, static_cast<size_t>(eval_limit));
  if (train_size > 0)
    task.train = data::stratified_sample(task.train, static_cast<size_t>(train_size), task.label_names.size(), data_seed);
  const ModelConfig base_config = read_config(model_dir + "/config.json");
  adapt::AdaptedModel a = adapt::create_adapted(
      model_dir, method_config, adapt::resolve_head(head_request, method_config.method, base_config, task.label_names),
      run_options.seed, bf16);
  a.model->gradient_checkpointing = gradient_checkpointing;
  const json::Value head_init = init_head_dir.empty() ? json::Value() : report_head_init(adapt::init_head_from(a, init_head_dir), model_dir);
  std::printf("%s\n", adapt::report_line(adapt::trainable_report(a)).c_str());
  if (bf16) std::printf("bf16: the frozen base in bfloat16 (%.1f MB less)\n", cli::store_frozen_in_bf16(*a.model) / 1e6);
  std::fflush(stdout);
  const int max_tokens = a.max_text_tokens();
  auto encode = [&](const std::string& split) { return adapt::encode_examples(task.split(split), a.tokenizer, max_tokens, task.name + "/" + split); };

  if (dist::is_root()) {
    make_dirs(out);
    std::remove((out + "/metrics.json").c_str());  // an earlier run's metrics never describe this one
  }
  install_interrupt_handler();
  const adapt::TrainResult trained = adapt::train(a, encode("train"), encode("val"), run_options);
  // Under MPI the other ranks are done: rank 0 holds the same weights and
  // saves, evaluates and reports (nn/distributed.h).
  if (!dist::is_root()) return 0;
  adapt::save_adapter(a, out);
  if (trained.stopped) {
    std::fprintf(stderr, "adapt: interrupted after %lld steps; adapter saved to %s\n", trained.steps, out.c_str());
    return 130;
  }
  json::Value splits = json::Value::object();
  if (trained.val.n > 0) splits.set("val", adapt::evaluation_json(trained.val));
  for (const char* split : {"test", "ood"}) {
    const std::vector<adapt::EncodedExample> examples = encode(split);
    if (examples.empty()) continue;
    const adapt::Evaluation e = adapt::evaluate(a, examples, 32, run_options.feature_cache);
    print_split(split, e);
    splits.set(split, adapt::evaluation_json(e));
  }
  json::Value metrics = metrics_json(a, trained, splits, out);
  metrics.set("task", task_name);
  metrics.set("base_precision", bf16 ? "bfloat16" : "float32");
  metrics.set("train_size", static_cast<long long>(task.train.size()));
  if (train_size > 0) metrics.set("data_seed", static_cast<long long>(data_seed));
  if (!head_init.is_null()) metrics.set("init_head", head_init);
  write_file_atomic(out + "/metrics.json", metrics.dump(2) + "\n");
  std::printf("adapter file: %s bytes (base model.safetensors: %s bytes); trained %lld steps in %.1f s\n",
              adapt::with_thousands(metrics.at("adapter_bytes").as_int()).c_str(),
              adapt::with_thousands(metrics.at("base_model_bytes").as_int()).c_str(), trained.steps, trained.seconds);
  return 0;
}

}  // namespace

static Command adapt_cmd{
    "adapt", "adapt a base model to a classification task with one method (probe, finetune, LoRA, ...)",
    "usage: tinyadapt adapt --model DIR --task T --method M --out DIR [options]\n"
    "  --task spam|era|pair|FILE.tsv   the task (built-in ones need `make data`)\n"
    "  --method M             probe | probe-mlp | finetune | bitfit | prompt | prefix | adapter | lora\n"
    "method options:\n"
    "  --num-virtual-tokens K --prompt-init vocab|label|random      prompt / prefix length and init [20, vocab]\n"
    "  --prefix-projection --prefix-hidden N                        prefix tuning's P = MLP(P') [off, 256]\n"
    "  --bottleneck R --train-layernorm                             adapters [16, off]\n"
    "  --lora-rank R --lora-alpha A --lora-dropout P --target-modules c_attn,c_proj,c_fc   LoRA [8, 16, 0, c_attn]\n"
    "  --probe-hidden N --probe-activation relu|gelu                probe-mlp's hidden layer [256, relu]\n"
    "head:\n"
    "  --head classifier|verbalizer|linear|mlp\n"
    "                                 [verbalizer for prompt/prefix on a GPT, classifier otherwise]; classifier is\n"
    "                                 mlp for probe-mlp, linear for the rest\n"
    "  --pooling last|first|mean      the classifier's features [last for a GPT, first for an encoder]\n"
    "  --label-words a,b              the verbalizer's words, one per label [the label names], each after a space\n"
    "  --init-head DIR                start the head from the one saved in adapter directory DIR instead of a fresh\n"
    "                                 one; it must fit (type, labels, pooling, width). LP-FT: probe, then finetune\n"
    "                                 with --init-head PROBE_DIR [a fresh head]\n"
    "training:\n"
    "  --steps N | --epochs N   [300 steps; probes and bitfit 1000]\n"
    "  --lr X                   [finetune 1e-4, bitfit 3e-3, lora/adapter 2e-3, prompt/prefix 1e-1, probes 1e-2]\n"
    "  --batch B [16]  --warmup N [steps/10]  --weight-decay X [0]  --eval-every N [100; 0 = never]\n"
    "  --train-size N           train on a stratified sample of N examples of the train split (the label\n"
    "                           shares kept, every label at least once) [0 = all]\n"
    "  --eval-limit N           score only the first N examples of test and of ood (a uniform sample) [0 = all]\n"
    "  --feature-cache DIR      probes: keep the base's pooled features in DIR for later runs [none]\n"
    "  --seed S [1337] initialisation, batch order, dropout;  --data-seed S [1337] the --train-size sample\n"
    "  --gradient-checkpointing recompute each block's activations in the backward: less memory (full\n"
    "                           fine-tuning of GPT-2 small), one more forward pass, the same run\n"
    "  --bf16                   the frozen base in bfloat16: half its memory, and on CPUs with AVX512-BF16\n"
    "                           products at twice float32's rate (activations rounded to bfloat16 inside them)\n"
    "  --reference              every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
    "Writes DIR/adapter_config.json, DIR/adapter_model.safetensors, DIR/log.csv, DIR/metrics.json.",
    run_adapt};

}  // namespace ta::cli
