// tools/cmd_probe_tokens.cpp — `tinyadapt probe-tokens`: what each layer of
// a base model's hidden states says about a token property (the part of
// speech on Brown; depth in the sentence, sentence starts on any text), with
// Hewitt & Liang's control task (adapt/token_probe.h): accuracy, control
// accuracy and selectivity of a linear and an MLP probe per layer, for the
// pretrained base and, with --untrained, a random one of the same shape.
#include <chrono>
#include <cstdio>
#include <memory>

#include "adapt/token_probe.h"
#include "data/brown.h"
#include "data/pretraining.h"
#include "data/json.h"
#include "tools/cli.h"
#include "tools/model_dir.h"

namespace ta::cli {
namespace {

// pos reads the tagged Brown corpus; depth and start read plain text.
adapt::ProbeTask build_task(const ModelDir& m, const std::string& corpus, const adapt::TokenProbeOptions& o) {
  const int n_positions = m.model->config().n_positions;
  if (o.property == "pos") {
    if (corpus != "brown") throw InputError("probe-tokens: --property pos needs --corpus brown (the tagged corpus), got \"" + corpus + "\"");
    return adapt::pos_probe_task(m.tokenizer, data::load_brown(), n_positions, o);
  }
  if (corpus == "brown") throw InputError("probe-tokens: --corpus brown is probed for pos, not " + o.property);
  const std::vector<int> tokens = m.tokenizer.encode(data::corpus_text(corpus), {false, corpus});
  return adapt::stream_probe_task(m.tokenizer, tokens, n_positions, o);
}

std::string markdown(const adapt::ProbeTask& task, const std::vector<adapt::TokenProbeResult>& results,
                     const adapt::TokenProbeOptions& o) {
  std::string md = "property: " + task.property + "; control: " + task.control + "\n" +
                   "positions: " + std::to_string(adapt::probed_count(task.train)) + " train, " +
                   std::to_string(adapt::probed_count(task.test)) + " test; " + std::to_string(o.seeds) +
                   (o.seeds == 1 ? " seed" : " seeds (mean ± sd)") + "; layer 0 = embeddings, i = after block i\n\n" +
                   "| base | layer | probe | accuracy | control accuracy | selectivity | majority |\n"
                   "|---|---:|---|---:|---:|---:|---:|\n";
  for (const adapt::TokenProbeResult& r : results) {
    char majority[16];
    std::snprintf(majority, sizeof majority, "%.3f", r.majority);
    md += "| " + r.base + " | " + std::to_string(r.layer) + " | " + r.probe + " | " + r.accuracy.text(3) + " | " +
          r.control_accuracy.text(3) + " | " + r.selectivity.text(3) + " | " + majority + " |\n";
  }
  return md;
}

json::Value to_json(const adapt::ProbeTask& task, const std::vector<adapt::TokenProbeResult>& results,
                    const adapt::TokenProbeOptions& o) {
  json::Value rows = json::Value::array();
  for (const adapt::TokenProbeResult& r : results) {
    json::Value row = json::Value::object();
    row.set("base", r.base);
    row.set("layer", r.layer);
    row.set("probe", r.probe);
    row.set("accuracy", r.accuracy.mean());
    row.set("accuracy_sd", r.accuracy.sd());
    row.set("control_accuracy", r.control_accuracy.mean());
    row.set("control_accuracy_sd", r.control_accuracy.sd());
    row.set("selectivity", r.selectivity.mean());
    row.set("selectivity_sd", r.selectivity.sd());
    row.set("majority", r.majority);
    rows.push(row);
  }
  json::Value out = json::Value::object();
  out.set("property", task.property);
  out.set("control", task.control);
  out.set("train_positions", adapt::probed_count(task.train));
  out.set("test_positions", adapt::probed_count(task.test));
  out.set("seeds", o.seeds);
  out.set("results", rows);
  return out;
}

int run_probe_tokens(Args& args) {
  const auto started = std::chrono::steady_clock::now();
  const std::string model_dir = args.required("model"), corpus_option = args.str("corpus", "");
  adapt::TokenProbeOptions o;
  o.property = args.str("property", corpus_option == "brown" ? "pos" : "depth");
  const std::string corpus = !corpus_option.empty() ? corpus_option : o.property == "pos" ? "brown" : "sotu";
  o.train_tokens = args.integer("train-tokens", o.train_tokens);
  o.test_tokens = args.integer("test-tokens", o.test_tokens);
  o.steps = args.integer("steps", o.steps);
  o.batch = static_cast<int>(args.integer("batch", o.batch));
  o.lr = static_cast<float>(args.real("lr", o.lr));
  o.mlp_hidden = static_cast<int>(args.integer("hidden", o.mlp_hidden));
  o.seeds = args.integer("seeds", o.seeds);
  o.seed = static_cast<uint64_t>(args.integer("seed", static_cast<long long>(o.seed)));
  const bool untrained = args.flag("untrained"), as_json = args.flag("json");
  const std::string out_path = args.str("out", "");
  cli::use_reference_path_if_asked(args);
  args.finish();
  adapt::check_token_probe_options(o);

  ModelDir m = load_model_dir(model_dir);
  const adapt::ProbeTask task = build_task(m, corpus, o);
  std::vector<adapt::ProbeBase> bases = {{"pretrained", m.model.get()}};
  std::unique_ptr<GPT> random_base;  // same shape and tokenizer, GPT-2's initialisation
  if (untrained) {
    random_base = std::make_unique<GPT>(m.model->config(), o.seed);
    bases.push_back({"untrained", random_base.get()});
  }
  const std::vector<adapt::TokenProbeResult> results = adapt::run_token_probe(bases, task, o);

  const std::string md = markdown(task, results, o);
  if (!out_path.empty()) write_file_atomic(out_path, md);
  std::printf("%s", as_json ? (to_json(task, results, o).dump() + "\n").c_str() : md.c_str());
  std::fprintf(stderr, "probe-tokens: %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return 0;
}

}  // namespace

static Command probe_tokens_cmd{
    "probe-tokens", "per-layer token probes with a control task: accuracy, control accuracy, selectivity",
    "usage: tinyadapt probe-tokens --model DIR [--property pos|depth|start] [--corpus brown|sotu|FILE] [options]\n"
    "  --property pos                     the coarse part of speech (10 classes) of the word a token ends;\n"
    "                                     the default with --corpus brown, and brown its default corpus\n"
    "  --property depth|start             is the token deep in its sentence (at least the median depth:\n"
    "                                     balanced classes), or does it start one (97% no); default\n"
    "                                     corpus sotu, default property depth\n"
    "  control: a random label per word type (pos: the lower-cased word; depth, start: the BPE token)\n"
    "  every layer: 0 = embeddings, i = after block i; a linear and an MLP probe each\n"
    "  --untrained                        also probe a random base of the same shape (drawn from --seed)\n"
    "  --seeds N --seed S                 seeds S..S+N-1 for control labels, probe init, batches [1, 1337]\n"
    "  --train-tokens N --test-tokens N   probed positions (pos: held-out Brown files test; depth,\n"
    "                                     start: every 5th window tests) [16000, 6000]\n"
    "  --steps N --batch N --lr X --hidden N   probe training and the MLP's width [400, 64, 1e-2, 256]\n"
    "  --reference                        every fused kernel as its composition of plain ops (autograd/reference.cpp; slow)\n"
    "  --json                             the results as JSON on stdout (the table otherwise)\n"
    "  --out FILE.md                      also write the table to FILE.md",
    run_probe_tokens};

}  // namespace ta::cli
